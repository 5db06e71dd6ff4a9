// Runs a real process for a test: argv and extra environment in, exit code and output out, with a
// deadline so that a hang fails the test instead of stalling the suite.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace gpufrac::testing {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
  bool timed_out = false;
};

using Env = std::map<std::string, std::string>;

// Runs argv[0] (searched in PATH) with the current environment plus `env` (empty value: unset).
ProcessResult RunProcess(const std::vector<std::string>& argv, const Env& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Starts a process whose stdout goes to `stdout_path`; returns its pid. The caller waits for it.
pid_t StartProcess(const std::vector<std::string>& argv, const Env& env,
                   const std::string& stdout_path);

// Waits for `pid` up to `timeout`; returns the exit code (128 + signal), or -1 on timeout (the
// process is then killed).
int WaitProcess(pid_t pid, std::chrono::milliseconds timeout);

// Reads a whole file ("" if missing).
std::string ReadFile(const std::string& path);

}  // namespace gpufrac::testing
