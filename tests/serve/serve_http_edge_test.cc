// HTTP at the gateway's edges, end to end: replicas that answer in legal but unusual ways (interim
// 1xx responses, stray bytes after a body, heads ended by bare LFs), clients that stop reading or
// leave with bytes unread, refused bodies, "Expect: 100-continue", and command-line overrides that
// must survive a reload.
#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "serve_test_support.h"

namespace gpufrac::testing {
namespace {

class ServeHttpEdgeTest : public ServeFixture {
 protected:
  static std::string Quirky(const std::string& name, const std::string& mode,
                            const std::string& extra = "") {
    return "  - name: " + name + "\n    command: [python3, \"" + GPUFRAC_SOURCE_DIR +
           "/tests/serve/quirky_replica.py\", \"{port}\", " + mode +
           "]\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n" + extra;
  }

  std::string SlowChat() const {
    return "  - name: chat\n    command: " + Synth({"--ttft-ms", "100", "--itl-ms", "200"}) +
           "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 10s}\n";
  }

  int OpenFds() const {
    int n = 0;
    DIR* dir = opendir(("/proc/" + std::to_string(serve_) + "/fd").c_str());
    if (dir == nullptr) return -1;
    while (readdir(dir) != nullptr) ++n;
    closedir(dir);
    return n;
  }

  static std::string Dying(const std::string& name, const std::string& mode) {
    return "  - name: " + name + "\n    command: [python3, \"" + GPUFRAC_SOURCE_DIR +
           "/tests/serve/dying_replica.py\", \"{port}\", " + mode +
           "]\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 1s}\n";
  }

  // Sends `request` on a new connection and reads everything until the gateway closes it
  // (`closed` false: it was still open after timeout_ms).
  std::string ExchangeUntilClose(const std::string& request, bool* closed, int timeout_ms = 5000) {
    *closed = false;
    const int fd = SendRaw(port_, request);
    if (fd < 0) return "";
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        *closed = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
  }

  static std::string Post(const std::string& body, const std::string& extra_headers = "") {
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
           extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  }
};

TEST_F(ServeHttpEdgeTest, UnusualButLegalAnswersReachTheirOwnClientWhole) {
  StartAgent();
  StartServe("models:\n" + Quirky("hints", "early-hints") + Quirky("lf", "bare-lf"));
  ASSERT_TRUE(WaitReplicas("hints", [](int n) { return n == 1; }));
  ASSERT_TRUE(WaitReplicas("lf", [](int n) { return n == 1; }));
  // One after another, so that each may reuse the pooled connection of the one before: a 103
  // taken for the answer, or the stray CRLF left on it, would hand each client the previous
  // client's answer.
  for (int tag = 1; tag <= 4; ++tag) {
    HttpReply r = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("hints", tag, false));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.body.find("\"tag\": " + std::to_string(tag) + ","), std::string::npos)
        << "request " << tag << " got: " << r.body;
    EXPECT_EQ(r.body.back(), '}') << "bytes after the replica's body were relayed";
    EXPECT_EQ(r.Header("link"), "") << "the interim response's headers are not the answer's";
    EXPECT_NE(r.Header("x-gpufrac-replica"), "");
  }
  EXPECT_EQ(Metric("gpufrac_serve_errors_total{model=\"hints\",kind=\"upstream_failed\"}"), -1);
  // A head whose lines end in bare LFs keeps its status line whole, with the replica's name added.
  for (int tag = 5; tag <= 6; ++tag) {
    HttpReply r = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("lf", tag, false));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.complete);
    EXPECT_NE(r.body.find("\"tag\": " + std::to_string(tag) + ","), std::string::npos) << r.body;
    EXPECT_NE(r.Header("x-gpufrac-replica").find("-lf-"), std::string::npos);
    EXPECT_EQ(r.Header("content-type"), "application/json");
  }
}

TEST_F(ServeHttpEdgeTest, AClientThatTakesNothingIsDroppedAndFreesItsReplica) {
  StartAgent();
  StartServe("models:\n" + Quirky("hose", "firehose",
                                  "    admission: {max_inflight_per_replica: 1, max_queue: 0}\n"),
             "  client_write_timeout: 1s\n");
  ASSERT_TRUE(WaitReplicas("hose", [](int n) { return n == 1; }));
  const std::string body = ChatBody("hose", 5);
  const int fd = ConnectLoopback(port_, 4096);
  ASSERT_GE(fd, 0);
  const std::string request = Post(body) + body;
  ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // It never reads. The replica's slot is held while the buffers fill...
  ASSERT_TRUE(
      WaitFor([&] { return Metric("gpufrac_serve_in_flight{model=\"hose\"}") == 1; }, 5000));
  // ...and freed once the client has taken nothing for client_write_timeout.
  EXPECT_TRUE(
      WaitFor([&] { return Metric("gpufrac_serve_in_flight{model=\"hose\"}") == 0; }, 10000))
      << ServeLog();
  EXPECT_EQ(Metric("gpufrac_serve_errors_total{model=\"hose\",kind=\"client_stalled\"}"), 1);
  EXPECT_NE(ServeLog().find("event=request.client_stalled model=hose"), std::string::npos);
  // Its connection is closed: what it reads now ends.
  char buf[65536];
  bool ended = false;
  for (int i = 0; i < 10000 && !ended; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) break;
    ended = read(fd, buf, sizeof buf) <= 0;
  }
  EXPECT_TRUE(ended);
  close(fd);
}

