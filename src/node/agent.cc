#include "node/agent.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <random>

#include "common/human_bytes.h"
#include "node/cuda_attributes.h"
#include "node/log.h"
#include "node/placement.h"
#include "runtime/process_identity.h"
#include "runtime/tenant_process.h"

namespace gpufrac::node {
namespace {

// Restarts whose spawn fails for a passing reason: tried again after 100 ms, doubling to 5 s, at
// most 10 times in a row (about half a minute in all) before the tenant ends.
constexpr int kMaxSpawnRetries = 10;
constexpr std::chrono::milliseconds kSpawnRetryPause{100};
constexpr std::chrono::milliseconds kMaxSpawnRetryPause{5000};

constexpr auto kDeletePoll = std::chrono::milliseconds(10);

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() >= static_cast<size_t>(kTenantNameBytes)) return false;
  if (!isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// What execvp would run for `program`, or an error in its words. Checked before spawning because
// setsid(1) stands between the agent and the exec, so a failed exec would look like an exit.
bool CheckRunnable(const std::string& program, std::string* error) {
  auto runnable = [](const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) {
    if (runnable(program)) return true;
    *error = "cannot run '" + program +
             "': " + strerror(access(program.c_str(), F_OK) == 0 ? EACCES : ENOENT);
    return false;
  }
  const char* path_env = getenv("PATH");
  const std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    const size_t colon = path.find(':', start);
    const std::string dir = path.substr(start, colon == std::string::npos ? colon : colon - start);
    if (runnable((dir.empty() ? "." : dir) + "/" + program)) return true;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  *error = "cannot run '" + program + "': not found in PATH";
  return false;
}

std::string DescribeExit(int status) {
  return status >= 128 ? "killed by signal " + std::to_string(status - 128)
                       : "exited with status " + std::to_string(status);
}

}  // namespace

Status Agent::Start(const NodeConfig& config, std::unique_ptr<Agent>* out) {
  std::unique_ptr<Agent> agent(new Agent(config));
  agent->interposer_ =
      config.interposer_path.empty() ? DefaultInterposerPath() : config.interposer_path;
  struct stat st;
  if (agent->interposer_.empty() || stat(agent->interposer_.c_str(), &st) != 0) {
    return Status::Error("interposer not found at '" + agent->interposer_ +
                         "' (set interposer: in the config file)");
  }
  for (const char* candidate : {"/usr/bin/setsid", "/bin/setsid"}) {
    if (access(candidate, X_OK) == 0) {
      agent->setsid_ = candidate;
      break;
    }
  }
  if (Status s = ListGpus(&agent->gpus_); !s.ok()) return s;
  const std::map<std::string, int> sm_counts = SmCountsByUuid();
  for (const GpuInfo& gpu : agent->gpus_) {
    const auto sms = sm_counts.find(gpu.uuid);
    agent->sm_counts_.push_back(sms == sm_counts.end() ? 0 : sms->second);
    auto ledger = std::make_unique<Ledger>();
    if (!ledger->OpenAsOwner(gpu.uuid.c_str(), gpu.total_bytes)) {
      return Status::Error("cannot open the ledger of GPU " + std::to_string(gpu.index) + ": " +
                           strerror(errno));
    }
    agent->ledgers_.push_back(std::move(ledger));
    LogEvent("gpu.discovered",
             {{"gpu", std::to_string(gpu.index)},
              {"uuid", gpu.uuid},
              {"name", gpu.name},
              {"memory", Human(gpu.total_bytes)},
              {"sm_count", agent->sm_counts_.back() > 0 ? std::to_string(agent->sm_counts_.back())
                                                        : "unknown"}});
  }
  if (Status s = agent->store_.Open(config.state_path); !s.ok()) return s;
  std::vector<TenantRecord> records;
  if (Status s = agent->store_.LoadAll(&records); !s.ok()) return s;
  agent->backstop_.mode = config.backstop_mode;
  agent->backstop_.interval_ms = config.backstop_interval_ms;
  agent->backstop_.flagged.assign(agent->gpus_.size(), {0, 0});
  agent->backstop_.killed.assign(agent->gpus_.size(), {0, 0});
  agent->backstop_.unattributed.assign(agent->gpus_.size(), 0);
  agent->gpu_busy_.assign(agent->gpus_.size(), -1);
  agent->gpu_problem_.assign(agent->gpus_.size(), "");
  agent->nvml_ = std::make_unique<NvmlProcesses>();
  if (Status s = agent->nvml_->Open(); !s.ok()) {
    if (config.backstop_mode != BackstopMode::kOff) return s;
    agent->nvml_.reset();  // the backstop is off: only compute busy and health are lost
  } else {
    // Before the API serves: nothing may be placed on a GPU already known to be unhealthy.
    std::vector<std::string> problems;
    for (const GpuInfo& gpu : agent->gpus_) problems.push_back(agent->nvml_->Problem(gpu.uuid));
    std::lock_guard lock(agent->mu_);
    agent->UpdateHealthLocked(problems);
  }
  // Adopt before the first reap: a reap would take the old agent's tenants for orphans.
  agent->Adopt(std::move(records));
  agent->reaper_ = std::thread([a = agent.get()] {
    std::unique_lock lock(a->reaper_mu_);
    while (!a->stopping_) {
      lock.unlock();
      a->ReapOnce();
      lock.lock();
      a->reaper_wake_.wait_for(lock, std::chrono::milliseconds(a->config_.reap_interval_ms));
    }
  });
  if (agent->nvml_ != nullptr) {
    agent->backstop_thread_ = std::thread([a = agent.get()] {
      std::unique_lock lock(a->reaper_mu_);
      while (!a->stopping_) {
        lock.unlock();
        a->SampleBackstop();
        lock.lock();
        a->reaper_wake_.wait_for(lock, std::chrono::milliseconds(a->config_.backstop_interval_ms));
      }
    });
  }
  *out = std::move(agent);
  return Status::Ok();
}

Agent::~Agent() {
  {
    std::lock_guard lock(reaper_mu_);
    stopping_ = true;
  }
  reaper_wake_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  if (backstop_thread_.joinable()) backstop_thread_.join();
}

Ledger* Agent::LedgerFor(const std::string& uuid, int* gpu_index) {
  for (size_t i = 0; i < gpus_.size(); ++i) {
    if (gpus_[i].uuid == uuid) {
      *gpu_index = gpus_[i].index;
      return ledgers_[i].get();
    }
  }
  return nullptr;
}

double Agent::ComputePromisedLocked(size_t pos) const {
  double promised = 0;
  for (const TenantLimits& t : ledgers_[pos]->limits()->tenants) {
    if (t.active != 0) promised += t.spec.compute_request;
  }
  return promised;
}

void Agent::Adopt(std::vector<TenantRecord> records) {
  std::lock_guard lock(mu_);
  for (TenantRecord& r : records) {
    Tenant t;
    t.record = std::move(r);
    TenantRecord& rec = t.record;
    if (rec.state != TenantState::kExited) {
      int gpu_index = -1;
      Ledger* ledger = LedgerFor(rec.gpu_uuid, &gpu_index);
      bool alive = rec.pid > 0 && ProcessIsAlive(rec.pid, rec.pid_start);
      for (const auto& [pid, start] : rec.attached) alive |= ProcessIsAlive(pid, start);
      std::string lost;
      if (ledger == nullptr) {
        lost = "its GPU " + rec.gpu_uuid + " is no longer present";
      } else if (rec.pid <= 0 && !rec.attach_only) {
        // The agent died between admitting it and starting its command.
        ledger->UnregisterTenant(rec.ledger_index, rec.generation);
        lost = "the agent stopped before its command started";
      } else if (!ledger->AdoptTenant(rec.ledger_index, rec.generation, getpid())) {
        // Someone reaped it while no agent owned it: its memory is no longer promised, so a live
        // process would run unaccounted. Stop it rather than allocate its request twice.
        if (alive) SignalLocked(rec, SIGKILL);
        rec.attached.clear();
        lost = "it left the ledger while the agent was down";
      } else {
        rec.gpu_index = gpu_index;
        rec.adopted = true;
        t.main_done = !alive;
        LogEvent("tenant.adopted", {{"id", rec.id},
                                    {"gpu", std::to_string(gpu_index)},
                                    {"pid", std::to_string(rec.pid)},
                                    {"alive", alive ? "true" : "false"}});
        if (alive && rec.state == TenantState::kStopping) {
          // The previous agent died while deleting it, and the SIGKILL that would have ended
          // the grace period died with it: start the delete over (SIGTERM, a fresh grace
          // period, then SIGKILL by the reaper) rather than leave it stopping forever.
          SignalLocked(rec, SIGTERM);
          t.resumed_kill_at =
              std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.grace_period_ms);
          LogEvent("tenant.stopping", {{"id", rec.id},
                                       {"grace_ms", std::to_string(config_.grace_period_ms)},
                                       {"resumed", "true"}});
        }
      }
      if (!lost.empty()) {
        rec.state = TenantState::kExited;
        rec.exit_known = false;
        rec.reason = lost;
        rec.finished_ms = NowMs();
        LogEvent("tenant.reclaimed", {{"id", rec.id}, {"reason", lost}});
      }
      PersistLocked(rec);
    }
    tenants_.emplace(rec.id, std::move(t));
  }
}

