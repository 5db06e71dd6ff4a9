// "20 GiB"-style text for a byte count, for messages and tables (FormatBytes in a std::string).
// Header-only and kept out of quantity.h, which the interposer links without the C++ library.
#pragma once

#include <cstdint>
#include <string>

#include "common/quantity.h"

namespace gpufrac {

inline std::string Human(uint64_t bytes) {
  char buf[32];
  FormatBytes(bytes, buf, sizeof buf);
  return buf;
}

}  // namespace gpufrac
