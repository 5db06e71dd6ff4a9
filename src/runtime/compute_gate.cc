#include "runtime/compute_gate.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/gang.h"
#include "runtime/inflight.h"
#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

// A tenant sized only by memory still progresses when the GPU is otherwise idle.
constexpr double kMinimumWeight = 0.01;
// A decider that has not finished within this long died or stalled; the lock is taken over.
constexpr uint64_t kDeciderStaleNs = 20'000'000;
// Waiters re-check at least this often (a holder may go idle without anyone deciding).
constexpr uint64_t kMaxWaitNs = 2'000'000;
constexpr uint64_t kMinWaitNs = 50'000;
// A synchronize that returns sooner found no work left running: nothing to charge.
constexpr uint64_t kTailResolutionNs = 20'000;

double Weight(const TenantSpec& spec) {
  return spec.compute_request > kMinimumWeight ? spec.compute_request : kMinimumWeight;
}

bool Live(const Ledger& ledger, int i) {
  const TenantLimits& t = ledger.limits()->tenants[i];
  return __atomic_load_n(&t.active, __ATOMIC_ACQUIRE) == 1 &&
         ledger.usage()->tenants[i].generation.load(std::memory_order_acquire) ==
             __atomic_load_n(&t.generation, __ATOMIC_ACQUIRE);
}

bool Busy(const TenantUsage& u, uint64_t now, const GateSettings& s) {
  const uint64_t demand = u.demand_ns.load(std::memory_order_relaxed);
  return u.waiting.load(std::memory_order_relaxed) > 0 || (demand != 0 && now - demand < s.idle_ns);
}

bool Launching(const TenantUsage& u, uint64_t now, const GateSettings& s) {
  return u.waiting.load(std::memory_order_relaxed) > 0 ||
         now - u.demand_ns.load(std::memory_order_relaxed) < s.holder_idle_ns;
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1000000000ull),
              static_cast<long>(timeout_ns % 1000000000ull)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, 0x7fffffff, nullptr, nullptr,
          0);
}

bool TryLockDecider(ComputeState& cs, uint64_t now) {
  const int32_t me = static_cast<int32_t>(getpid());
  int32_t current = cs.decider.load(std::memory_order_acquire);
  if (current == 0 && cs.decider.compare_exchange_strong(current, me)) {
    cs.decider_since_ns.store(now, std::memory_order_release);
    return true;
  }
  if (current != 0 && now - cs.decider_since_ns.load(std::memory_order_acquire) > kDeciderStaleNs &&
      cs.decider.compare_exchange_strong(current, me)) {
    cs.decider_since_ns.store(now, std::memory_order_release);
    return true;
  }
  return false;
}

void UnlockDecider(ComputeState& cs) { cs.decider.store(0, std::memory_order_release); }

// Charges the outgoing holder for the GPU time its lease covered.
void ChargeHolder(Ledger& ledger, uint64_t lease, uint64_t now) {
  const int holder = LeaseHolder(lease);
  if (holder < 0 || !Live(ledger, holder)) return;
  ComputeState& cs = ledger.usage()->compute;
  const uint64_t start = cs.lease_start_ns.load(std::memory_order_acquire);
  const uint64_t stop = now < LeaseEnd(lease) ? now : LeaseEnd(lease);
  if (stop <= start) return;
  const uint64_t held = stop - start;
  const TenantSpec& spec = ledger.limits()->tenants[holder].spec;
  TenantUsage& u = ledger.usage()->tenants[holder];
  u.gpu_time_ns.fetch_add(held, std::memory_order_relaxed);
  u.pass.fetch_add(static_cast<uint64_t>(static_cast<double>(held) / Weight(spec)),
                   std::memory_order_relaxed);
  // A cap at or near 0 (a strict tenant that asked for no compute) would otherwise read as no cap
  // at all: it is held to the minimal share instead.
  const double limit = spec.compute_limit < kMinimumWeight ? kMinimumWeight : spec.compute_limit;
  if (limit < 1) {
    // Sit out long enough that held / (held + rest) = limit.
    const uint64_t rest = static_cast<uint64_t>(static_cast<double>(held) * (1 - limit) / limit);
    u.not_before_ns.store(stop + rest, std::memory_order_relaxed);
  }
  u.tail_end_ns.store(stop, std::memory_order_relaxed);
  cs.lease_start_ns.store(now, std::memory_order_release);
}