void Agent::PersistLocked(const TenantRecord& r) {
  if (Status s = store_.Put(r); !s.ok()) {
    LogEvent("store.error", {{"id", r.id}, {"error", s.message()}});
  }
}

std::string Agent::NewIdLocked() {
  // Random, so that ids never repeat across agent restarts with the same database.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  for (;;) {
    char id[24];
    snprintf(id, sizeof id, "t-%08llx", static_cast<unsigned long long>(rng() & 0xffffffffull));
    if (tenants_.count(id) == 0) return id;
  }
}

AgentError Agent::Create(const CreateTenantRequest& request, TenantView* out) {
  const bool attach_only = request.command.empty();
  if (!attach_only && (request.release_on_exit || request.attach_pid != 0)) {
    return AgentError::Invalid("release, attach_pid: only for attach-only tenants (no command)");
  }
  const uint64_t attach_start = request.attach_pid > 0 ? ProcessStartTime(request.attach_pid) : 0;
  if (request.attach_pid != 0 && attach_start == 0) {
    return AgentError::Invalid("attach_pid: " + std::to_string(request.attach_pid) +
                               " is not a running process");
  }
  if (std::string why = request.attach_pid > 0 ? WhyPidCannotJoin(request.attach_pid) : "";
      !why.empty()) {
    return AgentError::Invalid("attach_pid: " + why);
  }
  if (!request.name.empty() && !ValidName(request.name)) {
    return AgentError::Invalid("name: '" + request.name +
                               "' must be 1-63 characters of letters, digits, '-', '_', '.', "
                               "starting with a letter or digit");
  }
  std::string error;
  if (!attach_only && !CheckRunnable(request.command[0], &error)) {
    return AgentError::Invalid("command: " + error);
  }
  std::unique_lock lock(mu_);
  const std::string id = request.name.empty() ? NewIdLocked() : request.name;
  if (tenants_.count(id) != 0) return AgentError::Conflict("tenant '" + id + "' already exists");
  if (gpus_.empty()) return AgentError::Conflict("this host has no GPU");

  PlacementRequest place;
  place.request = request.memory;
  if (request.has_memory_limit) place.limit = request.memory_limit;
  place.policy = request.has_placement ? request.placement : config_.default_placement;
  place.compute_request = request.compute_request;
  place.compute_limit = request.compute_limit;
  place.compute_strict = request.compute_strict;
  if (!request.gpu.empty()) {
    GpuInfo gpu;
    if (Status s = FindGpu(gpus_, request.gpu, &gpu); !s.ok()) {
      return AgentError::Invalid("gpu: " + s.message());
    }
    place.gpu = gpu.index;
  }
  // Sizes no GPU here could ever hold are the caller's mistake, not a momentary conflict.
  uint64_t largest = 0;
  std::vector<GpuLoad> loads;
  for (size_t i = 0; i < gpus_.size(); ++i) {
    largest = std::max(largest, gpus_[i].total_bytes);
    loads.push_back({gpus_[i].index, gpus_[i].total_bytes, ledgers_[i]->Committed(),
                     gpu_problem_[i], ComputePromisedLocked(i)});
  }
  if (!request.memory.is_fraction && request.memory.bytes > largest) {
    return AgentError::Invalid("memory: " + Human(request.memory.bytes) +
                               " exceeds the largest GPU here (" + Human(largest) + ")");
  }
  if (request.has_memory_limit && !request.memory_limit.is_fraction &&
      request.memory_limit.bytes > largest) {
    return AgentError::Invalid("memory_limit: " + Human(request.memory_limit.bytes) +
                               " exceeds the largest GPU here (" + Human(largest) + ")");
  }
  // So is a request invalid on every GPU it may go to. One invalid on some GPUs only (a byte
  // limit below a fractional request on the larger cards) just cannot go there: Place says why.
  // Checked before any burst reclaim, which must never kill a borrower for a request refused.
  std::string invalid;
  for (const GpuInfo& g : gpus_) {
    if (place.gpu >= 0 && g.index != place.gpu) continue;
    invalid = RequestProblem(place, g.total_bytes);
    if (invalid.empty()) break;
  }
  if (!invalid.empty()) return AgentError::Invalid(invalid);

  PlacementResult placed = Place(place, loads);
  std::string refusal = placed.refusal;
  if (placed.candidates.empty()) {
    std::vector<uint64_t> asked;
    for (const GpuInfo& g : gpus_) asked.push_back(RequestBytes(place, g.total_bytes));
    // Only where memory is all that is missing: a kill must never precede a refusal for another
    // reason (compute, an invalid limit, an unhealthy GPU).
    const BurstPlan plan = PlanBurstReclaimLocked(asked, placed.short_of_memory);
    if (plan.gpu >= 0) {
      lock.unlock();
      ReclaimBurst(plan, asked[static_cast<size_t>(plan.gpu)]);
      lock.lock();
      if (tenants_.count(id) != 0)
        return AgentError::Conflict("tenant '" + id + "' already exists");
      placed.candidates = {plan.gpu};
      refusal += " (after reclaiming borrowed memory on GPU " + std::to_string(plan.gpu) + ")";
    }
  }
  Tenant t;
  TenantRecord& rec = t.record;
  for (int index : placed.candidates) {
    const GpuInfo& gpu = gpus_[static_cast<size_t>(index)];
    Ledger* ledger = ledgers_[static_cast<size_t>(index)].get();
    TenantSpec spec;
    snprintf(spec.name, sizeof spec.name, "%s", id.c_str());
    spec.memory_request = RequestBytes(place, gpu.total_bytes);
    spec.memory_limit = LimitBytes(place, gpu.total_bytes);
    // Compute as gpufrac run sets it: by default the same share of the GPU as of its memory; fair
    // mode may burst to the whole GPU, strict mode is held to its request.
    spec.compute_request = ComputeRequest(place, gpu.total_bytes);
    spec.compute_mode = request.compute_strict ? ComputeMode::kStrict : ComputeMode::kFair;
    spec.priority = request.batch ? Priority::kBatch : Priority::kInference;
    spec.compute_limit = ComputeLimit(place, gpu.total_bytes);
    char why[256] = {};
    int ledger_index = -1;
    // The ledger re-checks under its lock: a gpufrac run on the same GPU may have taken the room.
    if (!ledger->RegisterTenant(spec, getpid(), &ledger_index, why, sizeof why)) {
      refusal +=
          (refusal.empty() ? "" : "; ") + std::string("GPU ") + std::to_string(index) + ": " + why;
      continue;
    }
    rec.id = id;
    rec.gpu_index = gpu.index;
    rec.gpu_uuid = gpu.uuid;
    rec.ledger_index = ledger_index;
    rec.generation = ledger->limits()->tenants[ledger_index].generation;
    rec.memory_request = spec.memory_request;
    rec.memory_limit = spec.memory_limit;
    rec.compute_request = spec.compute_request;
    rec.compute_limit = spec.compute_limit;
    rec.compute_strict = request.compute_strict;
    rec.batch = request.batch;
    break;
  }
  if (rec.ledger_index < 0) {
    LogEvent("tenant.refused", {{"id", id}, {"reason", refusal}});
    return AgentError::Conflict("does not fit: " + refusal);
  }
  rec.command = request.command;
  rec.burst_signal = request.burst_signal;
  rec.burst_hook = request.burst_hook;
  rec.restart_on_failure = request.restart_on_failure;
  rec.max_restarts = request.max_restarts;
  rec.created_ms = NowMs();
  rec.state = TenantState::kRunning;
  if (attach_only) {
    rec.attach_only = true;
    rec.release_on_exit = request.release_on_exit;
    rec.token = NewTokenLocked();
    if (request.attach_pid > 0) {
      rec.attached.emplace_back(request.attach_pid, attach_start);
      rec.ever_attached = true;
    }
  }
  // Persist before starting: if the agent dies in between, the next one finds the admission and
  // releases it instead of leaking the request.
  PersistLocked(rec);
  if (SpawnFailure failure; !attach_only && !StartCommandLocked(&rec, &failure)) {
    ledgers_[static_cast<size_t>(rec.gpu_index)]->UnregisterTenant(rec.ledger_index,
                                                                   rec.generation);
    store_.Remove(id);
    LogEvent("tenant.refused", {{"id", id}, {"reason", failure.message}});
    // 400 tells the caller (gpufrac serve) to stop sending this command until its configuration
    // changes, so it is only for failures that the same command hits every time.
    if (!SpawnFailureIsPermanent(failure)) {
      return AgentError::Unavailable("command: cannot be started now, a temporary failure (" +
                                     failure.message + "); try again");
    }
    // What exec refused is setsid(1), checked at start: its going missing is the host's fault, not
    // the command's (CheckRunnable vouched for that). Too long an argument list is the command's.
    if (!setsid_.empty() && failure.error != E2BIG) {
      return AgentError::Internal("command: " + failure.message);
    }
    return AgentError::Invalid("command: " + failure.message);
  }
  LogEvent("tenant.created",
           {{"id", id},
            {"gpu", std::to_string(rec.gpu_index)},
            {"request", Human(rec.memory_request)},
            {"limit", Human(rec.memory_limit)},
            {"placement", request.gpu.empty() ? PlacementName(place.policy) : "explicit"},
            {"pid", attach_only ? "attach-only" : std::to_string(rec.pid)}});
  auto [it, inserted] = tenants_.emplace(id, std::move(t));
  *out = ViewLocked(it->second);
  return {};
}

