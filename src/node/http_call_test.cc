// HttpCall against a raw unix-socket peer that answers in whatever way a test needs: whole,
// in pieces, delimited by its close, not at all, or by hanging up.
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

}  // namespace
}  // namespace gpufrac::node