// Charges `tenant` for its work that ran until `work_end` past its last lease. Processes of one
// tenant each report their own end; only the latest counts, once.
void ChargeTail(Ledger& ledger, int tenant, uint64_t work_end, const GateSettings& s) {
  TenantUsage& u = ledger.usage()->tenants[tenant];
  uint64_t charged_until = u.tail_end_ns.load(std::memory_order_relaxed);
  do {
    if (work_end <= charged_until) return;
  } while (!u.tail_end_ns.compare_exchange_weak(charged_until, work_end));
  // A process that noticed late cannot tell how long its synchronize really waited for the GPU:
  // a tail is charged at most one slice.
  uint64_t tail = work_end - charged_until;
  if (tail > s.slice_ns) tail = s.slice_ns;
  const TenantSpec& spec = ledger.limits()->tenants[tenant].spec;
  u.gpu_time_ns.fetch_add(tail, std::memory_order_relaxed);
  u.pass.fetch_add(static_cast<uint64_t>(static_cast<double>(tail) / Weight(spec)),
                   std::memory_order_relaxed);
  // The lease that followed began with this work still running: it is charged from later on.
  ComputeState& cs = ledger.usage()->compute;
  uint64_t start = cs.lease_start_ns.load(std::memory_order_acquire);
  const uint64_t moved = start + tail < work_end ? start + tail : work_end;
  if (LeaseHolder(cs.lease.load(std::memory_order_acquire)) != tenant && moved > start) {
    cs.lease_start_ns.compare_exchange_strong(start, moved);
  }
}

