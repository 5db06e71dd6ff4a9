// libgpufrac.so must not disturb its host: it needs nothing but libc (no C++ runtime to clash
// with the host's), and exports exactly the entry points listed in hooks.def plus dlsym.
#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

#include "support/subprocess.h"

namespace gpufrac::testing {
namespace {

const std::string kLibrary = std::string(GPUFRAC_BUILD_DIR) + "/lib/libgpufrac.so";

std::set<std::string> HookNames() {
  std::istringstream def(ReadFile(std::string(GPUFRAC_SOURCE_DIR) + "/src/runtime/hooks.def"));
  std::set<std::string> names = {"dlsym"};
  std::string line;
  while (std::getline(def, line)) {
    if (line.rfind("GPUFRAC_HOOK(", 0) != 0 && line.rfind("GPUFRAC_GATED_HOOK(", 0) != 0) continue;
    const size_t comma = line.find(',');
    const size_t second = line.find(',', comma + 1);
    std::string name = line.substr(comma + 1, second - comma - 1);
    name.erase(0, name.find_first_not_of(' '));
    names.insert(name);
  }
  return names;
}

TEST(InterposerLibrary, NeedsOnlyLibc) {
  ProcessResult r = RunProcess({"readelf", "-d", kLibrary});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  std::vector<std::string> needed;
  while (std::getline(in, line)) {
    if (line.find("(NEEDED)") != std::string::npos) needed.push_back(line);
  }
  ASSERT_FALSE(needed.empty());
  for (const std::string& n : needed) {
    EXPECT_EQ(n.find("libstdc++"), std::string::npos) << n;
    EXPECT_EQ(n.find("libgcc_s"), std::string::npos) << n;
  }
}

TEST(InterposerLibrary, ExportsExactlyItsHooks) {
  ProcessResult r = RunProcess({"nm", "-D", "--defined-only", kLibrary});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream in(r.out);
  std::string address, type, name;
  std::set<std::string> exported;
  while (in >> address >> type >> name) exported.insert(name);
  EXPECT_EQ(exported, HookNames());
}

}  // namespace
}  // namespace gpufrac::testing
