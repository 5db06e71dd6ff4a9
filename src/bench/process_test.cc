// The two binaries as users run them: gpufrac-synth-server as a process (health, SIGTERM, ground
// truth file) and "gpufrac bench" against it (outputs, exit codes, usage errors).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/canned_server.h"

extern char** environ;

namespace gpufrac::bench {
namespace {

namespace fs = std::filesystem;
const std::string kBin = std::string(GPUFRAC_BUILD_DIR) + "/bin/";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "gpufrac-bench-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Waits for pid up to timeout; kills it if it does not end. Returns the exit code (or 128+signal).
int WaitFor(pid_t pid, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "process " << pid << " ran past its time limit";
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t Spawn(const std::vector<std::string>& args, const fs::path& out, const fs::path& err,
            const std::vector<std::string>& extra_env = {}) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // This process's environment, with extra_env ("NAME=value") added.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  for (const std::string& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "cannot start " << args[0];
  return pid;
}

struct Result {
  int code = 0;
  std::string out, err;
};

Result RunBench(const TempDir& dir, std::vector<std::string> args,
                const std::vector<std::string>& extra_env = {}) {
  args.insert(args.begin(), {kBin + "gpufrac", "bench"});
  pid_t pid = Spawn(args, dir.path() / "bench.out", dir.path() / "bench.err", extra_env);
  Result r;
  r.code = WaitFor(pid, std::chrono::seconds(60));
  r.out = ReadFile(dir.path() / "bench.out");
  r.err = ReadFile(dir.path() / "bench.err");
  return r;
}

class SynthProcess {
 public:
  SynthProcess(const TempDir& dir, std::vector<std::string> flags) : dir_(dir) {
    std::vector<std::string> args = {kBin + "gpufrac-synth-server", "--port", "0", "--ground-truth",
                                     (dir.path() / "truth.jsonl").string()};
    args.insert(args.end(), flags.begin(), flags.end());
    pid_ = Spawn(args, dir.path() / "synth.out", dir.path() / "synth.err");
    for (int i = 0; i < 1000 && port_ == 0; ++i) {
      std::string out = ReadFile(dir.path() / "synth.out");
      size_t colon = out.rfind(':');
      if (out.find("listening on") != std::string::npos && out.back() == '\n') {
        port_ = std::stoi(out.substr(colon + 1));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    EXPECT_NE(port_, 0) << ReadFile(dir.path() / "synth.err");
  }
  ~SynthProcess() {
    if (pid_ > 0) Stop();
  }
  int Stop() {
    kill(pid_, SIGTERM);
    int code = WaitFor(pid_, std::chrono::seconds(10));
    pid_ = 0;
    return code;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  const TempDir& dir_;
  pid_t pid_ = 0;
  int port_ = 0;
};

std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

TEST(SynthServerProcess, ServesHealthAndStopsCleanlyOnSigterm) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "2", "--itl-ms", "1"});
  std::string health = HttpGet(synth.port(), "/health");
  EXPECT_NE(health.find("200 OK"), std::string::npos);
  EXPECT_NE(health.find("\"ok\""), std::string::npos);
  EXPECT_NE(HttpGet(synth.port(), "/v1/models").find("synthetic"), std::string::npos);
  EXPECT_NE(HttpGet(synth.port(), "/nope").find("404"), std::string::npos);
  Result r = RunBench(
      dir, {"--url", synth.url(), "--model", "m", "--requests", "5", "--output-tokens-mean", "3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(synth.Stop(), 0);
  // Five POSTs in the ground truth (GETs are not recorded).
  std::string truth = ReadFile(dir.path() / "truth.jsonl");
  EXPECT_EQ(std::count(truth.begin(), truth.end(), '\n'), 5);
  EXPECT_NE(ReadFile(dir.path() / "synth.err").find("stopped"), std::string::npos);
}

TEST(SynthServerProcess, RejectsBadFlags) {
  TempDir dir;
  pid_t pid =
      Spawn({kBin + "gpufrac-synth-server", "--ttft-ms", "-3"}, dir.path() / "o", dir.path() / "e");
  EXPECT_EQ(WaitFor(pid, std::chrono::seconds(10)), 2);
  EXPECT_NE(ReadFile(dir.path() / "e").find("--ttft-ms"), std::string::npos);
}

// The --busy-poll flags of both programs, end to end; --spin-window-us alone is a usage error.
TEST(SynthServerProcess, BusyPollOnBothSidesServesEveryRequest) {
  TempDir dir;
  SynthProcess synth(dir,
                     {"--ttft-ms", "2", "--itl-ms", "1", "--busy-poll", "--spin-window-us", "100"});
  Result r =
      RunBench(dir, {"--url", synth.url(), "--model", "m", "--concurrency", "3", "--requests", "9",
                     "--output-tokens-mean", "4", "--busy-poll", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["requests"]["ok"], 9);
  EXPECT_EQ(summary["metrics"]["output_sequence_length"]["avg"], 4.0);
  EXPECT_GE(summary["metrics"]["time_to_first_token_ms"]["min"].get<double>(), 2.0);
  EXPECT_EQ(synth.Stop(), 0);

  pid_t pid = Spawn({kBin + "gpufrac-synth-server", "--spin-window-us", "50"}, dir.path() / "o",
                    dir.path() / "e");
  EXPECT_EQ(WaitFor(pid, std::chrono::seconds(10)), 2);
  EXPECT_NE(ReadFile(dir.path() / "e").find("--busy-poll"), std::string::npos);
}

TEST(BenchCommand, WritesSummaryCsvAndEveryRequest) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "3", "--itl-ms", "1"});
  fs::path out = dir.path() / "out";
  Result r = RunBench(dir, {"--url", synth.url(), "--model", "m", "--concurrency", "2",
                            "--requests", "10", "--warmup-requests", "2", "--output-tokens-mean",
                            "4", "--output-dir", out.string(), "--slo", "ttft_p99<=10s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Time To First Token (ms)"), std::string::npos);
  EXPECT_NE(r.out.find("SLO ttft_p99<=10s"), std::string::npos);
  auto summary = nlohmann::json::parse(ReadFile(out / "summary.json"));
  EXPECT_EQ(summary["requests"]["ok"], 10);
  EXPECT_EQ(summary["requests"]["warmup"], 2);
  EXPECT_EQ(summary["metrics"]["output_sequence_length"]["avg"], 4.0);
  EXPECT_EQ(summary["output_token_source"], "usage");
  EXPECT_EQ(summary["slos_met"], true);
  EXPECT_GT(summary["goodput"].get<double>(), 0);
  std::string csv = ReadFile(out / "summary.csv");
  EXPECT_EQ(csv.rfind("Metric,avg,min,max,p99", 0), 0u);
  std::ifstream jsonl(out / "requests.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(jsonl, line)) {
    auto request = nlohmann::json::parse(line);
    EXPECT_EQ(request["content_ns"].size(), 4u);
    ++lines;
  }
  EXPECT_EQ(lines, 12);
}

TEST(BenchCommand, MissedSloExitsOne) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "20", "--itl-ms", "0"});
  Result r = RunBench(dir, {"--url", synth.url(), "--model", "m", "--requests", "3", "--slo",
                            "ttft_p50<=5ms", "--json"});
  EXPECT_EQ(r.code, 1) << r.err;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["slos_met"], false);
  EXPECT_EQ(summary["slos"][0]["met"], false);
}

