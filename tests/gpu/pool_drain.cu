// Real-GPU check of a pool destroyed while memory allocated from it is outstanding: what gpufrac
// assumes of the driver (docs/runtime.md, src/runtime/pool_drain.cc), and what a tenant sees.
// Linked directly against libcuda (-lcuda), like alloc_apis.
//
//   pool_drain facts
//       Plainly, without gpufrac: allocations of odd sizes from a new pool; whether the pointer
//       queries' sizes add up to USED_MEM_CURRENT; whether they still name the pool after
//       cuMemPoolDestroy; whether a cuMemFreeAsync queued behind a kernel still counts as used;
//       whether the pool's memory comes back to the card at the last free and not before; whether
//       cuMemFree takes pool memory; whether a pool created meanwhile gets the destroyed handle.
//   pool_drain tenant HELD_MIB CACHED_MIB OVER_MIB
//       Under gpufrac: a pool that caches CACHED_MIB is destroyed while HELD_MIB is allocated from
//       it; cuMemAlloc of OVER_MIB before and after HELD is freed (cuMemFreeAsync + synchronize),
//       and once more between the two: the free is queued behind a kernel of about a second,
//       another pool is trimmed (where gpufrac credits pools), and OVER_MIB must still be refused.
//
// Output: "key=value ..." lines for the script.
#include <cuda.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr unsigned long long kMiB = 1ull << 20;

void Check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* name = nullptr;
  cuGetErrorName(r, &name);
  fprintf(stderr, "pool_drain: %s failed: %s (%d)\n", what, name ? name : "?", static_cast<int>(r));
  exit(3);
}

size_t FreeBytes() {
  size_t free_bytes = 0, total = 0;
  Check(cuMemGetInfo(&free_bytes, &total), "cuMemGetInfo");
  return free_bytes;
}

CUmemoryPool NewPool() {
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = 0;
  CUmemoryPool pool = nullptr;
  Check(cuMemPoolCreate(&pool, &props), "cuMemPoolCreate");
  cuuint64_t keep_everything = ~0ull;  // a synchronization alone releases nothing
  Check(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_everything),
        "cuMemPoolSetAttribute");
  return pool;
}

cuuint64_t Used(CUmemoryPool pool) {
  cuuint64_t used = 0;
  Check(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used), "used");
  return used;
}

// What gpufrac counts for a freed pointer: the smaller of the two size queries.
unsigned long long QueriedSize(CUdeviceptr p, unsigned long long* range, unsigned long long* addr) {
  size_t range_size = 0, addr_size = 0;
  CUdeviceptr base = 0;
  cuPointerGetAttribute(&range_size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, p);
  cuMemGetAddressRange(&base, &addr_size, p);
  *range = range_size;
  *addr = addr_size;
  if (range_size == 0) return addr_size;
  if (addr_size == 0) return range_size;
  return range_size < addr_size ? range_size : addr_size;
}

__global__ void Spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

