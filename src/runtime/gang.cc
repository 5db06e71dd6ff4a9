#include "runtime/gang.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <cstdio>
#include <new>

#include "runtime/compute_gate.h"

namespace gpufrac::runtime {
namespace {

// The other GPUs' ledgers, opened on first use and kept for the life of the process (mapped
// storage, never destroyed: no exit-time destructor may unmap what another thread still reads).
constexpr int kMaxPeers = 16;

struct Peer {
  char uuid[kUuidBytes];
  Ledger ledger;
};

Peer* g_peers = nullptr;
int g_peer_count = 0;
pthread_mutex_t g_peers_mu = PTHREAD_MUTEX_INITIALIZER;

const Ledger* PeerLedger(const char* uuid) {
  pthread_mutex_lock(&g_peers_mu);
  const Ledger* found = nullptr;
  if (g_peers == nullptr) {
    void* p = mmap(nullptr, sizeof(Peer) * kMaxPeers, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      g_peers = static_cast<Peer*>(p);
      for (int i = 0; i < kMaxPeers; ++i) new (&g_peers[i]) Peer{};
    }
  }
  for (int i = 0; g_peers != nullptr && i < g_peer_count && found == nullptr; ++i) {
    if (strncmp(g_peers[i].uuid, uuid, kUuidBytes) == 0 && g_peers[i].ledger.is_open()) {
      found = &g_peers[i].ledger;
    }
  }
  if (found == nullptr && g_peers != nullptr && g_peer_count < kMaxPeers) {
    Peer& peer = g_peers[g_peer_count];
    if (peer.ledger.OpenAsTenant(uuid)) {
      snprintf(peer.uuid, sizeof peer.uuid, "%s", uuid);
      ++g_peer_count;
      found = &peer.ledger;
    }
  }
  pthread_mutex_unlock(&g_peers_mu);
  return found;
}

}  // namespace

uint64_t GangLeaseEnd(const Ledger& self, const TenantSpec& spec, uint64_t now) {
  uint64_t latest = 0;
  const uint32_t size = spec.gang_size < kMaxGangGpus ? spec.gang_size : kMaxGangGpus;
  for (uint32_t g = 0; size > 1 && g < size; ++g) {
    if (strncmp(spec.gang[g], self.limits()->uuid, kUuidBytes) == 0) continue;
    const Ledger* peer = PeerLedger(spec.gang[g]);
    if (peer == nullptr) continue;
    uint64_t generation = 0;
    const int index = peer->FindTenant(spec.name, &generation);
    if (index < 0) continue;
    const uint64_t lease = peer->usage()->compute.lease.load(std::memory_order_acquire);
    if (LeaseHolder(lease) == index && LeaseEnd(lease) > now && LeaseEnd(lease) > latest) {
      latest = LeaseEnd(lease);
    }
  }
  return latest;
}

}  // namespace gpufrac::runtime
