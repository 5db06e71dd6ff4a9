// `gpufrac run` without a daemon: admits one tenant on one GPU's ledger, runs its command under
// the interposer, reclaims what its dead processes held while it runs, and removes the tenant
// when the command ends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/quantity.h"
#include "common/status.h"
#include "runtime/ledger.h"

namespace gpufrac {

struct RunRequest {
  std::string gpu;  // index or UUID; empty: the first GPU where the request fits
  MemoryAmount memory_request;
  bool has_memory_limit = false;
  MemoryAmount memory_limit;
  // Compute share: request < 0 means "the memory fraction"; limit < 0 means "by mode".
  double compute_request = -1;
  double compute_limit = -1;
  ComputeMode compute_mode = ComputeMode::kFair;
  Priority priority = Priority::kInference;
  std::string tenant;  // empty: "run-<pid>"
  std::vector<std::string> command;
  std::string interposer_path;  // empty: next to the gpufrac binary, ../lib/libgpufrac.so
};

// Validates and admits the request, runs the command, and returns its exit status (128 + signal
// when killed). On any refusal returns a Status naming the problem, with nothing left behind.
Status RunTenant(const RunRequest& request, int* exit_status);

}  // namespace gpufrac