bool Agent::StartCommandLocked(TenantRecord* r, SpawnFailure* failure) {
  std::vector<std::string> argv = r->command;
  if (!setsid_.empty()) argv.insert(argv.begin(), setsid_);
  const pid_t pid =
      SpawnTenantProcess(argv, ChildEnvironment(interposer_, r->id, r->gpu_uuid), failure);
  if (pid < 0) return false;
  r->pid = pid;
  r->pid_start = ProcessStartTime(pid);
  PersistLocked(*r);
  return true;
}

bool Agent::ShouldRestartLocked(const Tenant& t) const {
  const TenantRecord& r = t.record;
  return r.restart_on_failure && r.state == TenantState::kRunning && r.exit_known &&
         r.exit_status != 0 && !t.burst_killed && t.backstop_kill.empty() &&
         r.restarts < r.max_restarts;
}

int Agent::LiveProcessesLocked(const TenantRecord& r) const {
  int gpu_index = -1;
  const Ledger* ledger = const_cast<Agent*>(this)->LedgerFor(r.gpu_uuid, &gpu_index);
  if (ledger == nullptr) return 0;
  int live = 0;
  for (const ProcessSlot& slot : ledger->usage()->processes) {
    const int32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid > 0 && slot.tenant == static_cast<uint32_t>(r.ledger_index) &&
        slot.generation == r.generation && ProcessIsAlive(pid, slot.start_time)) {
      ++live;
    }
  }
  return live;
}

