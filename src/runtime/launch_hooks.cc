// Kernel launches. Forwarded unchanged for now: this is where compute sharing gates launches.
#include "runtime/interposer.h"

using namespace gpufrac::runtime;

GPUFRAC_EXPORT int cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                  unsigned int bx, unsigned int by, unsigned int bz,
                                  unsigned int shmem, CUstream stream, void** params,
                                  void** extra) {
  CALL_REAL(cuLaunchKernel, (f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra));
}

GPUFRAC_EXPORT int cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                       unsigned int gz, unsigned int bx, unsigned int by,
                                       unsigned int bz, unsigned int shmem, CUstream stream,
                                       void** params, void** extra) {
  CALL_REAL(cuLaunchKernel_ptsz, (f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra));
}
