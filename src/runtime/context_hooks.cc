// Contexts have a footprint of their own on the card (code, stacks, the driver's heaps) that the
// workload never asked for but the card loses all the same; it is charged per context.
#include <pthread.h>
#include <unistd.h>

#include "runtime/alloc_table.h"
#include "runtime/interposer.h"

namespace gpufrac::runtime {
namespace {

constexpr int kMaxDevices = 64;
int g_primary_refs[kMaxDevices] = {};
pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

bool Enforcing() { return GetConfig().managed && GetConfig().context_bytes > 0; }

template <typename Create>
int CreateCharged(CUcontext* ctx, CUdevice dev, Create create) {
  if (!Enforcing() || ctx == nullptr || dev < 0 || dev >= kMaxDevices) return create();
  const uint64_t bytes = GetConfig().context_bytes;
  if (const int refused = ChargeDevice(dev, bytes); refused != CUDA_SUCCESS) return refused;
  const int r = create();
  if (r != CUDA_SUCCESS) {
    Credit(dev, bytes);
    return r;
  }
  Allocations().Insert(AllocKind::kContext, reinterpret_cast<uintptr_t>(*ctx),
                       AllocRecord{bytes, dev});
  return r;
}

}  // namespace

void ResetContextsAfterFork() {
  for (int& refs : g_primary_refs) refs = 0;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_ctx_mu = fresh;
}

}  // namespace gpufrac::runtime

using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  auto real = REAL(cuDevicePrimaryCtxRetain);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dev < 0 || dev >= kMaxDevices) return real(ctx, dev);
  pthread_mutex_lock(&g_ctx_mu);
  // The primary context exists once per device however often it is retained.
  int r = g_primary_refs[dev] == 0 ? ChargeDevice(dev, GetConfig().context_bytes) : CUDA_SUCCESS;
  if (r == CUDA_SUCCESS) {
    r = real(ctx, dev);
    if (r == CUDA_SUCCESS) {
      ++g_primary_refs[dev];
    } else if (g_primary_refs[dev] == 0) {
      Credit(dev, GetConfig().context_bytes);
    }
  }
  pthread_mutex_unlock(&g_ctx_mu);
  return r;
}

GPUFRAC_EXPORT int cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  auto real = REAL(cuDevicePrimaryCtxRelease_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dev < 0 || dev >= kMaxDevices) return real(dev);
  pthread_mutex_lock(&g_ctx_mu);
  const int r = real(dev);
  if (r == CUDA_SUCCESS && g_primary_refs[dev] > 0 && --g_primary_refs[dev] == 0) {
    Credit(dev, GetConfig().context_bytes);
  }
  pthread_mutex_unlock(&g_ctx_mu);
  return r;
}

GPUFRAC_EXPORT int cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  auto real = REAL(cuDevicePrimaryCtxReset_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (!Enforcing() || dev < 0 || dev >= kMaxDevices) return real(dev);
  pthread_mutex_lock(&g_ctx_mu);
  const int r = real(dev);
  if (r == CUDA_SUCCESS && g_primary_refs[dev] > 0) {
    g_primary_refs[dev] = 0;
    Credit(dev, GetConfig().context_bytes);
  }
  pthread_mutex_unlock(&g_ctx_mu);
  return r;
}

GPUFRAC_EXPORT int cuCtxCreate_v2(CUcontext* ctx, unsigned int flags, CUdevice dev) {
  auto real = REAL(cuCtxCreate_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  return CreateCharged(ctx, dev, [&] { return real(ctx, flags, dev); });
}

GPUFRAC_EXPORT int cuCtxCreate_v3(CUcontext* ctx, CUexecAffinityParam* params, int count,
                                  unsigned int flags, CUdevice dev) {
  auto real = REAL(cuCtxCreate_v3);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  return CreateCharged(ctx, dev, [&] { return real(ctx, params, count, flags, dev); });
}

GPUFRAC_EXPORT int cuCtxCreate_v4(CUcontext* ctx, CUctxCreateParams* params, unsigned int flags,
                                  CUdevice dev) {
  auto real = REAL(cuCtxCreate_v4);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  return CreateCharged(ctx, dev, [&] { return real(ctx, params, flags, dev); });
}

GPUFRAC_EXPORT int cuCtxDestroy_v2(CUcontext ctx) {
  auto real = REAL(cuCtxDestroy_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(ctx);
  if (r == CUDA_SUCCESS && Enforcing()) {
    AllocRecord record{};
    if (Allocations().Take(AllocKind::kContext, reinterpret_cast<uintptr_t>(ctx), &record)) {
      Credit(record.ordinal, record.bytes);
    }
  }
  return r;
}
