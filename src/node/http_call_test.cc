// HttpCall against a raw unix-socket peer that answers in whatever way a test needs: whole,
// in pieces, delimited by its close, not at all, or by hanging up.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "node/http_server.h"
#include "support/unix_listener.h"

namespace gpufrac::node {
namespace {

// Listens on a fresh socket path; for one connection, reads the request head and runs `answer`.
class FakeAgent {
 public:
  explicit FakeAgent(std::function<void(int fd)> answer) {
    thread_ = std::thread([this, answer = std::move(answer)] {
      const int fd = accept(listener_.fd(), nullptr, nullptr);
      if (fd < 0) return;
      std::string head;
      char c;
      while (head.find("\r\n\r\n") == std::string::npos && read(fd, &c, 1) == 1) head += c;
      answer(fd);
      close(fd);
    });
  }
  ~FakeAgent() {
    listener_.Shutdown();
    thread_.join();
  }
  const std::string& path() const { return listener_.path(); }

 private:
  testing::UnixListener listener_{4};
  std::thread thread_;
};

// One call; the answer's status and body land in the result.
struct Answer {
  Status status;
  int code = 0;
  std::string body;
};
Answer Call(const std::string& path, const std::string& method = "GET",
            const std::string& body = "", uint32_t timeout_ms = 5000) {
  Answer a;
  a.status = HttpCall(path, method, "/v1/tenants", body, &a.code, &a.body, timeout_ms);
  return a;
}

void Write(int fd, const std::string& s) {
  ASSERT_EQ(write(fd, s.data(), s.size()), ssize_t(s.size()));
}

TEST(HttpCallTest, ReadsAnAnswerSentInPieces) {
  FakeAgent agent([](int fd) {
    const std::string answer =
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
        "\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n";
    for (char c : answer) {  // one byte at a time: every parser state sees a partial input
      Write(fd, std::string(1, c));
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  const Answer a = Call(agent.path(), "POST", "{}");
  ASSERT_TRUE(a.status.ok()) << a.status.message();
  EXPECT_EQ(a.code, 201);
  EXPECT_EQ(a.body, "{\"a\": 1}");
}

TEST(HttpCallTest, ABodyDelimitedByTheCloseEndsThere) {
  FakeAgent agent([](int fd) { Write(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"); });
  const Answer a = Call(agent.path());
  ASSERT_TRUE(a.status.ok()) << a.status.message();
  EXPECT_EQ(a.code, 200);
  EXPECT_EQ(a.body, "hello");
}

TEST(HttpCallTest, AnAgentThatNeverAnswersTimesOut) {
  FakeAgent agent([](int) { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); });
  const auto start = std::chrono::steady_clock::now();
  const Status s = Call(agent.path(), "GET", "", 300).status;
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "reading the agent's answer: timed out after 300 ms");
  EXPECT_LT(took, std::chrono::milliseconds(1200));
}

TEST(HttpCallTest, HangingUpWithoutAnAnswerOrMidAnswerIsAnError) {
  {
    FakeAgent agent([](int) {});
    EXPECT_EQ(Call(agent.path()).status.message(), "reading the agent's answer: end of stream");
  }
  {
    FakeAgent agent([](int fd) { Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"); });
    const Status s = Call(agent.path()).status;
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.message().rfind("reading the agent's answer: ", 0), 0u) << s.message();
  }
}

TEST(HttpCallTest, NoAgentIsNamedInTheError) {
  const Status s = Call("/tmp/gpufrac-no-such-agent.sock", "GET", "", 500).status;
  EXPECT_EQ(
      s.message(),
      "cannot reach the agent at '/tmp/gpufrac-no-such-agent.sock': No such file or directory");
}

// The server side: a socket path the kernel cannot bind is a Status, never an exception, and
// creates no lock file (the agent's start used to abort on Boost's "File name too long").
TEST(HttpServerTest, ListenRefusesASocketPathTooLongWithoutThrowingOrLocking) {
  char pattern[] = "/tmp/gpufrac-listen-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  HttpServerOptions options;
  options.socket_path = dir + "/" + std::string(120, 's') + ".sock";
  HttpServer server;
  Status s;
  EXPECT_NO_THROW(s = server.Listen(options));
  EXPECT_EQ(s.message(), "socket path '" + options.socket_path + "' is " +
                             std::to_string(options.socket_path.size()) +
                             " bytes, longer than the 107 a unix socket's path may have");
  EXPECT_EQ(rmdir(dir.c_str()), 0) << "the failed Listen left something in " << dir;
}

// A Listen that fails after it bound the socket (here: a bad TCP address) removes the socket and
// the lock file it created, and a lock file that existed before stays.
TEST(HttpServerTest, AFailedListenRemovesTheSocketAndTheLockFileItCreated) {
  char pattern[] = "/tmp/gpufrac-listen-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  HttpServerOptions options;
  options.socket_path = dir + "/a.sock";
  options.tcp_address = "127.0.0.1:http";
  {
    HttpServer server;
    const Status s = server.Listen(options);
    EXPECT_EQ(s.message(), "tcp address '127.0.0.1:http' is not IP:PORT");
    EXPECT_NE(access(options.socket_path.c_str(), F_OK), 0);
    EXPECT_NE(access((options.socket_path + ".lock").c_str(), F_OK), 0);
  }
  const std::string lock = options.socket_path + ".lock";
  close(open(lock.c_str(), O_CREAT | O_WRONLY, 0600));
  {
    HttpServer server;
    EXPECT_FALSE(server.Listen(options).ok());
    EXPECT_EQ(access(lock.c_str(), F_OK), 0);  // not this server's to remove
    // And the lock is free again: another server takes it at once.
    options.tcp_address.clear();
    HttpServer next;
    EXPECT_TRUE(next.Listen(options).ok());
    next.Stop();
  }
  unlink(lock.c_str());
  EXPECT_EQ(rmdir(dir.c_str()), 0) << "something was left in " << dir;
}

}  // namespace
}  // namespace gpufrac::node
