// What the user gives bench: target URLs, workload files and length shapes. Good input is read as
// meant; bad input is refused with the key and the reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "bench/loadgen.h"
#include "bench/prompts.h"
#include "bench/workload_file.h"

namespace gpufrac::bench {
namespace {

namespace fs = std::filesystem;

TEST(TargetUrl, Ipv6LiteralsAreBracketed) {
  Target t;
  ASSERT_TRUE(ParseTargetUrl("http://[::1]:8000/v1", &t).ok());
  EXPECT_EQ(t.host, "::1");
  EXPECT_EQ(t.port, 8000);
  ASSERT_TRUE(ParseTargetUrl("https://[fe80::1]", &t).ok());
  EXPECT_EQ(t.host, "fe80::1");
  EXPECT_EQ(t.port, 443);
  ASSERT_TRUE(ParseTargetUrl("http://example.org:81", &t).ok());
  EXPECT_EQ(t.host, "example.org");
  EXPECT_EQ(t.port, 81);
  for (const char* bad : {"http://[::1", "http://[::1]x", "http://[::1]:0", "http://:80"}) {
    EXPECT_FALSE(ParseTargetUrl(bad, &t).ok()) << bad;
  }
}

TEST(LengthShape, HugeDrawsAreClampedNotWrapped) {
  std::mt19937_64 rng(1);
  EXPECT_EQ((LengthShape{1e12, 0}.Sample(rng)), static_cast<int>(kMaxLength));
  EXPECT_EQ((LengthShape{-5, 0}.Sample(rng)), 1);
}

class WorkloadFileTest : public ::testing::Test {
 protected:
  Status Load(const std::string& yaml, std::vector<Workload>* out,
              const WorkloadDefaults& given = {}) {
    const fs::path path =
        fs::temp_directory_path() / ("gpufrac-workload-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(path) << yaml;
    Status s = LoadWorkloadFile(path.string(), {"a", "b"}, given, out);
    fs::remove(path);
    return s;
  }
};

TEST_F(WorkloadFileTest, TlsKeysAreRead) {
  std::vector<Workload> w;
  Status s = Load(
      "workloads:\n"
      "  - {name: a, model: m, url: 'https://127.0.0.1:8443', tls_ca: /etc/ca.pem, requests: 2}\n"
      "  - {name: b, model: m, url: 'https://127.0.0.1:8443', insecure: true, requests: 2}\n",
      &w);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w[0].target.ca_file, "/etc/ca.pem");
  EXPECT_FALSE(w[0].target.insecure);
  EXPECT_TRUE(w[1].target.insecure);
}

// --api-key defaults to $OPENAI_API_KEY, often exported for another service: it (and the TLS
// flags) go only to the server named on the command line, never to a url: the file names.
TEST_F(WorkloadFileTest, TheCommandLineKeyGoesOnlyToTheCommandLineUrl) {
  WorkloadDefaults given;
  given.url = "https://127.0.0.1:8443";
  given.api_key = "sk-secret";
  given.tls_ca = "/etc/ours.pem";
  given.insecure = true;
  std::vector<Workload> w;
  Status s = Load(
      "workloads:\n"
      "  - {name: ours, model: m, requests: 2}\n"
      "  - {name: theirs, model: m, url: 'https://example.org:9443', requests: 2}\n"
      "  - {name: keyed, model: m, url: 'https://example.org:9443', api_key: k2, requests: 2}\n",
      &w, given);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w[0].target.host, "127.0.0.1");
  EXPECT_EQ(w[0].target.api_key, "sk-secret");
  EXPECT_EQ(w[0].target.ca_file, "/etc/ours.pem");
  EXPECT_TRUE(w[0].target.insecure);
  EXPECT_EQ(w[1].target.host, "example.org");
  EXPECT_EQ(w[1].target.api_key, "");
  EXPECT_EQ(w[1].target.ca_file, "");
  EXPECT_FALSE(w[1].target.insecure);
  EXPECT_EQ(w[2].target.api_key, "k2");
  // A url at the file's top level replaces the command line's for every workload: none gets it.
  s = Load(
      "url: https://example.org:9443\n"
      "workloads:\n  - {name: a, model: m, requests: 2}\n",
      &w, given);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w[0].target.host, "example.org");
  EXPECT_EQ(w[0].target.api_key, "");
  EXPECT_EQ(w[0].target.ca_file, "");
  EXPECT_FALSE(w[0].target.insecure);
}

TEST_F(WorkloadFileTest, AWorkloadsOwnBoundReplacesTheFilesOther) {
  std::vector<Workload> w;
  Status s = Load(
      "requests: 4\n"
      "workloads:\n"
      "  - {name: timed, model: m, duration: 1s}\n"
      "  - {name: counted, model: m}\n",
      &w);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w[0].load.requests, 0);  // a duration run, not 4 requests
  EXPECT_DOUBLE_EQ(w[0].load.duration_s, 1);
  EXPECT_EQ(w[1].load.requests, 4);
  s = Load("duration: 5s\nworkloads:\n  - {name: counted, model: m, requests: 7}\n", &w);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w[0].load.requests, 7);
  EXPECT_DOUBLE_EQ(w[0].load.duration_s, 0);
}

TEST_F(WorkloadFileTest, BadBoundsAndLengthsAreRefusedWithTheKey) {
  std::vector<Workload> w;
  struct Case {
    std::string yaml, mentions;
  };
  for (const Case& c : std::vector<Case>{
           {"requests: 3\nduration: 1s\nworkloads:\n  - {name: a, model: m}\n", "not both"},
           {"workloads:\n  - {name: a, model: m, requests: 3, duration: 1s}\n", "'a'"},
           {"workloads:\n  - {name: a, model: m, requests: 3, output_tokens: 1e12}\n",
            "output_tokens"},
           {"workloads:\n  - {name: a, model: m, requests: 3, input_tokens: {mean: 8, "
            "stddev: -1}}\n",
            "input_tokens"},
           {"workloads:\n  - {name: a, model: m, rate: 2e9, duration: 1s}\n", "at most"},
       }) {
    Status s = Load(c.yaml, &w);
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_NE(s.message().find(c.mentions), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace gpufrac::bench
