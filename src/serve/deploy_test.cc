// Deployment files as data: every tests/serve/deploy/bad/*.yaml starts with a line
// "# error: <expected message>" and must be refused with exactly that message; every
// tests/serve/deploy/good/*.yaml and examples/serve/*.yaml must parse.
#include "serve/deploy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

namespace gpufrac::serve {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<fs::path> Files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".yaml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

const fs::path kData = fs::path(GPUFRAC_SOURCE_DIR) / "tests/serve/deploy";

TEST(ServeDeployFileTest, EveryBadFileIsRefusedWithItsKeyPath) {
  const auto files = Files(kData / "bad");
  ASSERT_GE(files.size(), 20u);
  for (const fs::path& file : files) {
    const std::string text = Read(file);
    const std::string marker = "# error: ";
    ASSERT_EQ(text.rfind(marker, 0), 0u) << file << " must start with '# error: '";
    const std::string expected = text.substr(marker.size(), text.find('\n') - marker.size());
    DeploySpec spec;
    const Status s = ParseDeploy(text, "deploy.yaml", &spec);
    ASSERT_FALSE(s.ok()) << file << " was accepted";
    EXPECT_EQ(s.message(), "deploy.yaml: " + expected) << file;
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line: " << file;
  }
}

TEST(ServeDeployFileTest, GoodFilesAndExamplesParse) {
  std::vector<fs::path> files = Files(kData / "good");
  for (const fs::path& p : Files(fs::path(GPUFRAC_SOURCE_DIR) / "examples/serve"))
    files.push_back(p);
  ASSERT_GE(files.size(), 2u);
  for (const fs::path& file : files) {
    DeploySpec spec;
    const Status s = LoadDeployFile(file.string(), &spec);
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_FALSE(spec.models.empty()) << file;
  }
}

TEST(ServeDeployFileTest, ReadsEveryKey) {
  DeploySpec spec;
  const Status s = LoadDeployFile((kData / "good/full.yaml").string(), &spec);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(spec.node_socket, "/tmp/node.sock");
  EXPECT_EQ(spec.gateway.host, "127.0.0.1");
  EXPECT_EQ(spec.gateway.port, 9000);
  EXPECT_EQ(spec.gateway.max_body_bytes, 2u << 20);
  EXPECT_EQ(spec.gateway.api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(spec.gateway.request_timeout_ms, 5000);
  EXPECT_EQ(spec.gateway.client_write_timeout_ms, 90000);
  EXPECT_EQ(spec.autoscaler.interval_ms, 500);
  EXPECT_EQ(spec.autoscaler.window_ms, 10000);
  EXPECT_EQ(spec.autoscaler.scale_out_cooldown_ms, 3000);
  EXPECT_EQ(spec.autoscaler.scale_in_cooldown_ms, 4000);
  EXPECT_EQ(spec.autoscaler.scale_in_stable_ms, 5000);
  EXPECT_DOUBLE_EQ(spec.autoscaler.scale_out_at, 0.9);
  EXPECT_DOUBLE_EQ(spec.autoscaler.scale_in_below, 0.4);
  EXPECT_EQ(spec.autoscaler.min_samples, 3);
  EXPECT_FALSE(spec.preemption.enabled);
  EXPECT_EQ(spec.preemption.grace_ms, 1500);
  ASSERT_EQ(spec.models.size(), 2u);
  const ModelSpec& chat = spec.models[0];
  EXPECT_EQ(chat.name, "meta/llama-8b");
  EXPECT_EQ(chat.command,
            (std::vector<std::string>{"server", "--port", "{port}", "--gpu", "{gpu}"}));
  EXPECT_EQ(chat.health.path, "/v1/health");
  EXPECT_EQ(chat.health.interval_ms, 250);
  EXPECT_EQ(chat.health.timeout_ms, 100);
  EXPECT_EQ(chat.health.failures, 3);
  EXPECT_EQ(chat.start_timeout_ms, 120000);
  EXPECT_EQ(chat.drain_grace_ms, 7000);
  EXPECT_EQ(chat.upstream_timeout_ms, 90000);
  EXPECT_EQ(chat.share.memory, "0.25");
  EXPECT_EQ(chat.share.memory_limit, "0.5");
  EXPECT_DOUBLE_EQ(chat.share.compute, 0.3);
  EXPECT_DOUBLE_EQ(chat.share.compute_limit, 0.6);
  EXPECT_EQ(chat.share.compute_mode, "fair");
  EXPECT_FALSE(chat.share.batch);
  EXPECT_EQ(chat.share.gpu, "1");
  EXPECT_EQ(chat.share.placement, "spread");
  EXPECT_EQ(chat.min_replicas, 2);
  EXPECT_EQ(chat.max_replicas, 6);
  EXPECT_EQ(chat.sla.ttft_p95_ms, 800);
  EXPECT_DOUBLE_EQ(chat.sla.inflight_per_replica, 8);
  EXPECT_EQ(chat.sla.max_queue_wait_ms, 2000);
  EXPECT_EQ(chat.admission.max_inflight_per_replica, 16);
  EXPECT_EQ(chat.admission.max_queue, 50);
  EXPECT_EQ(chat.admission.queue_timeout_ms, 3000);
  const ModelSpec& embed = spec.models[1];
  EXPECT_TRUE(embed.share.batch);
  EXPECT_EQ(embed.share.memory, "10GiB");
  EXPECT_EQ(embed.min_replicas, 0);
  EXPECT_TRUE(embed.scale_to_zero.enabled);
  EXPECT_EQ(embed.scale_to_zero.idle_ms, 60000);
  EXPECT_EQ(embed.scale_to_zero.hold_ms, 20000);
  EXPECT_EQ(embed.command, (std::vector<std::string>{"embedder", "--port={port}"}));
}

// The reference deployment file in docs/serve.md, between its deploy-reference markers, without
// the code fence.
std::string DocReference() {
  const std::string doc = Read(fs::path(GPUFRAC_SOURCE_DIR) / "docs/serve.md");
  const std::string begin = "<!-- deploy-reference:begin -->\n```yaml\n";
  const std::string end = "```\n<!-- deploy-reference:end -->";
  const size_t from = doc.find(begin);
  const size_t to = doc.find(end);
  if (from == std::string::npos || to == std::string::npos || to < from) return "";
  return doc.substr(from + begin.size(), to - from - begin.size());
}

// The page calls each value in its reference file the default unless the comment says "required"
// or "example": those it calls defaults must be what the parser gives a file that leaves them out.
TEST(ServeDeployFileTest, TheDocsReferenceFileParsesAndShowsTheDefaults) {
  const std::string text = DocReference();
  ASSERT_FALSE(text.empty()) << "docs/serve.md lost its deploy-reference markers";
  DeploySpec doc;
  const Status s = ParseDeploy(text, "docs/serve.md", &doc);
  ASSERT_TRUE(s.ok()) << s.message();
  DeploySpec def;
  ASSERT_TRUE(ParseDeploy("models:\n  - name: llama-8b\n    command: srv --port {port}\n"
                          "    gpu: {memory: \"0.25\"}\n    sla: {ttft_p95: 500ms}\n",
                          "minimal.yaml", &def)
                  .ok());
  EXPECT_EQ(doc.node_socket, def.node_socket);
  EXPECT_EQ(doc.gateway.host, def.gateway.host);
  EXPECT_EQ(doc.gateway.port, def.gateway.port);
  EXPECT_EQ(doc.gateway.max_body_bytes, def.gateway.max_body_bytes);
  EXPECT_EQ(doc.gateway.api_keys, def.gateway.api_keys);
  EXPECT_EQ(doc.gateway.request_timeout_ms, def.gateway.request_timeout_ms);
  EXPECT_EQ(doc.gateway.client_write_timeout_ms, def.gateway.client_write_timeout_ms);
  EXPECT_EQ(doc.autoscaler.interval_ms, def.autoscaler.interval_ms);
  EXPECT_EQ(doc.autoscaler.window_ms, def.autoscaler.window_ms);
  EXPECT_EQ(doc.autoscaler.scale_out_cooldown_ms, def.autoscaler.scale_out_cooldown_ms);
  EXPECT_EQ(doc.autoscaler.scale_in_cooldown_ms, def.autoscaler.scale_in_cooldown_ms);
  EXPECT_EQ(doc.autoscaler.scale_in_stable_ms, def.autoscaler.scale_in_stable_ms);
  EXPECT_DOUBLE_EQ(doc.autoscaler.scale_out_at, def.autoscaler.scale_out_at);
  EXPECT_DOUBLE_EQ(doc.autoscaler.scale_in_below, def.autoscaler.scale_in_below);
  EXPECT_EQ(doc.autoscaler.min_samples, def.autoscaler.min_samples);
  EXPECT_EQ(doc.preemption.enabled, def.preemption.enabled);
  EXPECT_EQ(doc.preemption.grace_ms, def.preemption.grace_ms);
  ASSERT_EQ(doc.models.size(), 1u);
  const ModelSpec& m = doc.models[0];
  const ModelSpec& d = def.models[0];
  EXPECT_EQ(m.health.path, d.health.path);
  EXPECT_EQ(m.health.interval_ms, d.health.interval_ms);
  EXPECT_EQ(m.health.timeout_ms, d.health.timeout_ms);
  EXPECT_EQ(m.health.failures, d.health.failures);
  EXPECT_EQ(m.start_timeout_ms, d.start_timeout_ms);
  EXPECT_EQ(m.drain_grace_ms, d.drain_grace_ms);
  EXPECT_EQ(m.upstream_timeout_ms, d.upstream_timeout_ms);
  // Left out, these are left to the agent, whose defaults are fair, inference and a limit of 1.
  EXPECT_EQ(d.share.compute_mode, "");
  EXPECT_EQ(m.share.compute_mode, "fair");
  EXPECT_DOUBLE_EQ(d.share.compute_limit, -1);
  EXPECT_DOUBLE_EQ(m.share.compute_limit, 1);
  EXPECT_EQ(m.share.batch, d.share.batch);
  EXPECT_EQ(m.min_replicas, d.min_replicas);
  EXPECT_EQ(m.max_replicas, d.max_replicas);
  EXPECT_EQ(m.admission.max_inflight_per_replica, d.admission.max_inflight_per_replica);
  EXPECT_EQ(m.admission.max_queue, d.admission.max_queue);
  EXPECT_EQ(m.admission.queue_timeout_ms, d.admission.queue_timeout_ms);
  EXPECT_EQ(m.scale_to_zero.enabled, d.scale_to_zero.enabled);
  EXPECT_EQ(m.scale_to_zero.idle_ms, d.scale_to_zero.idle_ms);
  EXPECT_EQ(m.scale_to_zero.hold_ms, d.scale_to_zero.hold_ms);
}

TEST(ServeDeployFileTest, ListenTakesAnIpAddressNeverAHostName) {
  std::string host;
  uint16_t port = 0;
  for (const auto& [text, want_host, want_port] :
       std::vector<std::tuple<std::string, std::string, int>>{{"127.0.0.1:8080", "127.0.0.1", 8080},
                                                              {"0.0.0.0:0", "0.0.0.0", 0},
                                                              {"::1:9000", "::1", 9000},
                                                              {"[::1]:9001", "::1", 9001}}) {
    ASSERT_TRUE(ParseListenAddress(text, &host, &port).ok()) << text;
    EXPECT_EQ(host, want_host) << text;
    EXPECT_EQ(port, want_port) << text;
  }
  EXPECT_EQ(ParseListenAddress("localhost:18081", &host, &port).message(),
            "'localhost:18081': 'localhost' is not an IP address (names are not resolved; use "
            "127.0.0.1, 0.0.0.0 or ::1)");
  EXPECT_FALSE(ParseListenAddress("example.com:80", &host, &port).ok());
  EXPECT_FALSE(ParseListenAddress("18081", &host, &port).ok());
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:", &host, &port).ok());
}

TEST(ServeDeployFileTest, AListenPortIsDigitsOnly) {
  std::string host;
  uint16_t port = 0;
  // strtol skipped leading blanks and took a sign, so these passed as port 80.
  for (const char* text :
       {"127.0.0.1: 80", "127.0.0.1:+80", "127.0.0.1:-0", "127.0.0.1:\t80", "127.0.0.1:80 ",
        "127.0.0.1:0x50", "127.0.0.1:65536", "127.0.0.1:99999999999999999999"}) {
    EXPECT_EQ(ParseListenAddress(text, &host, &port).message(),
              "'" + std::string(text) + "': bad port")
        << text;
  }
  ASSERT_TRUE(ParseListenAddress("127.0.0.1:0080", &host, &port).ok());
  EXPECT_EQ(port, 80);
  ASSERT_TRUE(ParseListenAddress("127.0.0.1:65535", &host, &port).ok());
  EXPECT_EQ(port, 65535);
}

TEST(ServeDeployFileTest, ExpandsPlaceholders) {
  const std::vector<std::string> out = ExpandCommand(
      {"srv", "--listen={host}:{port}", "--name", "{model}/{replica}", "--device", "{gpu}"},
      {"127.0.0.1", "chat", "sv1-chat-3", 4321});
  EXPECT_EQ(out, (std::vector<std::string>{"srv", "--listen=127.0.0.1:4321", "--name",
                                           "chat/sv1-chat-3", "--device", "0"}));
}

}  // namespace
}  // namespace gpufrac::serve
