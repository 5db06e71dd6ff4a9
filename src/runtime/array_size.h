// Bytes a CUDA array occupies, computed the same way by the interposer (which charges it before
// calling the driver) and by the simulated driver (which allocates it).
#pragma once

#include <cstdint>

#include "runtime/cuda_abi.h"

namespace gpufrac {

inline uint64_t ArrayFormatBytes(CUarray_format format) {
  switch (format) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8:
      return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF:
      return 2;
    default:
      return 4;  // 32-bit formats; packed and block formats are charged as 4 bytes per element
  }
}

inline uint64_t Max1(uint64_t v) { return v == 0 ? 1 : v; }

inline uint64_t ArrayBytes(uint64_t width, uint64_t height, uint64_t depth, CUarray_format format,
                           unsigned channels) {
  return Max1(width) * Max1(height) * Max1(depth) * Max1(channels) * ArrayFormatBytes(format);
}

inline uint64_t MipmappedArrayBytes(const CUDA_ARRAY3D_DESCRIPTOR& d, unsigned levels) {
  uint64_t total = 0;
  for (unsigned level = 0; level < Max1(levels); ++level) {
    const uint64_t w = d.Width >> level;
    const uint64_t h = d.Height >> level;
    const uint64_t z = d.Depth >> level;
    total += ArrayBytes(w, d.Height ? h : 0, d.Depth ? z : 0, d.Format, d.NumChannels);
  }
  return total;
}

}  // namespace gpufrac
