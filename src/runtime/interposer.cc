// libgpufrac.so's core: configuration, logging, resolving the real driver, and the two lookup
// paths through which programs find driver functions without direct linking (dlsym and
// cuGetProcAddress). Nothing runs at load time: the first intercepted call initializes.
#include "runtime/interposer.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/quantity.h"

namespace gpufrac::runtime {
namespace {

constexpr uint64_t kDefaultContextBytes = 512ull << 20;
// Long enough that deciding costs nothing; short enough that a waking tenant regains its share
// well within 100 ms.
constexpr uint64_t kDefaultSliceMs = 10;

// Generated tables.
constexpr const char* kHookNames[] = {
#define GPUFRAC_HOOK(lib, symbol, params, args) #symbol,
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK
};
constexpr Library kHookLibraries[] = {
#define GPUFRAC_HOOK(lib, symbol, params, args) Library::lib,
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK
};

}  // namespace
}  // namespace gpufrac::runtime

// Hook definitions live in the *_hooks.cc files; declare them here for the address table.
#define GPUFRAC_HOOK(lib, symbol, params, args) extern "C" int symbol params;
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK

namespace gpufrac::runtime {
namespace {

void* const kHookAddresses[] = {
#define GPUFRAC_HOOK(lib, symbol, params, args) reinterpret_cast<void*>(&::symbol),
#include "runtime/hooks.def"
#undef GPUFRAC_HOOK
};

using DlsymFn = void* (*)(void*, const char*);

Config g_config;
pthread_once_t g_config_once = PTHREAD_ONCE_INIT;
pthread_once_t g_real_once = PTHREAD_ONCE_INIT;
void* g_cuda_handle = nullptr;
void* g_nvml_handle = nullptr;
void* g_real[kHookCount] = {};
DlsymFn g_real_dlsym = nullptr;

LogLevel ParseLogLevel(const char* text) {
  if (text == nullptr) return LogLevel::kWarn;
  if (strcmp(text, "error") == 0) return LogLevel::kError;
  if (strcmp(text, "info") == 0) return LogLevel::kInfo;
  if (strcmp(text, "debug") == 0) return LogLevel::kDebug;
  return LogLevel::kWarn;
}

void ReadConfig() {
  Config& c = g_config;
  c.log_level = ParseLogLevel(getenv("GPUFRAC_LOG_LEVEL"));
  const char* passthrough = getenv("GPUFRAC_PASSTHROUGH");
  c.passthrough = passthrough != nullptr && strcmp(passthrough, "1") == 0;
  const char* tenant = getenv("GPUFRAC_TENANT");
  if (tenant != nullptr && *tenant != '\0') {
    snprintf(c.tenant, sizeof c.tenant, "%s", tenant);
    c.managed = !c.passthrough;
  }
  const char* compute = getenv("GPUFRAC_COMPUTE");
  c.compute = compute == nullptr || strcmp(compute, "off") != 0;
  c.compute_slice_ns = kDefaultSliceMs * 1000000ull;
  if (const char* v = getenv("GPUFRAC_COMPUTE_SLICE_MS"); v != nullptr && atoi(v) > 0) {
    c.compute_slice_ns = static_cast<uint64_t>(atoi(v)) * 1000000ull;
  }
  const char* drain = getenv("GPUFRAC_COMPUTE_DRAIN");
  c.compute_drain = drain == nullptr || strcmp(drain, "off") != 0;
  const char* inflight = getenv("GPUFRAC_COMPUTE_INFLIGHT");
  c.compute_inflight = inflight == nullptr || strcmp(inflight, "off") != 0;
  const char* gang = getenv("GPUFRAC_COMPUTE_GANG");
  c.compute_gang = gang == nullptr || strcmp(gang, "off") != 0;
  c.context_bytes = kDefaultContextBytes;
  if (const char* v = getenv("GPUFRAC_CONTEXT_BYTES"); v != nullptr) {
    uint64_t bytes = 0;
    if (strcmp(v, "0") == 0) {
      c.context_bytes = 0;
    } else if (ParseSize(v, &bytes) == ParseError::kNone) {
      c.context_bytes = bytes;
    } else {
      Log(LogLevel::kWarn, "GPUFRAC_CONTEXT_BYTES='%s' is not a size; using 512MiB", v);
    }
  }
}

void ResolveDlsym() {
  // dlsym itself is hooked, so the real one comes from libc by version.
  g_real_dlsym = reinterpret_cast<DlsymFn>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34"));
  if (g_real_dlsym == nullptr) {
    g_real_dlsym = reinterpret_cast<DlsymFn>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5"));
  }
}

void ResolveReal() {
  const char* cuda_path = getenv("GPUFRAC_CUDA_LIBRARY");
  g_cuda_handle = dlopen(cuda_path != nullptr ? cuda_path : "libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (g_cuda_handle == nullptr) Log(LogLevel::kError, "cannot load the CUDA driver: %s", dlerror());
  g_nvml_handle = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (g_real_dlsym == nullptr) ResolveDlsym();
  for (int i = 0; i < kHookCount; ++i) {
    void* handle = kHookLibraries[i] == Library::CUDA ? g_cuda_handle : g_nvml_handle;
    if (handle != nullptr) g_real[i] = g_real_dlsym(handle, kHookNames[i]);
  }
}

DlsymFn RealDlsym() {
  if (g_real_dlsym == nullptr) ResolveDlsym();
  return g_real_dlsym;
}

void InitConfigOnce() { pthread_once(&g_config_once, ReadConfig); }

}  // namespace

const Config& GetConfig() {
  InitConfigOnce();
  return g_config;
}

void Log(LogLevel level, const char* format, ...) {
  if (static_cast<int>(level) > static_cast<int>(g_config.log_level)) return;
  char line[512];
  int n = snprintf(line, sizeof line, "gpufrac[%d]: ", static_cast<int>(getpid()));
  va_list ap;
  va_start(ap, format);
  n += vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, format, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof line) - 2) n = sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, static_cast<size_t>(n));
  (void)ignored;
}

