// A real Prometheus server (Debian's `prometheus`) scrapes the agent's /metrics over its TCP
// listener with the bearer token, and a series is read back through Prometheus' HTTP API.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "node_test_support.h"

namespace gpufrac::testing {
namespace {

using nlohmann::json;

// GET over TCP on loopback; returns the whole response (status line, headers, body).
std::string TcpGet(int port, const std::string& target, const std::string& token = "") {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req += "\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string out = ReadAll(fd, 5000);
  close(fd);
  return out;
}

class NodePrometheusTest : public NodeFixture {};

TEST_F(NodePrometheusTest, PrometheusScrapesTheAgentAndAnswersAQuery) {
  const std::string prometheus = "/usr/bin/prometheus";
  if (access(prometheus.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "Debian's prometheus is not installed (scripts/setup.sh installs it)";
  }
  const std::string dir = TempDir();
  std::ofstream(dir + "/token") << "s3cret-token\n";
  const int agent_port = FreePort();
  StartAgent("tcp:\n  address: 127.0.0.1:" + std::to_string(agent_port) + "\n  token_file: " + dir +
             "/token\n");
  Create({{"name", "prom"}, {"memory", "20GiB"}, {"command", {"sleep", "60"}}});

  // The TCP listener wants the token.
  EXPECT_EQ(TcpGet(agent_port, "/metrics").rfind("HTTP/1.1 401", 0), 0u);
  EXPECT_EQ(TcpGet(agent_port, "/metrics", "wrong").rfind("HTTP/1.1 401", 0), 0u);
  EXPECT_EQ(TcpGet(agent_port, "/metrics", "s3cret-token").rfind("HTTP/1.1 200", 0), 0u);

  const int prom_port = FreePort();
  std::ofstream(dir + "/prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
      << "scrape_configs:\n  - job_name: gpufrac-node\n    authorization:\n"
      << "      credentials_file: " << dir << "/token\n"
      << "    static_configs:\n      - targets: ['127.0.0.1:" << agent_port << "']\n";
  const pid_t prom = StartProcess(
      {prometheus, "--config.file=" + dir + "/prometheus.yml",
       "--storage.tsdb.path=" + dir + "/tsdb",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"},
      {}, dir + "/prometheus.out");
  const std::string query =
      "/api/v1/query?query=gpufrac_tenant_memory_request_bytes%7Btenant%3D%22prom%22%7D";
  json answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string reply = TcpGet(prom_port, query);
    const size_t body = reply.find("\r\n\r\n");
    if (body != std::string::npos) {
      answer = json::parse(reply.substr(body + 4), nullptr, false);
      if (!answer.is_discarded() && answer["status"] == "success" &&
          !answer["data"]["result"].empty()) {
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  kill(prom, SIGTERM);
  WaitProcess(prom, std::chrono::seconds(20));
  ASSERT_FALSE(answer.is_discarded());
  ASSERT_EQ(answer["status"], "success") << answer.dump();
  ASSERT_EQ(answer["data"]["result"].size(), 1u) << answer.dump();
  const json& series = answer["data"]["result"][0];
  EXPECT_EQ(series["metric"]["job"], "gpufrac-node");
  EXPECT_EQ(series["metric"]["gpu"], "0");
  EXPECT_EQ(series["value"][1], std::to_string(20 * kGiB));
}

}  // namespace
}  // namespace gpufrac::testing
