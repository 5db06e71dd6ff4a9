#include "serve_test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench/http_parser.h"
#include "node/http_server.h"

namespace gpufrac::testing {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

std::string HttpReply::Header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

int ConnectLoopback(int port, int receive_buffer) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int SendRaw(int port, const std::string& bytes) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return -1;
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the gateway may answer (413) and close before taking it all
    sent += static_cast<size_t>(n);
  }
  return fd;
}

HttpReply ReadReply(int fd, int timeout_ms) {
  HttpReply reply;
  bench::HttpResponseParser parser([&](std::string_view d) { reply.body.append(d); });
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  while (!parser.complete()) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) break;
    char buf[16384];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      parser.FeedEof();
      break;
    }
    if (!parser.Feed(std::string_view(buf, static_cast<size_t>(n)))) break;
  }
  reply.status = parser.status();
  reply.complete = parser.complete();
  for (const auto& h : parser.headers()) reply.headers.emplace_back(h.name, h.value);
  reply.ms = MsSince(start);
  return reply;
}

HttpReply HttpRequest(int port, const std::string& method, const std::string& path,
                      const std::string& body, const std::string& extra_headers, int timeout_ms) {
  const auto start = Clock::now();
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers;
  if (!body.empty() || method == "POST") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "Connection: close\r\n\r\n" + body;
  const int fd = SendRaw(port, req);
  if (fd < 0) return HttpReply{};
  HttpReply reply = ReadReply(fd, timeout_ms);
  close(fd);
  reply.ms = MsSince(start);
  return reply;
}

std::string ChatBody(const std::string& model, int max_tokens, bool stream) {
  nlohmann::json j = {{"model", model},
                      {"messages", {{{"role", "user"}, {"content", "hello there"}}}},
                      {"max_tokens", max_tokens},
                      {"stream", stream}};
  return j.dump();
}

void ServeFixture::TearDown() {
  if (serve_ > 0) StopServe(SIGKILL);
  // Replicas are the agent's tenants; none may outlive the test, whatever happened to serve.
  if (agent_ > 0) {
    for (pid_t pid : TenantPids("")) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
  }
  NodeFixture::TearDown();
}

void ServeFixture::WriteDeploy(const std::string& models_yaml, const std::string& gateway_extra,
                               const std::string& top_extra) {
  if (port_ == 0) port_ = FreePort();
  deploy_path_ = TempDir() + "/deploy.yaml";
  std::ofstream(deploy_path_) << "node: {socket: " << socket_ << "}\n"
                              << "gateway:\n  listen: 127.0.0.1:" << port_
                              << "\n  max_body_bytes: 64KiB\n"
                              << gateway_extra
                              << "autoscaler: {interval: 200ms, window: 5s, scale_out_cooldown: "
                                 "1s, scale_in_cooldown: 1s, scale_in_stable: 2s, min_samples: 5}\n"
                              << top_extra << models_yaml;
}

void ServeFixture::LaunchServe(const std::string& models_yaml, const std::string& gateway_extra,
                               const std::string& top_extra) {
  WriteDeploy(models_yaml, gateway_extra, top_extra);
  serve_log_ = TempDir() + "/serve.log";
  serve_ = StartProcess(
      {"sh", "-c", serve_shell_prefix_ + "exec \"$0\" serve \"$1\" " + serve_args_ + " 2>\"$2\"",
       Gpufrac(), deploy_path_, serve_log_},
      SimEnv(), TempDir() + "/serve.out");
}

void ServeFixture::StartServe(const std::string& models_yaml, const std::string& gateway_extra,
                              const std::string& top_extra) {
  LaunchServe(models_yaml, gateway_extra, top_extra);
  const bool up = WaitFor(
      [&] { return HttpRequest(port_, "GET", "/health", "", "", 1000).status == 200; }, 20000);
  ASSERT_TRUE(up) << "gpufrac serve did not answer /health; log:\n" << ServeLog();
}

int ServeFixture::StopServe(int sig) {
  kill(serve_, sig);
  const int code = WaitProcess(serve_, std::chrono::seconds(30));
  serve_ = -1;
  return code;
}

std::string ServeFixture::Synth(const std::vector<std::string>& args) const {
  std::string out =
      "[\"" + std::string(GPUFRAC_BUILD_DIR) + "/tests/serve_test_replica\", --port, \"{port}\"";
  for (const std::string& a : args) out += ", \"" + a + "\"";
  return out + "]";
}

nlohmann::json ServeFixture::Health() {
  HttpReply r = HttpRequest(port_, "GET", "/health", "", "", 5000);
  return nlohmann::json::parse(r.body, nullptr, false);
}

bool ServeFixture::WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  do {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (Clock::now() < deadline);
  return pred();
}

bool ServeFixture::WaitReplicas(const std::string& model, std::function<bool(int)> pred,
                                int timeout_ms) {
  return WaitFor(
      [&] {
        nlohmann::json h = Health();
        return h.is_object() && h["models"].contains(model) &&
               pred(h["models"][model]["ready"].get<int>());
      },
      timeout_ms);
}

double ServeFixture::Metric(const std::string& series) {
  HttpReply r = HttpRequest(port_, "GET", "/metrics", "", "", 5000);
  std::istringstream lines(r.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

std::string ServeFixture::ServeLog() const { return ReadFile(serve_log_); }

std::vector<pid_t> ServeFixture::TenantPids(const std::string& part) {
  std::vector<pid_t> pids;
  int status = 0;
  std::string body;
  if (!node::HttpCall(socket_, "GET", "/v1/tenants", "", &status, &body, 5000).ok()) return pids;
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return pids;
  for (const auto& t : j["tenants"]) {
    if (t["state"] != "exited" && t["id"].get<std::string>().find(part) != std::string::npos &&
        t["pid"].is_number()) {
      pids.push_back(t["pid"].get<pid_t>());
    }
  }
  return pids;
}

}  // namespace gpufrac::testing