// Called by a process of `tenant` that finds another tenant holding the lease: if it launched
// under an earlier lease, wait for that work and charge whatever ran past the handover.
void MeasureTail(Ledger& ledger, int tenant, const LeaseDrain& drain, const GateSettings& s) {
  if (drain.held_lease->load(std::memory_order_relaxed) == 0) return;
  if (drain.held_lease->exchange(0, std::memory_order_acq_rel) == 0) return;  // another thread
  const uint64_t before = MonotonicNs();
  if (!drain.synchronize()) return;
  const uint64_t after = MonotonicNs();
  if (after - before < kTailResolutionNs) return;
  const uint64_t lease_end = ledger.usage()->tenants[tenant].tail_end_ns.load();
  Log(LogLevel::kDebug, "compute: work ran %llu us past the lease",
      static_cast<unsigned long long>(after > lease_end ? (after - lease_end) / 1000 : 0));
  ChargeTail(ledger, tenant, after, s);
}

}  // namespace

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void DecideLease(Ledger& ledger, uint64_t now, const GateSettings& s) {
  ComputeState& cs = ledger.usage()->compute;
  const uint64_t old_lease = cs.lease.load(std::memory_order_acquire);
  ChargeHolder(ledger, old_lease, now);

  // Busy tenants that were already busy at the last decision set the pace; those waking from
  // idle join at that pace rather than with credit saved while idle.
  bool busy[kMaxTenants] = {};
  uint64_t virtual_time = UINT64_MAX;
  uint32_t live_inference = 0;
  for (int i = 0; i < kMaxTenants; ++i) {
    if (!Live(ledger, i)) continue;
    if (ledger.limits()->tenants[i].spec.priority == Priority::kInference) ++live_inference;
    TenantUsage& u = ledger.usage()->tenants[i];
    busy[i] = Busy(u, now, s);
    if (busy[i] && u.share_permille.load(std::memory_order_relaxed) > 0) {
      const uint64_t pass = u.pass.load(std::memory_order_relaxed);
      if (pass < virtual_time) virtual_time = pass;
    }
  }
  if (virtual_time == UINT64_MAX) virtual_time = cs.virtual_time.load(std::memory_order_relaxed);

  int best_inference = -1, best_batch = -1;
  uint64_t inference_pass = UINT64_MAX, batch_pass = UINT64_MAX;
  double busy_weight = 0;
  uint32_t busy_inference = 0;
  for (int i = 0; i < kMaxTenants; ++i) {
    if (!busy[i]) continue;
    TenantUsage& u = ledger.usage()->tenants[i];
    const TenantSpec& spec = ledger.limits()->tenants[i].spec;
    busy_weight += Weight(spec);
    busy_inference += spec.priority == Priority::kInference ? 1 : 0;
    uint64_t pass = u.pass.load(std::memory_order_relaxed);
    if (u.share_permille.load(std::memory_order_relaxed) == 0 && pass < virtual_time) {
      pass = virtual_time;
      u.pass.store(pass, std::memory_order_relaxed);
    }
    if (u.not_before_ns.load(std::memory_order_relaxed) > now) continue;  // sitting out
    // A lease is only of use to a tenant launching now: waiting at the gate, or between two
    // launches (its thread may be blocked in the driver's full queue). One silent for longer
    // (between inference bursts, say) still counts as busy for shares, but a lease given to it
    // would sit idle while others wait. The decider itself is always waiting.
    if (!Launching(u, now, s)) continue;
    if (spec.priority == Priority::kBatch) {
      if (pass < batch_pass) batch_pass = pass, best_batch = i;
    } else if (pass < inference_pass) {
      inference_pass = pass, best_inference = i;
    }
  }
  int next = best_inference >= 0 ? best_inference : best_batch;
  if (best_inference >= 0 && best_batch >= 0) {
    // Batch goes first only once it is owed more than the slack of its guaranteed GPU time.
    const double batch_weight = Weight(ledger.limits()->tenants[best_batch].spec);
    const uint64_t slack =
        static_cast<uint64_t>(static_cast<double>(s.starve_slack_ns) / batch_weight);
    if (batch_pass + slack < inference_pass) next = best_batch;
  }
  uint64_t lease_end = now + s.slice_ns;
  if (next >= 0 && s.align_gangs) {
    // A gang tenant running on another of its GPUs goes now, with its lease ending there.
    const Priority priority = ledger.limits()->tenants[next].spec.priority;
    const uint64_t next_pass = ledger.usage()->tenants[next].pass.load(std::memory_order_relaxed);
    int gang = -1;
    uint64_t gang_pass = UINT64_MAX, gang_end = 0;
    for (int i = 0; i < kMaxTenants; ++i) {
      const TenantSpec& spec = ledger.limits()->tenants[i].spec;
      if (!busy[i] || spec.gang_size < 2 || spec.priority != priority) continue;
      const TenantUsage& u = ledger.usage()->tenants[i];
      if (!Launching(u, now, s)) continue;
      const uint64_t pass = u.pass.load(std::memory_order_relaxed);
      if (u.not_before_ns.load(std::memory_order_relaxed) > now || pass >= gang_pass) continue;
      const uint64_t end = GangLeaseEnd(ledger, spec, now);
      if (end > now) gang = i, gang_pass = pass, gang_end = end;
    }
    if (gang >= 0) {
      const uint64_t lead = static_cast<uint64_t>(2 * static_cast<double>(s.slice_ns) /
                                                  Weight(ledger.limits()->tenants[gang].spec));
      if (gang_pass <= next_pass + lead) next = gang;
      if (next == gang && gang_end < lease_end) lease_end = gang_end;
    }
  }
  for (int i = 0; i < kMaxTenants; ++i) {
    const uint32_t share =
        busy[i]
            ? static_cast<uint32_t>(1000 * Weight(ledger.limits()->tenants[i].spec) / busy_weight)
            : 0;
    ledger.usage()->tenants[i].share_permille.store(share, std::memory_order_relaxed);
  }
  cs.virtual_time.store(virtual_time, std::memory_order_relaxed);
  cs.busy_inference.store(busy_inference, std::memory_order_relaxed);
  cs.live_inference.store(live_inference, std::memory_order_relaxed);
  cs.lease_start_ns.store(now, std::memory_order_release);
  cs.lease.store(next >= 0 ? PackLease(next, lease_end) : 0, std::memory_order_release);
  cs.sequence.fetch_add(1, std::memory_order_acq_rel);
  FutexWakeAll(&cs.sequence);
}