void Agent::SignalLocked(const TenantRecord& r, int sig) const {
  if (r.pid > 0 && ProcessIsAlive(r.pid, r.pid_start)) {
    // The command runs in its own process group (setsid): reach its children too.
    if (setsid_.empty() || kill(-r.pid, sig) != 0) kill(r.pid, sig);
  }
  for (const auto& [pid, start] : r.attached) {
    if (ProcessIsAlive(pid, start)) kill(pid, sig);
  }
  int gpu_index = -1;
  const Ledger* ledger = const_cast<Agent*>(this)->LedgerFor(r.gpu_uuid, &gpu_index);
  if (ledger == nullptr) return;
  // Processes that joined the tenant from elsewhere (another group) hold ledger slots.
  for (const ProcessSlot& slot : ledger->usage()->processes) {
    const int32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid > 0 && slot.tenant == static_cast<uint32_t>(r.ledger_index) &&
        slot.generation == r.generation && ProcessIsAlive(pid, slot.start_time)) {
      kill(pid, sig);
    }
  }
}

void Agent::FinishLocked(Tenant* t) {
  TenantRecord& r = t->record;
  int gpu_index = -1;
  if (Ledger* ledger = LedgerFor(r.gpu_uuid, &gpu_index)) {
    ledger->UnregisterTenant(r.ledger_index, r.generation);
  }
  const bool deleted = r.state == TenantState::kStopping;
  r.state = TenantState::kExited;
  r.finished_ms = NowMs();
  std::string how = r.exit_known    ? DescribeExit(r.exit_status)
                    : r.attach_only ? std::string("its attached processes exited")
                                    : std::string("exit status unknown (adopted)");
  if (deleted) {
    how = (t->escalated ? "deleted, SIGKILL after the grace period; " : "deleted; ") + how;
  }
  if (t->burst_killed) how = "killed: kept borrowed memory another tenant's request needed; " + how;
  if (!t->backstop_kill.empty()) how = t->backstop_kill + "; " + how;
  r.reason = how;
  PersistLocked(r);
  const bool killed = t->escalated || t->burst_killed || !t->backstop_kill.empty();
  LogEvent(killed ? "tenant.killed" : "tenant.reclaimed",
           {{"id", r.id},
            {"gpu", std::to_string(r.gpu_index)},
            {"exit_status", r.exit_known ? std::to_string(r.exit_status) : "unknown"},
            {"reason", how}});
}

