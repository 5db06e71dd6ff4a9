// What this process has charged, by handle: device pointers, VMM handles, arrays, contexts. Frees
// look their size up here, so each free credits exactly what its allocation charged, once; a
// handle the table does not know (imported, IPC, or allocated before gpufrac loaded) credits
// nothing. Open addressing in sharded, mmap-backed tables: O(1) per operation at any number of
// live allocations, and no C++ runtime.
#pragma once

#include <pthread.h>

#include <cstdint>

namespace gpufrac::runtime {

enum class AllocKind : uint8_t {
  kDevicePointer = 1,
  kVmmHandle,
  kArray,
  kMipmappedArray,
  kContext
};

struct AllocRecord {
  uint64_t bytes;
  int32_t ordinal;
};

class AllocTable {
 public:
  // Records a charge; false only if memory for the table cannot be had.
  bool Insert(AllocKind kind, uint64_t handle, AllocRecord record);
  // Removes and returns a record; false if unknown.
  bool Take(AllocKind kind, uint64_t handle, AllocRecord* record);
  // Forgets everything (after fork: the child holds none of it).
  void Clear();
  uint64_t size() const;

 private:
  struct Slot {
    uint64_t key;  // 0 = empty
    AllocRecord record;
  };
  struct Shard {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    Slot* slots = nullptr;
    uint64_t capacity = 0;  // a power of two
    uint64_t count = 0;
  };
  static constexpr int kShards = 16;
  static uint64_t Key(AllocKind kind, uint64_t handle);
  static bool Grow(Shard& shard);
  static void Place(Shard& shard, uint64_t key, AllocRecord record);

  Shard shards_[kShards];
};

AllocTable& Allocations();

}  // namespace gpufrac::runtime
