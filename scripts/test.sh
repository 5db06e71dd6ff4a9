#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, the normal build and its tests, then a build with
# AddressSanitizer + UndefinedBehaviorSanitizer and its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

# CI builds without debug information (a third less compile time; see GPUFRAC_DEBUG_INFO).
scripts/build.sh build -DGPUFRAC_DEBUG_INFO=none
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

# Sanitized build: benchmarks are skipped (they measure speed, which sanitizers distort).
scripts/build.sh build-asan -DGPUFRAC_SANITIZE=ON -DGPUFRAC_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=Debug \
  -DGPUFRAC_DEBUG_INFO=lines
# The interposer is preloaded into sanitized test programs; ASan must not insist on coming first.
ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600