TEST_F(ServeHttpEdgeTest, ClientsThatLeaveWithBytesUnreadAreClosed) {
  StartAgent();
  StartServe("models:\n" + SlowChat());
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  ASSERT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 1)).status, 200);
  const int before = OpenFds();
  // Each sends a streamed request and 20 KiB more (the gateway stops reading a busy connection
  // past 16 KiB), then leaves while its answer streams.
  const std::string body = ChatBody("chat", 20);
  const std::string bytes = Post(body) + body + std::string(20 * 1024, 'x');
  std::vector<int> fds;
  for (int i = 0; i < 20; ++i) {
    const int fd = ConnectLoopback(port_);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    fds.push_back(fd);
  }
  ASSERT_TRUE(
      WaitFor([&] { return Metric("gpufrac_serve_in_flight{model=\"chat\"}") == 20; }, 5000));
  for (int fd : fds) close(fd);
  // The next event written to each fails; the gateway closes them and the replica's requests.
  EXPECT_TRUE(
      WaitFor([&] { return Metric("gpufrac_serve_in_flight{model=\"chat\"}") == 0; }, 5000));
  EXPECT_TRUE(WaitFor([&] { return OpenFds() <= before + 2; }, 5000))
      << "descriptors before: " << before << ", now: " << OpenFds();
}

TEST_F(ServeHttpEdgeTest, ARefusedBodyIsDroppedSoTheClientStillGetsItsAnswer) {
  StartAgent();
  StartServe("models:\n" + SlowChat());  // the fixture's max_body_bytes is 64 KiB
  const std::string body(8 << 20, ' ');
  const int fd = ConnectLoopback(port_);
  ASSERT_GE(fd, 0);
  const std::string head = Post(body);
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  // The 413 comes after the head; the client, as most do, sends its whole body before reading.
  size_t sent = 0;
  while (sent < body.size()) {
    const ssize_t n = send(fd, body.data() + sent, body.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  EXPECT_EQ(sent, body.size()) << "the send failed: " << strerror(errno);
  HttpReply r = ReadReply(fd, 5000);
  close(fd);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("over the limit"), std::string::npos) << r.body;
  EXPECT_EQ(HttpRequest(port_, "GET", "/health").status, 200);
}

// "Expect: 100-continue": an HTTP/1.1 client gets its 100 before it sends the body; an HTTP/1.0
// one gets none (RFC 9110 15.2: no 1xx to HTTP/1.0; it sends the body without waiting).
TEST_F(ServeHttpEdgeTest, ExpectContinueGetsA100OnlyOverHttp11) {
  StartAgent();
  StartServe("models:\n" + SlowChat());
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  const std::string body = ChatBody("chat", 2, false);
  for (const std::string version : {"HTTP/1.1", "HTTP/1.0"}) {
    SCOPED_TRACE(version);
    const int fd = ConnectLoopback(port_);
    ASSERT_GE(fd, 0);
    std::string head = Post(body, "Expect: 100-continue\r\n");
    head.replace(head.find("HTTP/1.1"), 8, version);
    ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    pollfd p{fd, POLLIN, 0};
    if (version == "HTTP/1.1") {
      ASSERT_EQ(poll(&p, 1, 3000), 1) << "no 100 Continue: the client would wait for it";
      char buf[256];
      const ssize_t n = read(fd, buf, sizeof buf);
      ASSERT_GT(n, 0);
      EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
    } else {
      EXPECT_EQ(poll(&p, 1, 500), 0) << "an interim response went to an HTTP/1.0 client";
    }
    ASSERT_EQ(send(fd, body.data(), body.size(), MSG_NOSIGNAL), static_cast<ssize_t>(body.size()));
    HttpReply r = ReadReply(fd, 5000);
    close(fd);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("chat.completion"), std::string::npos) << r.body;
  }
}

