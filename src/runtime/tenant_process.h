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

// fork + execvpe. Returns the pid, or -1 with *error when the command cannot be started.
pid_t SpawnTenantProcess(const std::vector<std::string>& command,
                         const std::vector<std::string>& env, std::string* error);

}  // namespace gpufrac
