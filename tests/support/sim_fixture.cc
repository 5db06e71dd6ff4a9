#include "support/sim_fixture.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "sim/sim_state.h"

namespace gpufrac::testing {

void SimFixture::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  sim_id_ = std::string("t") + std::to_string(getpid()) + "-" + info->name();
  for (char& c : sim_id_) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
  }
}

void SimFixture::TearDown() {
  const std::string sim_name = "/gpufrac-sim." + sim_id_;
  const int fd = shm_open(sim_name.c_str(), O_RDONLY, 0);
  if (fd >= 0) {
    void* p = mmap(nullptr, sizeof(sim::SimShared), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED) {
      const auto* shared = static_cast<const sim::SimShared*>(p);
      for (uint32_t i = 0; i < shared->device_count; ++i) {
        for (const char* part : {"limits", "usage"}) {
          char name[200];
          LedgerObjectName(shared->devices[i].uuid, part, name, sizeof name);
          shm_unlink(name);
        }
      }
      munmap(p, sizeof(sim::SimShared));
    }
    shm_unlink(sim_name.c_str());
  }
  if (!temp_dir_.empty()) std::filesystem::remove_all(temp_dir_);
}

Env SimFixture::SimEnv() const {
  return Env{{"LD_LIBRARY_PATH", std::string(GPUFRAC_BUILD_DIR) + "/lib/sim"},
             {"GPUFRAC_SIM_ID", sim_id_},
             {"GPUFRAC_SIM_GPUS", devices_},
             {"GPUFRAC_SIM_CONTEXT_BYTES", std::to_string(context_bytes_)},
             {"GPUFRAC_CONTEXT_BYTES", std::to_string(context_bytes_)},
             {"CUDA_VISIBLE_DEVICES", ""},
             {"GPUFRAC_TENANT", ""},
             {"LD_PRELOAD", ""},
             // Sanitized gpufrac binaries must not mistake the preload order for an error.
             {"ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0"}};
}

ProcessResult SimFixture::RunGpufrac(std::vector<std::string> args, const Env& extra) {
  args.insert(args.begin(), Gpufrac());
  Env env = SimEnv();
  for (const auto& [k, v] : extra) env[k] = v;
  return RunProcess(args, env);
}

std::string SimFixture::Uuid(int index) {
  // Any driver client creates the simulation; its own result does not matter (the card may be
  // full).
  RunProcess({Probe(), "info"}, SimEnv());
  const std::string sim_name = "/gpufrac-sim." + sim_id_;
  const int fd = shm_open(sim_name.c_str(), O_RDONLY, 0);
  if (fd < 0) return "";
  void* p = mmap(nullptr, sizeof(sim::SimShared), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  const std::string uuid = static_cast<const sim::SimShared*>(p)->devices[index].uuid;
  munmap(p, sizeof(sim::SimShared));
  return uuid;
}

std::string SimFixture::TempDir() {
  if (temp_dir_.empty()) {
    char pattern[] = "/tmp/gpufrac-test-XXXXXX";
    temp_dir_ = mkdtemp(pattern);
  }
  return temp_dir_;
}

std::map<std::string, std::string> Fields(const std::string& text) {
  std::map<std::string, std::string> fields;
  std::istringstream in(text);
  std::string token;
  while (in >> token) {
    const size_t eq = token.find('=');
    if (eq != std::string::npos) fields[token.substr(0, eq)] = token.substr(eq + 1);
  }
  return fields;
}

uint64_t Field(const std::string& text, const std::string& key) {
  auto fields = Fields(text);
  auto it = fields.find(key);
  EXPECT_NE(it, fields.end()) << "no " << key << " in: " << text;
  return it == fields.end() ? 0 : std::stoull(it->second);
}

}  // namespace gpufrac::testing
