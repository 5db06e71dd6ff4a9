// Starting a tenant's process: the environment that puts it under the interposer, and a spawn that
// reports an unrunnable command as an error rather than as an exit status. Shared by gpufrac run
// and the node agent.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace gpufrac {

// libgpufrac.so next to the running gpufrac binary: <dir>/../lib/libgpufrac.so.
std::string DefaultInterposerPath();

// This process's environment, plus LD_PRELOAD=<interposer> (ahead of any existing preload),
// GPUFRAC_TENANT=<tenant> and CUDA_VISIBLE_DEVICES=<uuid>; inherited GPUFRAC_MEMORY_* dropped.
std::vector<std::string> ChildEnvironment(const std::string& interposer, const std::string& tenant,
                                          const std::string& uuid);

// Why a spawn failed: the step, its errno, and both in words.
struct SpawnFailure {
  std::string message;
  int error = 0;      // errno of the failed step
  bool exec = false;  // execvpe failed (pipe2 and fork failures are never the command's fault)
};

// True when retrying the same command cannot help: exec refused it for what it is (not found, not
// executable, not a binary, a bad path, an argument list too long). Anything else (no descriptors
// for the pipe, fork's EAGAIN/ENOMEM, exec's ETXTBSY/ENOMEM) is a shortage that may pass, and
// callers must not report it as a bad command: gpufrac serve stops starting a model over one.
bool SpawnFailureIsPermanent(const SpawnFailure& failure);

// fork + execvpe. Returns the pid, or -1 with *failure when the command cannot be started.
pid_t SpawnTenantProcess(const std::vector<std::string>& command,
                         const std::vector<std::string>& env, SpawnFailure* failure);

}  // namespace gpufrac
