#include "runtime/tenant_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace gpufrac {

std::string DefaultInterposerPath() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = '\0';
  std::string dir(self);
  dir = dir.substr(0, dir.rfind('/'));
  return dir + "/../lib/libgpufrac.so";
}

std::vector<std::string> ChildEnvironment(const std::string& interposer, const std::string& tenant,
                                          const std::string& uuid) {
  std::vector<std::string> env;
  std::string preload = interposer;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (entry.rfind("LD_PRELOAD=", 0) == 0) {
      preload += ":" + entry.substr(11);
      continue;
    }
    if (entry.rfind("GPUFRAC_TENANT=", 0) == 0 || entry.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0 ||
        entry.rfind("GPUFRAC_MEMORY_", 0) == 0) {
      continue;
    }
    env.push_back(entry);
  }
  env.push_back("LD_PRELOAD=" + preload);
  env.push_back("GPUFRAC_TENANT=" + tenant);
  // The workload sees only its GPU: its fraction is the whole card it knows.
  env.push_back("CUDA_VISIBLE_DEVICES=" + uuid);
  return env;
}

bool SpawnFailureIsPermanent(const SpawnFailure& failure) {
  if (!failure.exec) return false;
  switch (failure.error) {
    case ENOENT:
    case EACCES:
    case ENOEXEC:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
    // The arguments and environment exceed the kernel's limit: the same command fails every time.
    case E2BIG:
      return true;
    default:
      return false;
  }
}

pid_t SpawnTenantProcess(const std::vector<std::string>& command,
                         const std::vector<std::string>& env, SpawnFailure* failure) {
  auto fail = [failure](const std::string& what, int err, bool exec) {
    *failure = {what + ": " + strerror(err), err, exec};
    return -1;
  };
  // A pipe with close-on-exec tells the parent whether exec succeeded.
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return fail("pipe", errno, false);
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = fork();
  // Saved before close, which may overwrite it.
  const int fork_errno = errno;
  if (pid == 0) {
    close(pipe_fds[0]);
    execvpe(argv[0], argv.data(), envp.data());
    const int err = errno;
    ssize_t ignored = write(pipe_fds[1], &err, sizeof err);
    (void)ignored;
    _exit(127);
  }
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    return fail("fork", fork_errno, false);
  }
  int exec_errno = 0;
  const ssize_t n = read(pipe_fds[0], &exec_errno, sizeof exec_errno);
  close(pipe_fds[0]);
  if (n == static_cast<ssize_t>(sizeof exec_errno)) {
    waitpid(pid, nullptr, 0);
    return fail("cannot run '" + command[0] + "'", exec_errno, true);
  }
  return pid;
}

}  // namespace gpufrac