TEST(BenchCommand, ServerTextThatIsNotUtf8IsQuotedNotFatal) {
  TempDir dir;
  // An error page in Latin-1: the "é" (0xE9) starts a UTF-8 sequence that never completes.
  const std::string body = "erreur du mod\xE8le: surcharg\xE9";
  testing::CannedServer server("HTTP/1.1 500 Internal Server Error\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body,
                               /*close_after=*/false);
  Result r = RunBench(dir, {"--url", server.url(), "--model", "m", "--requests", "2", "--json",
                            "--output-dir", (dir.path() / "out").string()});
  EXPECT_EQ(r.code, 1) << r.err;  // every request failed: exit 1, not a crash
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["requests"]["failed"], 2);
  EXPECT_NE(summary["first_error"].get<std::string>().find("erreur du mod"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::accept(ReadFile(dir.path() / "out" / "summary.json")));
  std::ifstream lines(dir.path() / "out" / "requests.jsonl");
  int parsed = 0;
  for (std::string line; std::getline(lines, line); ++parsed) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
  EXPECT_EQ(parsed, 2);
}

TEST(BenchCommand, SweepWritesOneRowPerPointAndPlots) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "2", "--itl-ms", "1"});
  fs::path out = dir.path() / "sweep";
  Result r =
      RunBench(dir, {"--url", synth.url(), "--model", "m", "--concurrency", "1,2,4", "--requests",
                     "8", "--output-tokens-mean", "3", "--output-dir", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string csv = ReadFile(out / "sweep.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_EQ(csv.rfind("concurrency,", 0), 0u);
  auto summary = nlohmann::json::parse(ReadFile(out / "summary.json"));
  EXPECT_EQ(summary["runs"].size(), 3u);
  // gnuplot comes with scripts/setup.sh.
  EXPECT_TRUE(fs::exists(out / "ttft.svg")) << r.err;
  EXPECT_TRUE(fs::exists(out / "throughput.svg")) << r.err;
  EXPECT_NE(ReadFile(out / "ttft.svg").find("<svg"), std::string::npos);
}

TEST(BenchCommand, RateSweepAndProgressLine) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "2", "--itl-ms", "1"});
  fs::path out = dir.path() / "rates";
  Result r =
      RunBench(dir, {"--url", synth.url(), "--model", "m", "--rate", "40,80", "--arrival", "gamma",
                     "--burstiness", "2", "--duration", "1.2s", "--output-tokens-mean", "3",
                     "--output-dir", out.string(), "--progress"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string csv = ReadFile(out / "sweep.csv");
  EXPECT_EQ(csv.rfind("rate,", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  // The live line: a bar (the run has a known length), completions, rate, TTFT median.
  EXPECT_NE(r.err.find("[#"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("req/s"), std::string::npos);
  EXPECT_NE(r.err.find("TTFT p50"), std::string::npos);
}

TEST(BenchCommand, SlaSearchReportsTheLargestPassingConcurrency) {
  TempDir dir;
  // TTFT 10 ms + 100 ms per other stream: p95 <= 360 ms holds up to 4 users (see loadgen_test.cc).
  SynthProcess synth(dir, {"--ttft-ms", "10", "--itl-ms", "0", "--slowdown-ms-per-stream", "100"});
  fs::path out = dir.path() / "sla";
  Result r = RunBench(dir, {"--url", synth.url(), "--model", "m", "--requests", "12",
                            "--output-tokens-mean", "1", "--slo", "ttft_p95<=360ms", "--sla-search",
                            "concurrency", "--sla-max", "8", "--output-dir", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("largest concurrency meeting every SLO: 4"), std::string::npos) << r.out;
  auto summary = nlohmann::json::parse(ReadFile(out / "summary.json"));
  EXPECT_EQ(summary["sla_search"]["best"], 4);
  EXPECT_EQ(summary["sla_search"]["first_failure"], 5);
}

TEST(BenchCommand, MixedWorkloadFileReportsPerWorkload) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "2", "--itl-ms", "1"});
  fs::path file = dir.path() / "mixed.yaml";
  std::ofstream(file) << "url: " << synth.url() << "\nrequests: 6\nworkloads:\n"
                      << "  - {name: chat, model: a, concurrency: 2, output_tokens: 3}\n"
                      << "  - {name: reasoning, model: b, concurrency: 1,\n"
                      << "     output_tokens: {mean: 5, stddev: 0},\n"
                      << "     extra_body: {ignore_eos: true}}\n"
                      << "  - {name: embed, model: c, endpoint: embeddings, rate: 200,\n"
                      << "     arrival: constant, input_tokens: 16}\n";
  Result r = RunBench(dir, {"--workload", file.string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["requests"]["ok"], 18);
  EXPECT_EQ(summary["workloads"]["chat"]["metrics"]["output_sequence_length"]["avg"], 3.0);
  EXPECT_EQ(summary["workloads"]["reasoning"]["metrics"]["output_sequence_length"]["avg"], 5.0);
  EXPECT_EQ(summary["workloads"]["embed"]["metrics"]["input_sequence_length"]["avg"], 16.0);
}

// A workload file that names no server runs against --url, or GPUFRAC_BENCH_URL (and --model
// names the model of workloads without one): they used to be ignored for the built-in default
// port 8000. The file's own url still wins.
TEST(BenchCommand, AWorkloadFileWithoutUrlUsesTheUrlFlagOrItsEnvironmentVariable) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "1", "--itl-ms", "1"});
  fs::path file = dir.path() / "nourl.yaml";
  std::ofstream(file) << "requests: 3\nworkloads:\n  - {name: chat, output_tokens: 2}\n";
  Result flag =
      RunBench(dir, {"--workload", file.string(), "--url", synth.url(), "--model", "m", "--json"});
  ASSERT_EQ(flag.code, 0) << flag.err;
  EXPECT_EQ(nlohmann::json::parse(flag.out)["requests"]["ok"], 3) << flag.out;
  Result env = RunBench(dir, {"--workload", file.string(), "--json"},
                        {"GPUFRAC_BENCH_URL=" + synth.url(), "GPUFRAC_BENCH_MODEL=m"});
  ASSERT_EQ(env.code, 0) << env.err;
  EXPECT_EQ(nlohmann::json::parse(env.out)["requests"]["ok"], 3) << env.out;
  fs::path own = dir.path() / "own.yaml";
  std::ofstream(own) << "url: " << synth.url()
                     << "\nmodel: m\nrequests: 2\nworkloads:\n  - {name: chat}\n";
  Result file_wins =
      RunBench(dir, {"--workload", own.string(), "--url", "http://127.0.0.1:1", "--json"});
  ASSERT_EQ(file_wins.code, 0) << file_wins.err;
  EXPECT_EQ(nlohmann::json::parse(file_wins.out)["requests"]["ok"], 2) << file_wins.out;
}