TEST_F(ServeHttpEdgeTest, AReloadKeepsTheListenAddressAndNodeSocketGivenOnTheCommandLine) {
  StartAgent();
  port_ = FreePort();
  serve_args_ = "--listen 127.0.0.1:" + std::to_string(port_) + " --node '" + socket_ + "'";
  StartServe("models:\n" + SlowChat());
  ASSERT_TRUE(WaitReplicas("chat", [](int n) { return n == 1; }));
  // The file now names another port and a socket that does not exist, and adds a model: the
  // command line's values still win, so only the model counts as a change.
  std::stringstream text;
  text << std::ifstream(deploy_path_).rdbuf();
  std::string yaml = text.str();
  const std::string listen = "listen: 127.0.0.1:" + std::to_string(port_);
  yaml.replace(yaml.find(listen), listen.size(), "listen: 127.0.0.1:" + std::to_string(FreePort()));
  yaml.replace(yaml.find(socket_), socket_.size(), "/nonexistent/node.sock");
  yaml += Quirky("lf", "bare-lf");
  std::ofstream(deploy_path_) << yaml;
  HttpReply reloaded = HttpRequest(port_, "POST", "/admin/reload");
  EXPECT_EQ(reloaded.status, 200) << reloaded.body;
  ASSERT_TRUE(WaitReplicas("lf", [](int n) { return n == 1; })) << ServeLog();
  EXPECT_EQ(HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("lf", 3, false)).status,
            200);
}

// An HTTP/1.0 client cannot read chunked framing (RFC 9112 7.1): a replica's chunked stream
// reaches it de-chunked and ended by the close, and a replica that fails between two events still
// gets it an error event, without chunk framing, before the close.
TEST_F(ServeHttpEdgeTest, AnHttp10ClientGetsChunkedAnswersDechunkedAndEndedByTheClose) {
  StartAgent();
  StartServe("models:\n  - name: chat\n    command: " + Synth({"--ttft-ms", "5", "--itl-ms", "5"}) +
             "\n    gpu: {memory: \"0.1\"}\n    sla: {ttft_p95: 10s}\n" +
             Dying("between", "chunked-between") + Dying("inside", "inside-chunk"));
  for (const char* model : {"chat", "between", "inside"}) {
    ASSERT_TRUE(WaitReplicas(model, [](int n) { return n == 1; })) << model;
  }
  auto http10 = [](const std::string& body, const std::string& extra = "") {
    std::string head = Post(body, extra);
    head.replace(head.find("HTTP/1.1"), 8, "HTTP/1.0");
    return head + body;
  };
  // A whole stream, asked for with keep-alive too: the close still ends it.
  for (const std::string extra : {"", "Connection: keep-alive\r\n"}) {
    SCOPED_TRACE(extra);
    bool closed = false;
    const std::string reply = ExchangeUntilClose(http10(ChatBody("chat", 20), extra), &closed);
    EXPECT_TRUE(closed) << "the close is what ends a de-chunked stream";
    const size_t head_end = reply.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << reply;
    std::string head = reply.substr(0, head_end + 2);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(head.rfind("http/1.1 200 ok\r\n", 0), 0u) << head;
    EXPECT_EQ(head.find("transfer-encoding"), std::string::npos) << head;
    EXPECT_NE(head.find("\r\nconnection: close\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("\r\nx-gpufrac-replica: "), std::string::npos) << head;
    // The body is the events themselves: it starts with one and ends with [DONE], no chunk sizes.
    const std::string body = reply.substr(head_end + 4);
    EXPECT_EQ(body.rfind("data: {", 0), 0u) << body;
    EXPECT_TRUE(body.ends_with("data: [DONE]\n\n")) << body;
    EXPECT_EQ(body.find("\r\n"), std::string::npos) << "chunk framing left in: " << body;
  }
  // The replica fails between two events: its event, then the gateway's error event, then the
  // close.
  bool closed = false;
  std::string reply = ExchangeUntilClose(http10(ChatBody("between", 5)), &closed);
  EXPECT_TRUE(closed);
  std::string body = reply.substr(std::min(reply.size(), reply.find("\r\n\r\n") + 4));
  EXPECT_EQ(body.rfind("data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hi\"}}]}\n\n"
                       "data: {\"error\"",
                       0),
            0u)
      << reply;
  EXPECT_EQ(body.find("\r\n"), std::string::npos) << "chunk framing in: " << body;
  // ... inside an event: the whole event and the half of the next, then the close; nothing
  // appended to the half event.
  reply = ExchangeUntilClose(http10(ChatBody("inside", 5)), &closed);
  EXPECT_TRUE(closed);
  body = reply.substr(std::min(reply.size(), reply.find("\r\n\r\n") + 4));
  EXPECT_EQ(
      body.rfind("data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hi\"}}]}\n\n", 0),
      0u)
      << reply;
  EXPECT_EQ(body.find("\"error\""), std::string::npos) << body;
  // HTTP/1.1 clients still get the replica's chunks as they are.
  HttpReply r = HttpRequest(port_, "POST", "/v1/chat/completions", ChatBody("chat", 5));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  EXPECT_TRUE(r.complete);
}

}  // namespace
}  // namespace gpufrac::testing