void WaitForLease(Ledger& ledger, int tenant, const GateSettings& s, const LeaseDrain* drain) {
  ComputeState& cs = ledger.usage()->compute;
  TenantUsage& me = ledger.usage()->tenants[tenant];
  uint64_t now = MonotonicNs();
  uint64_t lease = cs.lease.load(std::memory_order_acquire);
  // Every process of the tenant shares this word: write it only when it is 0.1 ms stale, so a
  // launch loop does not bounce its cache line between processes. Idleness is judged in ms.
  constexpr uint64_t kDemandResolutionNs = 100'000;
  if (now - me.demand_ns.load(std::memory_order_relaxed) > kDemandResolutionNs) {
    me.demand_ns.store(now, std::memory_order_relaxed);
  }
  if (LeaseHolder(lease) == tenant && now < LeaseEnd(lease)) {  // the holder's fast path
    if (drain != nullptr && drain->held_lease->load(std::memory_order_relaxed) != lease) {
      drain->held_lease->store(lease, std::memory_order_relaxed);
    }
    return;
  }

  const uint64_t waited_from = now;
  me.waiting.fetch_add(1, std::memory_order_acq_rel);
  const TenantSpec& my_spec = ledger.limits()->tenants[tenant].spec;
  const bool inference = my_spec.priority == Priority::kInference;
  const bool gang = s.align_gangs && my_spec.gang_size > 1;
  bool just_decided = false;
  for (;;) {
    const uint32_t sequence = cs.sequence.load(std::memory_order_acquire);
    lease = cs.lease.load(std::memory_order_acquire);
    const int holder = LeaseHolder(lease);
    const uint64_t end = LeaseEnd(lease);
    if (holder == tenant && now < end) {
      if (drain != nullptr) drain->held_lease->store(lease, std::memory_order_relaxed);
      break;
    }
    if (drain != nullptr && holder >= 0 && holder != tenant &&
        drain->held_lease->load(std::memory_order_relaxed) != 0) {
      MeasureTail(ledger, tenant, *drain, s);  // clears held_lease: runs once
      now = MonotonicNs();
      continue;
    }
    bool may_decide = holder < 0 || now >= end || !Live(ledger, holder);
    if (!may_decide) {
      const TenantUsage& h = ledger.usage()->tenants[holder];
      const bool holder_idle = h.waiting.load(std::memory_order_relaxed) == 0 &&
                               now - h.demand_ns.load(std::memory_order_relaxed) > s.holder_idle_ns;
      const TenantSpec& holder_spec = ledger.limits()->tenants[holder].spec;
      const bool preempts = inference && holder_spec.priority == Priority::kBatch;
      // A gang tenant running on its other GPUs takes this one's lease early (the decision
      // still bounds how far ahead of its share that lets it get).
      const bool joins_gang = gang && holder_spec.priority == my_spec.priority &&
                              GangLeaseEnd(ledger, my_spec, now) > now;
      may_decide = holder_idle || preempts || joins_gang;
    }
    if (may_decide && !just_decided && TryLockDecider(cs, now)) {
      DecideLease(ledger, now, s);
      UnlockDecider(cs);
      just_decided = true;  // if that did not pick us, wait for the next change before deciding
      now = MonotonicNs();
      continue;
    }
    uint64_t wait = kMaxWaitNs;
    if (holder >= 0 && end > now && end - now < wait) wait = end - now;
    const uint64_t not_before = me.not_before_ns.load(std::memory_order_relaxed);
    if (not_before > now && not_before - now < wait) wait = not_before - now;
    if (wait < kMinWaitNs) wait = kMinWaitNs;
    FutexWait(&cs.sequence, sequence, wait);
    just_decided = false;
    now = MonotonicNs();
    me.demand_ns.store(now, std::memory_order_relaxed);
  }
  me.waiting.fetch_sub(1, std::memory_order_acq_rel);
  me.throttled_ns.fetch_add(now - waited_from, std::memory_order_relaxed);
}

namespace {

bool SynchronizeForGate() {
  if (CaptureActive()) return false;
  auto real = REAL(cuCtxSynchronize);
  return real != nullptr && real() == CUDA_SUCCESS;
}

}  // namespace

void GateLaunch(CUstream stream) {
  const Config& config = GetConfig();
  if (!config.managed || !config.compute) return;
  GateTarget target{};
  if (!ComputeTarget(CurrentOrdinal(), &target)) return;
  const GateSettings settings{.slice_ns = config.compute_slice_ns,
                              .idle_ns = 2 * config.compute_slice_ns,
                              .holder_idle_ns = 1'000'000,
                              .starve_slack_ns = config.compute_slice_ns,
                              .align_gangs = config.compute_gang};
  const LeaseDrain drain{target.held_lease, SynchronizeForGate};
  WaitForLease(*target.ledger, target.tenant, settings, config.compute_drain ? &drain : nullptr);
  // Queued work delays whoever takes the lease next. Batch work keeps its queue short while it
  // shares the GPU, and while any inference tenant is registered on it even if idle: that
  // tenant's next request would otherwise wait behind the whole queue. Inference keeps its queue
  // short only next to another busy inference tenant; next to batch alone, bounding it would only
  // put gaps between its own kernels.
  if (!config.compute_inflight) return;
  const UsageSegment& usage = *target.ledger->usage();
  const bool inference =
      target.ledger->limits()->tenants[target.tenant].spec.priority == Priority::kInference;
  const bool bound =
      inference
          ? usage.compute.busy_inference.load(std::memory_order_relaxed) > 1
          : usage.compute.live_inference.load(std::memory_order_relaxed) > 0 ||
                usage.tenants[target.tenant].share_permille.load(std::memory_order_relaxed) < 1000;
  if (bound) BoundInflight(CurrentOrdinal(), stream);
}

}  // namespace gpufrac::runtime