// Embeddings have no output tokens: a server that reports their usage (prompt tokens) lacks
// nothing, and the table must not say their output tokens were counted from content events.
TEST(BenchCommand, EmbeddingsWithUsageGetNoNoteAboutMissingUsage) {
  TempDir dir;
  SynthProcess synth(dir, {"--ttft-ms", "1", "--itl-ms", "1"});
  fs::path file = dir.path() / "embed.yaml";
  std::ofstream(file) << "model: m\nrequests: 4\nworkloads:\n"
                      << "  - {name: chat, output_tokens: 2}\n"
                      << "  - {name: embed, endpoint: embeddings, input_tokens: 8}\n";
  Result table = RunBench(dir, {"--workload", file.string(), "--url", synth.url()});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("Workload embed"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("had no usage"), std::string::npos) << table.out;
  Result json = RunBench(dir, {"--workload", file.string(), "--url", synth.url(), "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto summary = nlohmann::json::parse(json.out);
  EXPECT_EQ(summary["requests_without_usage"], 0) << json.out;
  EXPECT_EQ(summary["workloads"]["embed"]["requests_without_usage"], 0) << json.out;
  EXPECT_EQ(summary["workloads"]["embed"]["output_token_source"], "none (embeddings)");
  EXPECT_EQ(summary["workloads"]["embed"]["input_token_source"], "usage");
}

// https against Python's TLS stack: verified with the test CA, refused without it, and accepted
// unverified with --insecure.
TEST(BenchCommand, HttpsWithVerificationAndInsecure) {
  TempDir dir;
  fs::path cert = dir.path() / "cert.pem", key = dir.path() / "key.pem";
  pid_t openssl = Spawn({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                         "-keyout", key.string(), "-out", cert.string(), "-days", "1", "-subj",
                         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"},
                        dir.path() / "openssl.out", dir.path() / "openssl.err");
  ASSERT_EQ(WaitFor(openssl, std::chrono::seconds(60)), 0) << ReadFile(dir.path() / "openssl.err");
  std::string server_script =
      std::string(GPUFRAC_SOURCE_DIR) + "/src/bench/testdata/tls_sse_server.py";
  pid_t server = Spawn({"/usr/bin/env", "python3", server_script, cert.string(), key.string()},
                       dir.path() / "tls.out", dir.path() / "tls.err");
  int port = 0;
  for (int i = 0; i < 1000 && port == 0; ++i) {
    std::string out = ReadFile(dir.path() / "tls.out");
    if (out.find("listening on") != std::string::npos && out.back() == '\n') {
      port = std::stoi(out.substr(out.rfind(':') + 1));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_NE(port, 0) << ReadFile(dir.path() / "tls.err");
  std::string url = "https://localhost:" + std::to_string(port);
  Result verified = RunBench(dir, {"--url", url, "--model", "m", "--concurrency", "2", "--requests",
                                   "4", "--tls-ca", cert.string(), "--json"});
  EXPECT_EQ(verified.code, 0) << verified.err;
  auto summary = nlohmann::json::parse(verified.out);
  EXPECT_EQ(summary["requests"]["ok"], 4);
  EXPECT_EQ(summary["metrics"]["output_sequence_length"]["avg"], 3.0);
  EXPECT_EQ(summary["metrics"]["time_to_first_token_ms"]["count"], 4);

  Result untrusted = RunBench(dir, {"--url", url, "--model", "m", "--requests", "2", "--json"});
  EXPECT_EQ(untrusted.code, 1);
  EXPECT_NE(untrusted.err.find("TLS handshake"), std::string::npos) << untrusted.err;

  Result insecure = RunBench(dir, {"--url", "https://127.0.0.1:" + std::to_string(port), "--model",
                                   "m", "--requests", "2", "--insecure", "--json"});
  EXPECT_EQ(insecure.code, 0) << insecure.err;
  kill(server, SIGTERM);
  WaitFor(server, std::chrono::seconds(10));
}

TEST(BenchCommand, BadInputIsAOneLineUsageError) {
  TempDir dir;
  fs::path bad_jsonl = dir.path() / "bad.jsonl";
  std::ofstream(bad_jsonl) << "{\"text\": \"fine\"}\n{\"text\": 3}\n";
  fs::path latin1 = dir.path() / "latin1.txt";
  std::ofstream(latin1) << "caf\xE9 cr\xE8me\n";
  fs::path bad_yaml = dir.path() / "bad.yaml";
  std::ofstream(bad_yaml) << "workloads:\n  - {name: x, model: m, concurency: 3, requests: 2}\n";
  fs::path good_yaml = dir.path() / "good.yaml";
  std::ofstream(good_yaml) << "url: http://127.0.0.1:1\nworkloads:\n  - {name: x, model: m, "
                              "requests: 2}\n";
  const std::string workload = good_yaml.string();
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  std::vector<Case> cases = {
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--slo", "ttft_p95<=fast"}, "ttft_p95"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--concurrency", "0"}, "--concurrency"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--rate", "0"}, "--rate"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--rate", "5", "--concurrency", "2"},
       "not both"},
      {{"--url", "ftp://x", "--model", "m"}, "--url"},
      {{"--url", "https://x", "--model", "m", "--tls-ca", "/no/such/ca.pem"}, "--tls-ca"},
      {{"--url", "http://127.0.0.1:1"}, "--model"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--input-file", bad_jsonl.string()},
       "bad.jsonl:2"},
      {{"--workload", bad_yaml.string()}, "concurency"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--duration", "5parsecs"}, "--duration"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--endpoint", "images"}, "images"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--extra-body", "[1]"}, "--extra-body"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--sla-search", "concurrency"}, "--slo"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--rate", "2e9"}, "--rate"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--sla-search", "rate", "--slo",
        "ttft_p95<=1s", "--sla-max", "1e9"},
       "--sla-max"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--output-tokens-mean", "1e12"},
       "--output-tokens-mean"},
      {{"--url", "http://127.0.0.1:1", "--model", "m", "--corpus", latin1.string()}, "UTF-8"},
      // The workload file sets each workload's load: these flags would have no effect with it.
      {{"--workload", workload, "--concurrency", "4"}, "--concurrency cannot be combined"},
      {{"--workload", workload, "--requests", "5"}, "--requests cannot be combined"},
      {{"--workload", workload, "--duration", "2s"}, "--duration cannot be combined"},
      {{"--workload", workload, "--rate", "3"}, "--rate cannot be combined"},
      {{"--workload", workload, "--endpoint", "embeddings"}, "--endpoint cannot be combined"},
      {{"--workload", workload, "--no-stream"}, "--no-stream cannot be combined"},
      {{"--workload", workload, "--input-tokens-mean", "10"}, "--input-tokens-mean cannot"},
      {{"--workload", workload, "--extra-body", "{}"}, "--extra-body cannot be combined"},
  };
  for (const Case& c : cases) {
    Result r = RunBench(dir, c.args);
    EXPECT_EQ(r.code, 2) << c.mentions << ": " << r.err;
    EXPECT_NE(r.err.find(c.mentions), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace gpufrac::bench