void* RealFunction(HookId id) {
  const int i = static_cast<int>(id);
  void* f = __atomic_load_n(&g_real[i], __ATOMIC_ACQUIRE);
  if (__builtin_expect(f != nullptr, 1)) return f;
  pthread_once(&g_real_once, ResolveReal);
  f = g_real[i];
  if (f == nullptr && kHookLibraries[i] == Library::NVML) {
    // NVML may be loaded after the driver; look again.
    void* nvml = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (nvml != nullptr) f = RealDlsym()(nvml, kHookNames[i]);
    if (f != nullptr) __atomic_store_n(&g_real[i], f, __ATOMIC_RELEASE);
  }
  return f;
}

void* RealDriverSymbol(const char* name) {
  pthread_once(&g_real_once, ResolveReal);
  return g_cuda_handle != nullptr ? RealDlsym()(g_cuda_handle, name) : nullptr;
}

int FindHookByName(const char* name) {
  for (int i = 0; i < kHookCount; ++i) {
    if (strcmp(kHookNames[i], name) == 0) return i;
  }
  return -1;
}

int FindHookByRealAddress(void* real) {
  pthread_once(&g_real_once, ResolveReal);
  for (int i = 0; i < kHookCount; ++i) {
    if (g_real[i] == real) return i;
  }
  return -1;
}

void* HookAddress(int id) { return kHookAddresses[id]; }

namespace {

// What cuGetProcAddress handed back, replaced by our hook when it is one of the functions we
// intercept. The driver has already chosen the variant for the caller's version and stream mode;
// matching its address keeps that choice exactly.
void SubstituteHook(void** pfn) {
  if (GetConfig().passthrough || pfn == nullptr || *pfn == nullptr) return;
  const int id = FindHookByRealAddress(*pfn);
  if (id >= 0) *pfn = HookAddress(id);
}

}  // namespace
}  // namespace gpufrac::runtime

using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuGetProcAddress(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  auto real = REAL(cuGetProcAddress);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(symbol, pfn, version, flags);
  if (r == CUDA_SUCCESS) SubstituteHook(pfn);
  return r;
}

GPUFRAC_EXPORT int cuGetProcAddress_v2(const char* symbol, void** pfn, int version,
                                       cuuint64_t flags, CUdriverProcAddressQueryResult* status) {
  auto real = REAL(cuGetProcAddress_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_FOUND;
  const int r = real(symbol, pfn, version, flags, status);
  if (r == CUDA_SUCCESS) SubstituteHook(pfn);
  return r;
}

// Programs that dlopen the driver and look functions up by name get our hooks too. Lookups that
// name anything else pass straight through.
GPUFRAC_EXPORT void* dlsym(void* handle, const char* name) {
  void* found = RealDlsym()(handle, name);
  if (found == nullptr || (name[0] != 'c' && name[0] != 'n')) return found;
  if (GetConfig().passthrough) return found;
  const int id = FindHookByName(name);
  if (id < 0) return found;
  // Only the driver's own definition is replaced; a same-named symbol elsewhere is not ours.
  void* real = RealFunction(static_cast<HookId>(id));
  return found == real ? HookAddress(id) : found;
}
