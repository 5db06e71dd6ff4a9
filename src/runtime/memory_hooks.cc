// Hooks on every device-memory allocation path. Each one charges the tenant *before* asking the
// driver (so concurrent processes cannot overshoot), and gives the charge back if the driver
// refuses. Frees credit what the allocation table says the allocation charged.
#include <cstdint>
#include <type_traits>

#include "runtime/alloc_table.h"
#include "runtime/array_size.h"
#include "runtime/interposer.h"
#include "runtime/pool_drain.h"

namespace gpufrac::runtime {
namespace {

constexpr uint64_t kPitchAlignment = 512;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

bool Enforcing() { return GetConfig().managed; }

// Charges, allocates through `allocate`, records. One path for every allocator of fixed size.
template <typename Allocate, typename Handle>
int ChargedAllocation(int ordinal, uint64_t bytes, AllocKind kind, Allocate allocate,
                      Handle* handle_out) {
  if (ordinal < 0) return allocate();  // no context: the driver reports the error
  if (const int refused = ChargeDevice(ordinal, bytes); refused != CUDA_SUCCESS) return refused;
  const int r = allocate();
  if (r != CUDA_SUCCESS) {
    Credit(ordinal, bytes);
    return r;
  }
  uint64_t key = 0;
  if constexpr (std::is_pointer_v<Handle>) {
    key = reinterpret_cast<uintptr_t>(*handle_out);
  } else {
    key = *handle_out;
  }
  Allocations().Insert(kind, key, AllocRecord{bytes, ordinal});
  return r;
}

int CreditRecorded(AllocKind kind, uint64_t handle) {
  AllocRecord record{};
  if (Allocations().Take(kind, handle, &record)) Credit(record.ordinal, record.bytes);
  return CUDA_SUCCESS;
}

}  // namespace
}  // namespace gpufrac::runtime

using namespace gpufrac;
using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  auto real = REAL(cuMemAlloc_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || bytes == 0) return real(dptr, bytes);
  return ChargedAllocation(
      CurrentOrdinal(), bytes, AllocKind::kDevicePointer, [&] { return real(dptr, bytes); }, dptr);
}

GPUFRAC_EXPORT int cuMemAllocManaged(CUdeviceptr* dptr, size_t bytes, unsigned int flags) {
  auto real = REAL(cuMemAllocManaged);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || bytes == 0) return real(dptr, bytes, flags);
  return ChargedAllocation(
      CurrentOrdinal(), bytes, AllocKind::kDevicePointer, [&] { return real(dptr, bytes, flags); },
      dptr);
}

GPUFRAC_EXPORT int cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                                      unsigned int elem) {
  auto real = REAL(cuMemAllocPitch_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dptr == nullptr || pitch == nullptr || width == 0 || height == 0) {
    return real(dptr, pitch, width, height, elem);
  }
  const int ordinal = CurrentOrdinal();
  // The pitch is known only afterwards: charge the aligned estimate, then correct it.
  const uint64_t estimate = RoundUp(width, kPitchAlignment) * height;
  const int r = ChargedAllocation(
      ordinal, estimate, AllocKind::kDevicePointer,
      [&] { return real(dptr, pitch, width, height, elem); }, dptr);
  if (r == CUDA_SUCCESS && ordinal >= 0) {
    const uint64_t actual = static_cast<uint64_t>(*pitch) * height;
    if (actual != estimate) {
      AllocRecord record{};
      Allocations().Take(AllocKind::kDevicePointer, *dptr, &record);
      if (actual > estimate) {
        ChargeDevice(ordinal, actual - estimate);  // allocated already: cannot be refused now
      } else {
        Credit(ordinal, estimate - actual);
      }
      Allocations().Insert(AllocKind::kDevicePointer, *dptr, AllocRecord{actual, ordinal});
    }
  }
  return r;
}

GPUFRAC_EXPORT int cuMemFree_v2(CUdeviceptr dptr) {
  auto real = REAL(cuMemFree_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const DrainingFree draining = DrainingFreeOf(dptr);  // asked before the pointer is gone
  const int r = real(dptr);
  if (r == CUDA_SUCCESS && Enforcing() && dptr != 0) {
    AllocRecord record{};
    if (Allocations().Take(AllocKind::kDevicePointer, dptr, &record)) {
      Credit(record.ordinal, record.bytes);
    } else {
      // Not ours: perhaps stream-ordered memory freed synchronously (a destroyed pool's last
      // allocation, even); its pool may have shrunk.
      NoteDrainingFree(draining);
      ReconcilePoolsAfterFree();
    }
  }
  return r;
}

// Virtual memory management: physical memory is charged when created, on the device its
// location names (no current context needed), and credited when released. Mapping is free.
GPUFRAC_EXPORT int cuMemCreate(CUmemGenericAllocationHandle* handle, size_t bytes,
                               const CUmemAllocationProp* prop, unsigned long long flags) {
  auto real = REAL(cuMemCreate);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || handle == nullptr || prop == nullptr || bytes == 0 ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return real(handle, bytes, prop, flags);
  }
  return ChargedAllocation(
      prop->location.id, bytes, AllocKind::kVmmHandle,
      [&] { return real(handle, bytes, prop, flags); }, handle);
}

GPUFRAC_EXPORT int cuMemRelease(CUmemGenericAllocationHandle handle) {
  auto real = REAL(cuMemRelease);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(handle);
  if (r == CUDA_SUCCESS && Enforcing()) CreditRecorded(AllocKind::kVmmHandle, handle);
  return r;
}

// Arrays: charged by the size the descriptor implies.
GPUFRAC_EXPORT int cuArrayCreate_v2(CUarray* array, const CUDA_ARRAY_DESCRIPTOR* d) {
  auto real = REAL(cuArrayCreate_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d);
  return ChargedAllocation(
      CurrentOrdinal(), ArrayBytes(d->Width, d->Height, 0, d->Format, d->NumChannels),
      AllocKind::kArray, [&] { return real(array, d); }, array);
}

GPUFRAC_EXPORT int cuArray3DCreate_v2(CUarray* array, const CUDA_ARRAY3D_DESCRIPTOR* d) {
  auto real = REAL(cuArray3DCreate_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d);
  return ChargedAllocation(
      CurrentOrdinal(), ArrayBytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels),
      AllocKind::kArray, [&] { return real(array, d); }, array);
}

GPUFRAC_EXPORT int cuArrayDestroy(CUarray array) {
  auto real = REAL(cuArrayDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(array);
  if (r == CUDA_SUCCESS && Enforcing()) {
    CreditRecorded(AllocKind::kArray, reinterpret_cast<uint64_t>(array));
  }
  return r;
}

GPUFRAC_EXPORT int cuMipmappedArrayCreate(CUmipmappedArray* array, const CUDA_ARRAY3D_DESCRIPTOR* d,
                                          unsigned int levels) {
  auto real = REAL(cuMipmappedArrayCreate);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || array == nullptr || d == nullptr) return real(array, d, levels);
  return ChargedAllocation(
      CurrentOrdinal(), MipmappedArrayBytes(*d, levels), AllocKind::kMipmappedArray,
      [&] { return real(array, d, levels); }, array);
}

GPUFRAC_EXPORT int cuMipmappedArrayDestroy(CUmipmappedArray array) {
  auto real = REAL(cuMipmappedArrayDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(array);
  if (r == CUDA_SUCCESS && Enforcing()) {
    CreditRecorded(AllocKind::kMipmappedArray, reinterpret_cast<uint64_t>(array));
  }
  return r;
}
