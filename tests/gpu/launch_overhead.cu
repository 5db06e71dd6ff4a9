// Launch overhead through the driver API: an empty kernel launched N times with cuLaunchKernel,
// synchronizing every SYNC_EVERY launches so the launch queue never fills and the figure is the
// host-side cost of a launch (which is what an interposer on cuLaunchKernel adds to).
//
//   launch_overhead [N] [SYNC_EVERY]      prints "launches=N ns_per_launch=X"
//
// The kernel is compiled into this binary by nvcc; cudaGetFuncBySymbol turns it into a CUfunction
// so every timed launch goes through the driver's cuLaunchKernel, the entry point gpufrac hooks.
#include <cuda.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

__global__ void Empty() {}

namespace {

void CheckRt(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    fprintf(stderr, "launch_overhead: %s failed: %s\n", what, cudaGetErrorString(e));
    exit(3);
  }
}

void CheckDrv(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    cuGetErrorName(r, &name);
    fprintf(stderr, "launch_overhead: %s failed: %s\n", what, name != nullptr ? name : "?");
    exit(3);
  }
}

void Launch(CUfunction f, CUstream stream) {
  CheckDrv(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr), "cuLaunchKernel");
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 200000;
  const long sync_every = argc > 2 ? atol(argv[2]) : 1000;
  if (n <= 0 || sync_every <= 0) {
    fprintf(stderr, "usage: launch_overhead [N > 0] [SYNC_EVERY > 0]\n");
    return 2;
  }
  // Creates the primary context and makes it current, so the driver calls below have one.
  CheckRt(cudaFree(nullptr), "cudaFree(0)");
  cudaFunction_t rt_function = nullptr;
  CheckRt(cudaGetFuncBySymbol(&rt_function, reinterpret_cast<const void*>(Empty)),
          "cudaGetFuncBySymbol");
  CUfunction f = reinterpret_cast<CUfunction>(rt_function);
  CUstream stream = nullptr;
  CheckDrv(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");

  // Warm-up: module loading (lazy by default) and first-launch costs stay out of the figure.
  for (int i = 0; i < 2000; ++i) Launch(f, stream);
  CheckDrv(cuStreamSynchronize(stream), "cuStreamSynchronize");

  const auto start = std::chrono::steady_clock::now();
  for (long i = 1; i <= n; ++i) {
    Launch(f, stream);
    if (i % sync_every == 0) CheckDrv(cuStreamSynchronize(stream), "cuStreamSynchronize");
  }
  CheckDrv(cuStreamSynchronize(stream), "cuStreamSynchronize");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const double ns = std::chrono::duration<double, std::nano>(elapsed).count();
  printf("launches=%ld sync_every=%ld ns_per_launch=%.1f\n", n, sync_every, ns / n);
  cuStreamDestroy(stream);
  return 0;
}