void Agent::ReapOnce() {
  std::lock_guard lock(mu_);
  for (auto& ledger : ledgers_) ledger->ReapDead();
  for (auto& [id, t] : tenants_) {
    TenantRecord& r = t.record;
    if (r.state == TenantState::kExited) continue;
    if (t.resumed_kill_at != std::chrono::steady_clock::time_point{} && !t.escalated &&
        std::chrono::steady_clock::now() >= t.resumed_kill_at) {
      t.escalated = true;
      SignalLocked(r, SIGKILL);
    }
    if (r.attach_only) {
      // A reservation: it ends when deleted, or (release on exit) when what attached has ended.
      const bool none_left = PruneAttachedLocked(&r);
      const bool release =
          r.state == TenantState::kStopping || (r.release_on_exit && r.ever_attached);
      if (none_left && release && LiveProcessesLocked(r) == 0) FinishLocked(&t);
      continue;
    }
    if (!t.main_done) {
      if (!r.adopted) {
        int status = 0;
        const pid_t got = waitpid(r.pid, &status, WNOHANG);
        if (got == r.pid) {
          t.main_done = true;
          r.exit_known = true;
          r.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else if (got < 0 && errno == ECHILD) {
          t.main_done = true;  // reaped elsewhere: the status is lost
        }
      } else if (!ProcessIsAlive(r.pid, r.pid_start)) {
        t.main_done = true;
      }
    }
    // "All its processes exited": the command, and every process holding memory for it.
    if (!t.main_done || LiveProcessesLocked(r) != 0) continue;
    if (ShouldRestartLocked(t)) {
      const auto now = std::chrono::steady_clock::now();
      if (now < t.spawn_retry_at) continue;  // a passing spawn failure: its pause is not over
      SpawnFailure failure;
      if (StartCommandLocked(&r, &failure)) {
        t.spawn_retries = 0;
        ++r.restarts;
        t.main_done = false;
        PersistLocked(r);
        LogEvent("tenant.restarted", {{"id", r.id},
                                      {"gpu", std::to_string(r.gpu_index)},
                                      {"restarts", std::to_string(r.restarts)},
                                      {"pid", std::to_string(r.pid)},
                                      {"reason", DescribeExit(r.exit_status)}});
        r.exit_known = false;
        continue;
      }
      if (!SpawnFailureIsPermanent(failure) && t.spawn_retries < kMaxSpawnRetries) {
        // Out of descriptors or processes for a moment: ending the tenant would give up its
        // admission (and restarts) over something that passes, so try again after a pause.
        const auto pause = std::min(kMaxSpawnRetryPause, kSpawnRetryPause * (1 << t.spawn_retries));
        ++t.spawn_retries;
        t.spawn_retry_at = now + pause;
        LogEvent("tenant.restart_delayed", {{"id", r.id},
                                            {"error", failure.message},
                                            {"attempt", std::to_string(t.spawn_retries)},
                                            {"retry_in_ms", std::to_string(pause.count())}});
        continue;
      }
      LogEvent("tenant.restart_failed", {{"id", r.id}, {"error", failure.message}});
    }
    FinishLocked(&t);
  }
}

TenantView Agent::ViewLocked(const Tenant& t) const {
  TenantView v;
  v.record = t.record;
  if (t.record.state == TenantState::kExited) return v;
  int gpu_index = -1;
  const Ledger* ledger = const_cast<Agent*>(this)->LedgerFor(t.record.gpu_uuid, &gpu_index);
  if (ledger == nullptr) return v;
  const TenantUsage& u = ledger->usage()->tenants[t.record.ledger_index];
  if (u.generation.load(std::memory_order_acquire) == t.record.generation) {
    v.usage.used = u.used.load(std::memory_order_relaxed);
    v.usage.peak = u.peak.load(std::memory_order_relaxed);
    v.usage.refusals = u.refusals.load(std::memory_order_relaxed);
    v.usage.gpu_time_ns = u.gpu_time_ns.load(std::memory_order_relaxed);
    v.usage.throttled_ns = u.throttled_ns.load(std::memory_order_relaxed);
    v.usage.share_permille = u.share_permille.load(std::memory_order_relaxed);
  }
  v.usage.processes = LiveProcessesLocked(t.record);
  for (const auto& [pid, start] : t.record.attached) {
    // Attached processes count before they first use CUDA (then they hold a slot, counted above).
    if (ledger->FindSlot(pid, start) < 0 && ProcessIsAlive(pid, start)) ++v.usage.processes;
  }
  if (nvml_ != nullptr && backstop_.samples > 0) {
    auto it = nvml_used_.find(t.record.id);
    v.usage.nvml_used = it == nvml_used_.end() ? 0 : static_cast<int64_t>(it->second);
  }
  return v;
}

std::vector<TenantView> Agent::List() {
  std::lock_guard lock(mu_);
  std::vector<TenantView> out;
  for (const auto& [id, t] : tenants_) out.push_back(ViewLocked(t));
  return out;
}

AgentError Agent::Get(const std::string& id, TenantView* out) {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(id);
  if (it == tenants_.end()) return AgentError::NotFound("no tenant '" + id + "'");
  *out = ViewLocked(it->second);
  return {};
}

AgentError Agent::Delete(const std::string& id, int64_t grace_ms, TenantView* out) {
  using Clock = std::chrono::steady_clock;
  const auto grace = std::chrono::milliseconds(grace_ms < 0 ? config_.grace_period_ms : grace_ms);
  const auto deadline = Clock::now() + grace;
  {
    std::lock_guard lock(mu_);
    auto it = tenants_.find(id);
    if (it == tenants_.end()) return AgentError::NotFound("no tenant '" + id + "'");
    Tenant& t = it->second;
    if (t.record.state == TenantState::kRunning) {
      t.record.state = TenantState::kStopping;
      PersistLocked(t.record);
      SignalLocked(t.record, SIGTERM);
      LogEvent("tenant.stopping", {{"id", id}, {"grace_ms", std::to_string(grace.count())}});
    }
  }
  bool killed = false;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      auto it = tenants_.find(id);
      if (it == tenants_.end()) return AgentError::NotFound("no tenant '" + id + "'");
      Tenant& t = it->second;
      if (t.record.state == TenantState::kExited) {
        *out = ViewLocked(t);
        store_.Remove(id);
        tenants_.erase(it);
        LogEvent("tenant.deleted", {{"id", id}});
        return {};
      }
      const auto now = Clock::now();
      if (!killed && now >= deadline) {
        t.escalated = true;
        SignalLocked(t.record, SIGKILL);
        killed = true;
      } else if (killed && now >= deadline + kKillWait) {
        return AgentError::Internal("tenant '" + id + "' did not exit after SIGKILL");
      }
    }
    // The reaper notices the exit and reclaims; poke it so that deletes do not wait a full tick.
    reaper_wake_.notify_all();
    std::this_thread::sleep_for(kDeletePoll);
  }
}

std::vector<GpuView> Agent::Gpus() {
  std::vector<GpuView> out;
  for (size_t i = 0; i < gpus_.size(); ++i) {
    GpuView v;
    v.info = gpus_[i];
    v.sm_count = sm_counts_[i];
    const Ledger& ledger = *ledgers_[i];
    v.committed = ledger.Committed();
    {
      std::lock_guard lock(mu_);
      v.compute_busy = gpu_busy_[i];
      v.problem = gpu_problem_[i];
    }
    for (int k = 0; k < kMaxTenants; ++k) {
      if (__atomic_load_n(&ledger.limits()->tenants[k].active, __ATOMIC_ACQUIRE) != 1) continue;
      ++v.tenants;
      v.used += ledger.usage()->tenants[k].used.load(std::memory_order_relaxed);
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace gpufrac::node
