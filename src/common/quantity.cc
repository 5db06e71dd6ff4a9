#include "common/quantity.h"

#include <strings.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gpufrac {
namespace {

struct Unit {
  const char* name;
  double multiplier;
};

constexpr Unit kUnits[] = {
    {"", 1},
    {"b", 1},
    {"kib", 1024.0},
    {"mib", 1024.0 * 1024},
    {"gib", 1024.0 * 1024 * 1024},
    {"tib", 1024.0 * 1024 * 1024 * 1024},
    {"kb", 1e3},
    {"mb", 1e6},
    {"gb", 1e9},
    {"tb", 1e12},
    {"k", 1024.0},  // common shorthands, as in "512M" or "20G", read as binary units
    {"m", 1024.0 * 1024},
    {"g", 1024.0 * 1024 * 1024},
};

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// Parses the leading number; rejects hex, inf and nan, which strtod would accept.
ParseError ParseNumber(const char* text, double* value, const char** rest) {
  while (IsSpace(*text)) ++text;
  if (*text == '\0') return ParseError::kEmpty;
  const char* p = text;
  if (*p == '+' || *p == '-') ++p;
  if (!((*p >= '0' && *p <= '9') || *p == '.')) return ParseError::kNotANumber;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) return ParseError::kNotANumber;
  char* end = nullptr;
  errno = 0;
  double parsed = strtod(text, &end);
  if (end == text) return ParseError::kNotANumber;
  if (errno == ERANGE || !std::isfinite(parsed)) return ParseError::kOutOfRange;
  *value = parsed;
  *rest = end;
  return ParseError::kNone;
}

}  // namespace

const char* ParseErrorText(ParseError error) {
  switch (error) {
    case ParseError::kNone:
      return "ok";
    case ParseError::kEmpty:
      return "empty value";
    case ParseError::kNotANumber:
      return "not a number";
    case ParseError::kBadUnit:
      return "unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)";
    case ParseError::kOutOfRange:
      return "out of range";
  }
  return "invalid";
}

ParseError ParseSize(const char* text, uint64_t* bytes) {
  if (text == nullptr) return ParseError::kEmpty;
  double number = 0;
  const char* rest = nullptr;
  if (ParseError e = ParseNumber(text, &number, &rest); e != ParseError::kNone) return e;
  while (IsSpace(*rest)) ++rest;
  // The unit runs to the end, less trailing blanks.
  const char* unit_end = rest;
  while (*unit_end != '\0') ++unit_end;
  while (unit_end > rest && IsSpace(unit_end[-1])) --unit_end;
  const size_t unit_length = static_cast<size_t>(unit_end - rest);
  for (const Unit& unit : kUnits) {
    size_t name_length = 0;
    while (unit.name[name_length] != '\0') ++name_length;
    if (name_length != unit_length || strncasecmp(rest, unit.name, unit_length) != 0) continue;
    const double value = number * unit.multiplier;
    if (value < 1) return ParseError::kOutOfRange;  // zero, negative or sub-byte
    if (value >= 1.8e19) return ParseError::kOutOfRange;
    if (unit.multiplier == 1 && value != std::floor(value)) return ParseError::kNotANumber;
    *bytes = static_cast<uint64_t>(value);
    return ParseError::kNone;
  }
  return ParseError::kBadUnit;
}

ParseError ParseFraction(const char* text, double* fraction) {
  if (text == nullptr) return ParseError::kEmpty;
  double number = 0;
  const char* rest = nullptr;
  if (ParseError e = ParseNumber(text, &number, &rest); e != ParseError::kNone) return e;
  while (IsSpace(*rest)) ++rest;
  if (*rest != '\0') return ParseError::kNotANumber;
  if (!(number > 0 && number <= 1)) return ParseError::kOutOfRange;
  *fraction = number;
  return ParseError::kNone;
}

uint64_t MemoryAmount::Resolve(uint64_t card_bytes) const {
  if (!is_fraction) return bytes;
  return static_cast<uint64_t>(static_cast<long double>(card_bytes) * fraction);
}

ParseError ParseMemoryAmount(const char* text, MemoryAmount* amount) {
  if (text == nullptr) return ParseError::kEmpty;
  double number = 0;
  const char* rest = nullptr;
  if (ParseError e = ParseNumber(text, &number, &rest); e != ParseError::kNone) return e;
  while (IsSpace(*rest)) ++rest;
  // Without a unit, a number above 1 is a byte count and must be whole: "1.5" or "2.0" is a
  // fraction out of range, not 1 or 2 bytes.
  if (*rest == '\0' && number > 1 && strpbrk(text, ".eE") != nullptr) {
    return ParseError::kOutOfRange;
  }
  if (*rest == '\0' && number <= 1) {
    double fraction = 0;
    if (ParseError e = ParseFraction(text, &fraction); e != ParseError::kNone) return e;
    *amount = MemoryAmount{.is_fraction = true, .fraction = fraction, .bytes = 0};
    return ParseError::kNone;
  }
  uint64_t bytes = 0;
  if (ParseError e = ParseSize(text, &bytes); e != ParseError::kNone) return e;
  *amount = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = bytes};
  return ParseError::kNone;
}

bool ParseDurationMs(const char* text, uint64_t* ms) {
  if (text == nullptr) return false;
  // The number by hand: strtod would also take a sign, blanks, an exponent, hex, inf and nan.
  const char* p = text;
  auto digits = [&p] {
    const char* start = p;
    while (*p >= '0' && *p <= '9') ++p;
    return p > start;
  };
  if (!digits()) return false;
  if (*p == '.') {
    ++p;
    if (!digits()) return false;
  }
  char number[32];
  const size_t length = static_cast<size_t>(p - text);
  if (length >= sizeof number) return false;
  memcpy(number, text, length);
  number[length] = '\0';
  const double value = strtod(number, nullptr);
  double scale = 0;
  if (*p == '\0' || strcmp(p, "ms") == 0) {
    scale = 1;
  } else if (strcmp(p, "s") == 0) {
    scale = 1e3;
  } else if (strcmp(p, "m") == 0) {
    scale = 6e4;
  } else if (strcmp(p, "h") == 0) {
    scale = 3.6e6;
  } else {
    return false;
  }
  if (value * scale > 1e15) return false;
  *ms = static_cast<uint64_t>(std::llround(value * scale));
  return true;
}

void FormatBytes(uint64_t bytes, char* buf, int buf_size) {
  constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) {
    snprintf(buf, static_cast<size_t>(buf_size), "%lluB", static_cast<unsigned long long>(bytes));
  } else {
    snprintf(buf, static_cast<size_t>(buf_size), "%.1f%s", value, kNames[unit]);
  }
}

}  // namespace gpufrac
