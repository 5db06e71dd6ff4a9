#include "node/config.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace gpufrac::node {
namespace {

std::string Refusal(const std::string& yaml) {
  NodeConfig c;
  Status s = ParseConfig(yaml, "node.yaml", &c);
  EXPECT_FALSE(s.ok()) << yaml;
  return s.message();
}

TEST(ConfigTest, AnEmptyFileKeepsTheDefaults) {
  NodeConfig c;
  ASSERT_TRUE(ParseConfig("", "node.yaml", &c).ok());
  EXPECT_EQ(c.socket_path, "/run/gpufrac/node.sock");
  EXPECT_EQ(c.default_placement, Placement::kBinPack);
  EXPECT_EQ(c.grace_period_ms, 10000u);
}

TEST(ConfigTest, ReadsEveryKey) {
  NodeConfig c;
  Status s = ParseConfig(
      "socket: /tmp/x.sock\nsocket_mode: '0600'\nstate: /tmp/x.db\ninterposer: /opt/lib.so\n"
      "placement: spread\ngrace_period: 3s\nreap_interval: 50ms\nburst_reclaim_deadline: 1s\n"
      "api:\n  max_body_bytes: 4096\n  request_timeout: 2s\n  threads: 2\n",
      "node.yaml", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.socket_path, "/tmp/x.sock");
  EXPECT_EQ(c.socket_mode, 0600u);
  EXPECT_EQ(c.state_path, "/tmp/x.db");
  EXPECT_EQ(c.interposer_path, "/opt/lib.so");
  EXPECT_EQ(c.default_placement, Placement::kSpread);
  EXPECT_EQ(c.grace_period_ms, 3000u);
  EXPECT_EQ(c.reap_interval_ms, 50u);
  EXPECT_EQ(c.burst_reclaim_deadline_ms, 1000u);
  EXPECT_EQ(c.max_body_bytes, 4096u);
  EXPECT_EQ(c.request_timeout_ms, 2000u);
  EXPECT_EQ(c.api_threads, 2u);
}

// Every duration key takes hours too: grace_period documents 0 - 1h, and "1h" used to be refused
// as "not a duration" while "60m" passed.
TEST(ConfigTest, DurationsTakeHoursAndKeepTheirRanges) {
  NodeConfig c;
  Status s =
      ParseConfig("grace_period: 1h\nburst_reclaim_deadline: 0.1h\napi:\n  request_timeout: 1.5s\n",
                  "node.yaml", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.grace_period_ms, 3600000u);
  EXPECT_EQ(c.burst_reclaim_deadline_ms, 360000u);
  EXPECT_EQ(c.request_timeout_ms, 1500u);
  EXPECT_EQ(Refusal("grace_period: 2h\n"),
            "node.yaml: grace_period: must be between 0ms and 3600000ms");
  EXPECT_EQ(Refusal("burst_reclaim_deadline: 1h\n"),
            "node.yaml: burst_reclaim_deadline: must be between 0ms and 600000ms");
  EXPECT_EQ(Refusal("grace_period: 1 h\n"),
            "node.yaml: grace_period: '1 h' is not a duration (like 250ms, 10s, 2m, 1h)");
}

TEST(ConfigTest, RefusesUnknownKeysWithTheirPath) {
  EXPECT_EQ(Refusal("sockets: /x\n"), "node.yaml: sockets: unknown key");
  EXPECT_EQ(Refusal("api:\n  max_body: 10\n"), "node.yaml: api.max_body: unknown key");
}

TEST(ConfigTest, RefusesWrongTypes) {
  EXPECT_EQ(Refusal("socket: [a, b]\n"), "node.yaml: socket: expected a scalar value");
  EXPECT_EQ(Refusal("api: 5\n"), "node.yaml: api: expected a mapping");
  EXPECT_EQ(Refusal("- a\n- b\n"), "node.yaml: (top level): expected a mapping");
  EXPECT_NE(Refusal("api:\n  threads: many\n").find("api.threads: 'many' is not"),
            std::string::npos);
}

TEST(ConfigTest, RefusesImpossibleValues) {
  EXPECT_EQ(Refusal("api:\n  threads: 0\n"), "node.yaml: api.threads: must be between 1 and 64");
  EXPECT_EQ(Refusal("reap_interval: 5s\n"),
            "node.yaml: reap_interval: must be between 10ms and 1000ms");
  EXPECT_NE(Refusal("grace_period: soon\n").find("grace_period: 'soon' is not a duration"),
            std::string::npos);
  EXPECT_NE(Refusal("placement: random\n").find("placement: 'random'"), std::string::npos);
  EXPECT_NE(Refusal("socket_mode: '0999'\n").find("socket_mode"), std::string::npos);
  EXPECT_NE(Refusal("socket_mode: '0066'\n").find("owner must keep"), std::string::npos);
  EXPECT_NE(Refusal("socket: " + std::string(200, 'a') + "\n").find("longer than 107"),
            std::string::npos);
  EXPECT_NE(Refusal("api:\n  max_body_bytes: -5\n").find("api.max_body_bytes"), std::string::npos);
}

TEST(ConfigTest, TcpNeedsAValidAddressAndAToken) {
  NodeConfig c;
  ASSERT_TRUE(ParseConfig("tcp:\n  address: 127.0.0.1:9400\n  token_file: /etc/t\n", "n", &c).ok());
  EXPECT_EQ(c.tcp_address, "127.0.0.1:9400");
  EXPECT_EQ(c.tcp_token_file, "/etc/t");
  EXPECT_EQ(Refusal("tcp:\n  address: 127.0.0.1:9400\n"),
            "node.yaml: tcp.token_file: required when tcp.address is set");
  EXPECT_NE(Refusal("tcp:\n  address: localhost\n").find("tcp.address: 'localhost' is not IP:PORT"),
            std::string::npos);
  EXPECT_NE(Refusal("tcp:\n  address: 1.2.3.4:70000\n").find("tcp.address"), std::string::npos);
  // Names are not resolved by the listener: refused here rather than when the agent binds.
  EXPECT_EQ(Refusal("tcp:\n  address: localhost:9400\n  token_file: /etc/t\n"),
            "node.yaml: tcp.address: 'localhost' is not an IPv4 or IPv6 address (a name is not "
            "resolved)");
  ASSERT_TRUE(ParseConfig("tcp:\n  address: ::1:9400\n  token_file: /etc/t\n", "n", &c).ok());
  EXPECT_EQ(Refusal("tcp:\n  token_file: /etc/t\n"),
            "node.yaml: tcp.address: required when tcp.token_file is set");
}

TEST(ConfigTest, RefusesBrokenYamlWithTheLine) {
  EXPECT_NE(Refusal("socket: /x\n  bad: [\n").find("not valid YAML: line"), std::string::npos);
}

TEST(ConfigTest, MissingFileIsNamed) {
  NodeConfig c;
  Status s = LoadConfig("/nonexistent/node.yaml", &c);
  EXPECT_EQ(s.message(), "cannot read config file '/nonexistent/node.yaml'");
}

TEST(ConfigTest, ReadsTheBackstopAndTheSocketGroup) {
  NodeConfig c;
  EXPECT_EQ(c.backstop_mode, BackstopMode::kWarn);
  EXPECT_EQ(c.backstop_interval_ms, 1000u);
  EXPECT_EQ(c.backstop_tolerance_bytes, 256ull << 20);
  const group* g = getgrgid(getgid());
  ASSERT_NE(g, nullptr);
  Status s = ParseConfig(
      "backstop:\n  mode: kill\n  interval: 200ms\n  tolerance: 1GiB\n"
      "socket_group: " +
          std::string(g->gr_name) + "\n",
      "node.yaml", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.backstop_mode, BackstopMode::kKill);
  EXPECT_EQ(c.backstop_interval_ms, 200u);
  EXPECT_EQ(c.backstop_tolerance_bytes, 1ull << 30);
  EXPECT_EQ(c.socket_group, g->gr_name);
  ASSERT_TRUE(ParseConfig("backstop:\n  mode: 'off'\n  tolerance: 0\n", "node.yaml", &c).ok());
  EXPECT_EQ(c.backstop_mode, BackstopMode::kOff);
  EXPECT_EQ(c.backstop_tolerance_bytes, 0u);
}

TEST(ConfigTest, RefusesBadBackstopAndSocketGroupValues) {
  EXPECT_EQ(Refusal("backstop:\n  mode: loud\n"),
            "node.yaml: backstop.mode: 'loud' is not off, warn or kill");
  EXPECT_EQ(Refusal("backstop:\n  interval: 10ms\n"),
            "node.yaml: backstop.interval: must be between 50ms and 60000ms");
  EXPECT_EQ(Refusal("backstop:\n  tolerance: 32GiB\n"),
            "node.yaml: backstop.tolerance: must be at most 16GiB");
  EXPECT_NE(Refusal("backstop:\n  tolerance: lots\n").find("node.yaml: backstop.tolerance: 'lots'"),
            std::string::npos);
  EXPECT_EQ(Refusal("backstop:\n  mode: [warn]\n"),
            "node.yaml: backstop.mode: expected a scalar value");
  EXPECT_EQ(Refusal("backstop:\n  modes: warn\n"), "node.yaml: backstop.modes: unknown key");
  EXPECT_EQ(Refusal("socket_group: no-such-group-gpufrac\n"),
            "node.yaml: socket_group: no group 'no-such-group-gpufrac' on this host");
}

}  // namespace
}  // namespace gpufrac::node
