// Parsing of the quantities users write: memory sizes ("20GiB", "512MB", "1073741824"), fractions
// of a card ("0.5") and durations ("250ms", "1h"). Freestanding (libc only) because the interposer,
// which must not bring a C++ runtime into its host process, parses its configuration with it too.
#pragma once

#include <cstdint>

namespace gpufrac {

// Why a parse failed; ParseErrorText() gives a short human phrase for it.
enum class ParseError { kNone, kEmpty, kNotANumber, kBadUnit, kOutOfRange };
const char* ParseErrorText(ParseError error);

// Bytes from "<number>[unit]". Units: B, KiB/MiB/GiB/TiB (powers of 1024), KB/MB/GB/TB (powers of
// 1000), case-insensitive, optional space before the unit. Fractional numbers are allowed with a
// unit ("1.5GiB"). Zero and negative sizes are refused.
ParseError ParseSize(const char* text, uint64_t* bytes);

// A fraction in (0, 1].
ParseError ParseFraction(const char* text, double* fraction);

// A memory amount as users give it: either a fraction of the card or an absolute size.
struct MemoryAmount {
  bool is_fraction = false;
  double fraction = 0;  // valid when is_fraction
  uint64_t bytes = 0;   // valid when !is_fraction

  // The amount in bytes on a card of `card_bytes`, rounded down to whole bytes.
  uint64_t Resolve(uint64_t card_bytes) const;
};

// "0.25" is a fraction; anything with a unit, or an integer > 1, is a size. A unit-less number
// above 1 written with a decimal point or an exponent ("1.5", "2.0") is out of range.
ParseError ParseMemoryAmount(const char* text, MemoryAmount* amount);

// Milliseconds from a duration as users write them: "250ms", "10s", "2m", "1h", or a bare number of
// milliseconds ("40"); a decimal is allowed ("1.5s", rounded to the nearest millisecond). No sign,
// space, exponent or other unit. The one duration syntax of the node agent's config, its API and
// gpufrac serve's deploy files; callers enforce their own ranges. False when it is not one, or
// beyond 10^15 ms.
bool ParseDurationMs(const char* text, uint64_t* ms);

// Writes `bytes` as a short human string ("20.0GiB") into buf (at least 24 bytes).
void FormatBytes(uint64_t bytes, char* buf, int buf_size);

}  // namespace gpufrac
