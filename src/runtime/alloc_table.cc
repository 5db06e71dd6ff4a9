#include "runtime/alloc_table.h"

#include <sys/mman.h>

namespace gpufrac::runtime {
namespace {

constexpr uint64_t kInitialCapacity = 256;

uint64_t Mix(uint64_t x) {
  // splitmix64 finalizer: device pointers share low bits, so spread them before masking.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t AllocTable::Key(AllocKind kind, uint64_t handle) {
  // Handles of different kinds may collide; the kind goes into the top byte. Keys are never 0.
  return (handle & 0x00ffffffffffffffull) ^ (static_cast<uint64_t>(kind) << 56);
}

void AllocTable::Place(Shard& shard, uint64_t key, AllocRecord record) {
  uint64_t i = Mix(key) & (shard.capacity - 1);
  while (shard.slots[i].key != 0) i = (i + 1) & (shard.capacity - 1);
  shard.slots[i] = Slot{key, record};
  ++shard.count;
}

bool AllocTable::Grow(Shard& shard) {
  const uint64_t capacity = shard.capacity == 0 ? kInitialCapacity : shard.capacity * 2;
  void* p = mmap(nullptr, capacity * sizeof(Slot), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  Slot* old = shard.slots;
  const uint64_t old_capacity = shard.capacity;
  shard.slots = static_cast<Slot*>(p);
  shard.capacity = capacity;
  shard.count = 0;
  for (uint64_t i = 0; i < old_capacity; ++i) {
    if (old[i].key != 0) Place(shard, old[i].key, old[i].record);
  }
  if (old != nullptr) munmap(old, old_capacity * sizeof(Slot));
  return true;
}

bool AllocTable::Insert(AllocKind kind, uint64_t handle, AllocRecord record) {
  const uint64_t key = Key(kind, handle);
  Shard& shard = shards_[Mix(key) % kShards];
  pthread_mutex_lock(&shard.mu);
  bool ok = true;
  // Keep the load under 70% so probes stay short.
  if ((shard.count + 1) * 10 > shard.capacity * 7) ok = Grow(shard);
  if (ok) Place(shard, key, record);
  pthread_mutex_unlock(&shard.mu);
  return ok;
}

bool AllocTable::Take(AllocKind kind, uint64_t handle, AllocRecord* record) {
  const uint64_t key = Key(kind, handle);
  Shard& shard = shards_[Mix(key) % kShards];
  pthread_mutex_lock(&shard.mu);
  bool found = false;
  if (shard.capacity != 0) {
    const uint64_t mask = shard.capacity - 1;
    uint64_t i = Mix(key) & mask;
    while (shard.slots[i].key != 0 && shard.slots[i].key != key) i = (i + 1) & mask;
    if (shard.slots[i].key == key) {
      found = true;
      *record = shard.slots[i].record;
      // Backward-shift deletion: no tombstones, so lookups never degrade.
      uint64_t hole = i;
      for (uint64_t j = (i + 1) & mask; shard.slots[j].key != 0; j = (j + 1) & mask) {
        const uint64_t home = Mix(shard.slots[j].key) & mask;
        const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
          shard.slots[hole] = shard.slots[j];
          hole = j;
        }
      }
      shard.slots[hole].key = 0;
      --shard.count;
    }
  }
  pthread_mutex_unlock(&shard.mu);
  return found;
}

void AllocTable::Clear() {
  for (Shard& shard : shards_) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    shard.mu = fresh;  // a lock held by another thread at fork stays held forever otherwise
    if (shard.slots != nullptr) munmap(shard.slots, shard.capacity * sizeof(Slot));
    shard.slots = nullptr;
    shard.capacity = 0;
    shard.count = 0;
  }
}

uint64_t AllocTable::size() const {
  uint64_t total = 0;
  for (const Shard& shard : shards_) total += shard.count;
  return total;
}

AllocTable& Allocations() {
  // Constant-initialized (mutex initializers and zeros), so no guard or destructor is involved.
  static constinit AllocTable table;
  return table;
}

}  // namespace gpufrac::runtime
