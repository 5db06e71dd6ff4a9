// Cost of the interposer per intercepted call, on the simulated driver. The same binary runs twice
// in one bench/runtime/run.sh invocation — plainly and under `gpufrac run` — and the script reports
// the difference of the medians. Process start is measured within one run: children spawned with
// and without LD_PRELOAD=libgpufrac.so.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/cuda_abi.h"

extern char** environ;

namespace {

struct Driver {
  CUresult (*Init)(unsigned);
  CUresult (*PrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*ModuleLoadData)(CUmodule*, const void*);
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void**, void**);
  CUresult (*MemAlloc)(CUdeviceptr*, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*StreamCreate)(CUstream*, unsigned);
  CUresult (*StreamBeginCapture)(CUstream, int);
};

// Resolved the way the CUDA runtime does it: through cuGetProcAddress.
const Driver& GetDriver() {
  static Driver d = [] {
    Driver out{};
    void* lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (lib == nullptr) {
      fprintf(stderr, "runtime_bench: %s\n", dlerror());
      exit(2);
    }
    using GetProc =
        CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
    auto get_proc = reinterpret_cast<GetProc>(dlsym(lib, "cuGetProcAddress_v2"));
    auto bind = [&](auto* slot, const char* name) {
      void* f = nullptr;
      CUdriverProcAddressQueryResult status{};
      get_proc(name, &f, 12080, CU_GET_PROC_ADDRESS_DEFAULT, &status);
      *slot = reinterpret_cast<std::remove_pointer_t<decltype(slot)>>(f);
    };
    bind(&out.Init, "cuInit");
    bind(&out.PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    bind(&out.CtxSetCurrent, "cuCtxSetCurrent");
    bind(&out.ModuleLoadData, "cuModuleLoadData");
    bind(&out.ModuleGetFunction, "cuModuleGetFunction");
    bind(&out.LaunchKernel, "cuLaunchKernel");
    bind(&out.MemAlloc, "cuMemAlloc");
    bind(&out.MemFree, "cuMemFree");
    bind(&out.StreamCreate, "cuStreamCreate");
    bind(&out.StreamBeginCapture, "cuStreamBeginCapture");
    CUcontext ctx = nullptr;
    if (out.Init(0) != CUDA_SUCCESS || out.PrimaryCtxRetain(&ctx, 0) != CUDA_SUCCESS) {
      fprintf(stderr, "runtime_bench: no device\n");
      exit(2);
    }
    out.CtxSetCurrent(ctx);
    return out;
  }();
  return d;
}

void BM_LaunchKernel(benchmark::State& state) {
  const Driver& d = GetDriver();
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  static const char kImage[] = "empty kernel image";
  d.ModuleLoadData(&module, kImage);
  d.ModuleGetFunction(&function, module, "empty");
  // Launches go into a capturing stream: the simulated driver only records them, so the figure
  // is the cost of the call path (hook and compute gate included), not of simulated GPU time.
  CUstream stream = nullptr;
  if (d.StreamCreate(&stream, 0) != CUDA_SUCCESS ||
      d.StreamBeginCapture(stream, 0) != CUDA_SUCCESS) {
    state.SkipWithError("stream capture unavailable");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        d.LaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr));
  }
}
BENCHMARK(BM_LaunchKernel);

// An alloc+free pair with `live` other allocations outstanding: the table lookup must stay O(1).
void BM_AllocFree(benchmark::State& state) {
  const Driver& d = GetDriver();
  std::vector<CUdeviceptr> live(static_cast<size_t>(state.range(0)));
  for (CUdeviceptr& p : live) d.MemAlloc(&p, 4096);
  for (auto _ : state) {
    CUdeviceptr p = 0;
    if (d.MemAlloc(&p, 1 << 20) != CUDA_SUCCESS) state.SkipWithError("allocation refused");
    d.MemFree(p);
  }
  for (CUdeviceptr p : live) d.MemFree(p);
}
BENCHMARK(BM_AllocFree)->Arg(10)->Arg(100000);

// Starts `processes` copies of /bin/true at once, with (arg 1) or without (arg 0) the interposer
// preloaded, and waits for all. Reported per iteration (one batch).
void BM_ProcessStart(benchmark::State& state) {
  const int processes = static_cast<int>(state.range(0));
  const bool preload = state.range(1) != 0;
  const char* library = getenv("GPUFRAC_BENCH_LIBRARY");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("LD_PRELOAD=", 0) != 0) env_strings.push_back(*e);
  }
  if (preload && library != nullptr) env_strings.push_back(std::string("LD_PRELOAD=") + library);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char true_path[] = "/bin/true";
  char* argv[] = {true_path, nullptr};
  std::vector<pid_t> pids(static_cast<size_t>(processes));
  for (auto _ : state) {
    for (pid_t& pid : pids) posix_spawn(&pid, true_path, nullptr, nullptr, argv, envp.data());
    for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  }
  state.counters["per_process_us"] = benchmark::Counter(
      static_cast<double>(processes),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ProcessStart)
    ->Args({1, 0})
    ->Args({1, 1})
    ->Args({300, 0})
    ->Args({300, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
