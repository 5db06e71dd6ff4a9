// gpufrac top: a live view of the agent's GPUs, one bar per GPU split by tenant, refreshed every
// second from the API; q quits. --once prints one frame (for scripts and tests).
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/quantity.h"
#include "node/config.h"
#include "node/http_server.h"
#include "node/top_view.h"

namespace gpufrac::cli {
namespace {

struct TopFlags {
  std::string socket = node::NodeConfig{}.socket_path;
  std::string interval = "1s";
  bool once = false;
  int width = 60;
};

// Puts the terminal in non-canonical, no-echo mode while top runs, so that 'q' needs no Enter.
class RawTerminal {
 public:
  RawTerminal() {
    if (isatty(0) && tcgetattr(0, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      active_ = tcsetattr(0, TCSANOW, &raw) == 0;
    }
  }
  ~RawTerminal() {
    if (active_) tcsetattr(0, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

Status Fetch(const std::string& socket, const std::string& target, nlohmann::json* out) {
  int status = 0;
  std::string body;
  if (Status s = node::HttpCall(socket, "GET", target, "", &status, &body, 5000); !s.ok()) {
    return s;
  }
  *out = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || out->is_discarded()) {
    return Status::Error("the agent answered " + std::to_string(status) + " to " + target);
  }
  return Status::Ok();
}

Status Frame(const TopFlags& flags, std::string* frame) {
  nlohmann::json gpus, tenants;
  if (Status s = Fetch(flags.socket, "/v1/gpus", &gpus); !s.ok()) return s;
  if (Status s = Fetch(flags.socket, "/v1/tenants", &tenants); !s.ok()) return s;
  *frame = node::RenderTop(gpus["gpus"], tenants["tenants"], flags.width);
  return Status::Ok();
}

int RunTop(const TopFlags& flags) {
  uint64_t interval_ms = 0;
  if (!ParseDurationMs(flags.interval.c_str(), &interval_ms) || interval_ms < 100) {
    std::fprintf(stderr, "gpufrac top: error: --interval '%s': expected a duration >= 100ms\n",
                 flags.interval.c_str());
    return 2;
  }
  if (flags.width < 10 || flags.width > 400) {
    std::fprintf(stderr, "gpufrac top: error: --width must be between 10 and 400\n");
    return 2;
  }
  std::string frame;
  if (flags.once) {
    if (Status s = Frame(flags, &frame); !s.ok()) {
      std::fprintf(stderr, "gpufrac top: error: %s\n", s.message().c_str());
      return 1;
    }
    std::fputs(frame.c_str(), stdout);
    return 0;
  }
  RawTerminal raw;
  const bool tty = isatty(1);
  bool watch_stdin = true;
  for (;;) {
    Status s = Frame(flags, &frame);
    // Clear and home the cursor on a terminal; plain frames one after another otherwise.
    if (tty) std::fputs("\x1b[H\x1b[2J", stdout);
    std::fputs(s.ok() ? frame.c_str() : ("agent unreachable: " + s.message() + "\n").c_str(),
               stdout);
    std::fputs("\n(q quits)\n", stdout);
    std::fflush(stdout);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{0, POLLIN, 0};
      if (!watch_stdin || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        if (!watch_stdin) usleep(static_cast<useconds_t>(left.count()) * 1000);
        continue;
      }
      char c = 0;
      const ssize_t n = read(0, &c, 1);
      if (n <= 0) {
        watch_stdin = false;  // stdin closed: keep refreshing until interrupted
      } else if (c == 'q' || c == 'Q') {
        return 0;
      }
    }
  }
}

}  // namespace

void AddTopCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<TopFlags>();
  CLI::App* cmd = app.add_subcommand("top", "Live view of the node agent's GPUs and tenants");
  cmd->add_option("--node", flags->socket, "the agent's API socket")
      ->envname("GPUFRAC_NODE_SOCKET");
  cmd->add_option("--interval", flags->interval, "refresh period (default 1s)");
  cmd->add_option("--width", flags->width, "bar width in cells (default 60)");
  cmd->add_flag("--once", flags->once, "print one frame and exit");
  cmd->callback([flags, exit_code] { *exit_code = RunTop(*flags); });
}

}  // namespace gpufrac::cli