void Facts() {
  CUstream stream = nullptr;
  Check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  const size_t start_free = FreeBytes();
  CUmemoryPool pool = NewPool();
  const size_t sizes[] = {kMiB + 1, 3 * kMiB + 512, 64 * kMiB, 100 * kMiB};
  std::vector<CUdeviceptr> ptrs;
  for (size_t bytes : sizes) {
    CUdeviceptr p = 0;
    Check(cuMemAllocFromPoolAsync(&p, bytes, pool, stream), "cuMemAllocFromPoolAsync");
    ptrs.push_back(p);
  }
  Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
  unsigned long long requested = 0, queried = 0;
  printf("sizes");
  for (size_t i = 0; i < ptrs.size(); ++i) {
    unsigned long long range = 0, addr = 0;
    queried += QueriedSize(ptrs[i], &range, &addr);
    requested += sizes[i];
    printf(" req%zu=%zu range%zu=%llu addr%zu=%llu", i, sizes[i], i, range, i, addr);
  }
  printf("\nrequested=%llu used=%llu queried=%llu\n", requested,
         static_cast<unsigned long long>(Used(pool)), queried);

  // A free queued behind a long kernel, then the destruction: is it still counted as used?
  Spin<<<1, 1, 0, reinterpret_cast<cudaStream_t>(stream)>>>(2000000000ll);
  Check(cuMemFreeAsync(ptrs.back(), stream), "cuMemFreeAsync (queued)");
  ptrs.pop_back();
  const unsigned long long used_with_queued_free = Used(pool);
  Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
  printf("used_with_queued_free=%llu used_after_it_ran=%llu\n", used_with_queued_free,
         static_cast<unsigned long long>(Used(pool)));

  const size_t before_destroy = FreeBytes();
  Check(cuMemPoolDestroy(pool), "cuMemPoolDestroy");
  const size_t after_destroy = FreeBytes();
  CUmemoryPool owner = nullptr;
  const CUresult owner_result =
      cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, ptrs[0]);
  unsigned long long range = 0, addr = 0;
  const unsigned long long size_after_destroy = QueriedSize(ptrs[0], &range, &addr);
  CUdeviceptr extra = 0;
  const CUresult reuse = cuMemAllocFromPoolAsync(&extra, kMiB, pool, stream);
  if (reuse == CUDA_SUCCESS) cuMemFreeAsync(extra, stream);
  CUmemoryPool next = NewPool();
  printf(
      "free_before_destroy=%zu free_after_destroy=%zu owner_result=%d owner_is_pool=%d "
      "size_after_destroy=%llu reuse_result=%d same_handle_while_draining=%d\n",
      before_destroy, after_destroy, owner_result, owner == pool, size_after_destroy, reuse,
      next == pool);

  // Freed one by one: the card should get the memory back at the last free, not before.
  printf("frees");
  for (size_t i = 0; i < ptrs.size(); ++i) {
    Check(cuMemFreeAsync(ptrs[i], stream), "cuMemFreeAsync");
    Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
    printf(" free_after_%zu=%zu", i, FreeBytes());
  }
  printf("\nstart_free=%zu end_free=%zu\n", start_free, FreeBytes());

  // cuMemFree on stream-ordered memory, the last allocation of a destroyed pool.
  CUmemoryPool other = NewPool();
  CUdeviceptr p = 0;
  Check(cuMemAllocFromPoolAsync(&p, 64 * kMiB, other, stream), "cuMemAllocFromPoolAsync");
  Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
  Check(cuMemPoolDestroy(other), "cuMemPoolDestroy");
  const size_t held_free = FreeBytes();
  const CUresult free_result = cuMemFree(p);
  printf("mem_free_result=%d free_before_mem_free=%zu free_after_mem_free=%zu\n", free_result,
         held_free, FreeBytes());
  cuMemPoolDestroy(next);
}

void Tenant(unsigned long long held, unsigned long long cached, unsigned long long over) {
  CUstream stream = nullptr;
  Check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  const size_t start_free = FreeBytes();
  CUmemoryPool pool = NewPool();
  CUdeviceptr p = 0, spare = 0;
  Check(cuMemAllocFromPoolAsync(&p, held, pool, stream), "cuMemAllocFromPoolAsync");
  Check(cuMemAllocFromPoolAsync(&spare, cached, pool, stream), "cuMemAllocFromPoolAsync");
  Check(cuMemFreeAsync(spare, stream), "cuMemFreeAsync");
  Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
  const size_t pooled_free = FreeBytes();
  Check(cuMemPoolDestroy(pool), "cuMemPoolDestroy");
  const size_t destroyed_free = FreeBytes();
  auto try_over = [&] {
    CUdeviceptr big = 0;
    const CUresult r = cuMemAlloc(&big, over);
    if (r == CUDA_SUCCESS) cuMemFree(big);
    return r;
  };
  const CUresult over_held = try_over();
  Spin<<<1, 1, 0, reinterpret_cast<cudaStream_t>(stream)>>>(2000000000ll);
  Check(cuMemFreeAsync(p, stream), "cuMemFreeAsync");
  CUmemoryPool other = NewPool();
  Check(cuMemPoolTrimTo(other, 0), "cuMemPoolTrimTo");
  const size_t queued_free = FreeBytes();
  const CUresult over_queued = try_over();
  const CUresult still_running = cuStreamQuery(stream);  // NOT_READY: the test was in time
  Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
  cuMemPoolDestroy(other);
  const size_t freed_free = FreeBytes();
  printf(
      "start_free=%zu pooled_free=%zu destroyed_free=%zu over_held_result=%d queued_free=%zu "
      "over_queued_result=%d stream_busy=%d freed_free=%zu over_freed_result=%d\n",
      start_free, pooled_free, destroyed_free, over_held, queued_free, over_queued,
      still_running == CUDA_ERROR_NOT_READY, freed_free, try_over());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pool_drain facts | tenant HELD_MIB CACHED_MIB OVER_MIB\n");
    return 2;
  }
  Check(cuInit(0), "cuInit");
  CUcontext ctx = nullptr;
  Check(cuDevicePrimaryCtxRetain(&ctx, 0), "cuDevicePrimaryCtxRetain");
  Check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  if (strcmp(argv[1], "facts") == 0) {
    Facts();
  } else if (strcmp(argv[1], "tenant") == 0 && argc == 5) {
    Tenant(strtoull(argv[2], nullptr, 10) * kMiB, strtoull(argv[3], nullptr, 10) * kMiB,
           strtoull(argv[4], nullptr, 10) * kMiB);
  } else {
    fprintf(stderr, "pool_drain: unknown command\n");
    return 2;
  }
  return 0;
}
