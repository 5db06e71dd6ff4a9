// Every hook that puts work on the GPU: wait at the compute gate, then forward. Generated from the
// gated entries of hooks.def.
#include "runtime/interposer.h"

using namespace gpufrac::runtime;

#define GPUFRAC_HOOK(lib, symbol, params, args)
#define GPUFRAC_GATED_HOOK(lib, symbol, params, args, stream)  \
  GPUFRAC_EXPORT int symbol params {                           \
    GateLaunch(stream);                                        \
    auto real = REAL(symbol);                                  \
    return real != nullptr ? real args : CUDA_ERROR_NOT_FOUND; \
  }
#include "runtime/hooks.def"
#undef GPUFRAC_GATED_HOOK
#undef GPUFRAC_HOOK
