// A test fixture with a private set of simulated GPUs: its own GPUFRAC_SIM_ID (so parallel tests
// never share cards), helpers to run gpufrac and the probe against it, and cleanup of every
// shared-memory object the simulation and its ledgers created.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "runtime/ledger.h"
#include "support/subprocess.h"

namespace gpufrac::testing {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

class SimFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The environment every child gets: the simulated driver and this test's devices.
  Env SimEnv() const;
  std::string Gpufrac() const { return std::string(GPUFRAC_BUILD_DIR) + "/bin/gpufrac"; }
  std::string Probe() const { return std::string(GPUFRAC_BUILD_DIR) + "/tests/cuda_probe"; }
  ProcessResult RunGpufrac(std::vector<std::string> args, const Env& extra = {});
  // UUID of simulated device `index` (forces the simulation to exist).
  std::string Uuid(int index);
  // A temp dir for this test.
  std::string TempDir();

  std::string sim_id_;
  std::string devices_ = "H100:80GiB";
  uint64_t context_bytes_ = 512 * kMiB;
  std::string temp_dir_;
};

// "key=value" pairs from a probe's output line.
std::map<std::string, std::string> Fields(const std::string& text);
uint64_t Field(const std::string& text, const std::string& key);

}  // namespace gpufrac::testing
