#include "node_test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "node/http_server.h"

namespace gpufrac::testing {

void NodeFixture::TearDown() {
  if (agent_ > 0) KillAgent(SIGKILL);
  // The agent's event log goes to a file, so that tests can check it; show it when one failed.
  if (HasFailure() && !agent_log_.empty()) {
    std::fprintf(stderr, "--- agent log (%s) ---\n%s", agent_log_.c_str(),
                 ReadFile(agent_log_).c_str());
  }
  // Tenants outlive the agent by design; a test must not leave them running.
  for (pid_t pid : tenant_pids_) {
    if (pid <= 0) continue;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
  SimFixture::TearDown();
}

void NodeFixture::StartAgent(const std::string& extra_yaml, const Env& extra_env) {
  const std::string dir = TempDir();
  socket_ = dir + "/node.sock";
  state_ = dir + "/node.db";
  std::ofstream(dir + "/node.yaml")
      << "socket: " << socket_ << "\nstate: " << state_ << "\ninterposer: " << GPUFRAC_BUILD_DIR
      << "/lib/libgpufrac.so\ngrace_period: 2s\n"
      << extra_yaml;
  agent_log_ = dir + "/agent.log";
  Env env = SimEnv();
  for (const auto& [k, v] : extra_env) env[k] = v;
  // sh redirects stderr (the event log) and execs, so agent_ is the agent's pid.
  agent_ = StartProcess({"sh", "-c", "exec \"$0\" node --config \"$1\" 2>>\"$2\"", Gpufrac(),
                         dir + "/node.yaml", agent_log_},
                        env, dir + "/agent.out");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    std::string body;
    if (node::HttpCall(socket_, "GET", "/v1/health", "", &status, &body, 2000).ok() &&
        status == 200) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "the agent did not start serving on " << socket_;
}

void NodeFixture::KillAgent(int sig) {
  kill(agent_, sig);
  WaitProcess(agent_, std::chrono::seconds(20));
  agent_ = -1;
}

ApiReply NodeFixture::Call(const std::string& method, const std::string& target,
                           const std::string& body) {
  ApiReply r;
  Status s = node::HttpCall(socket_, method, target, body, &r.status, &r.raw, 30000);
  EXPECT_TRUE(s.ok()) << s.message();
  r.body = nlohmann::json::parse(r.raw, nullptr, false);
  return r;
}

nlohmann::json NodeFixture::Create(const nlohmann::json& spec) {
  ApiReply r = Call("POST", "/v1/tenants", spec.dump());
  EXPECT_EQ(r.status, 201) << r.raw;
  // Attach-only tenants have no pid (0): kill(-0) would hit the test's own process group.
  if (r.status == 201 && r.body["pid"].get<pid_t>() > 0) {
    tenant_pids_.push_back(r.body["pid"].get<pid_t>());
  }
  return r.body;
}

uint64_t NodeFixture::Committed(int gpu) {
  ApiReply r = Call("GET", "/v1/gpus");
  return r.body["gpus"][gpu]["memory"]["committed"].get<uint64_t>();
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int ListenOnLoopback(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 1) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

int LowestFreeFd(pid_t pid) {
  std::set<int> open;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    open.insert(std::stoi(e.path().filename().string()));
  }
  int fd = 0;
  while (open.count(fd) != 0) ++fd;
  return fd;
}

int ConnectRaw(const std::string& socket_path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string ReadAll(int fd, int timeout_ms) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace gpufrac::testing
