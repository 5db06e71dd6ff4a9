#include "serve/server.h"

#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>

#include "common/human_bytes.h"
#include "common/quantity.h"
#include "runtime/gpu_inventory.h"
#include "serve/gateway.h"
#include "serve/node_client.h"
#include "serve/orphans.h"
#include "serve/serve_log.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;

// In-flight requests get this long to finish after SIGTERM/SIGINT; a second signal stops at once.
constexpr auto kShutdownGrace = std::chrono::seconds(30);
constexpr auto kShutdownPoll = std::chrono::milliseconds(50);

void DrainThenStop(asio::steady_timer& timer, asio::io_context& io, Gateway& gateway,
                   std::chrono::steady_clock::time_point deadline) {
  if (!gateway.Busy() || std::chrono::steady_clock::now() >= deadline) {
    io.stop();
    return;
  }
  timer.expires_after(kShutdownPoll);
  timer.async_wait([&timer, &io, &gateway, deadline](const boost::system::error_code& ec) {
    if (!ec) DrainThenStop(timer, io, gateway, deadline);
  });
}

void WaitSignals(asio::signal_set& signals, asio::steady_timer& timer, asio::io_context& io,
                 Gateway& gateway, bool stopping) {
  signals.async_wait(
      [&signals, &timer, &io, &gateway, stopping](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
          gateway.Reload();  // logs its result; a bad file changes nothing
          WaitSignals(signals, timer, io, gateway, stopping);
          return;
        }
        if (stopping) {
          io.stop();
          return;
        }
        LogEvent("gateway.stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"},
                                      {"grace_s", std::to_string(kShutdownGrace.count())}});
        gateway.StopAccepting();
        DrainThenStop(timer, io, gateway, std::chrono::steady_clock::now() + kShutdownGrace);
        WaitSignals(signals, timer, io, gateway, true);
      });
}

constexpr auto kAgentPoll = std::chrono::milliseconds(100);

// The agent started in the background a moment ago may not have bound its socket yet: ask again
// until it answers or `wait_ms` has passed, saying once that serve is waiting (and for what).
Status WaitForAgent(const std::string& socket, int64_t wait_ms) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(wait_ms);
  bool waiting = false;
  for (;;) {
    Status s = NodeClient(socket).Health();
    const auto now = std::chrono::steady_clock::now();
    if (s.ok()) {
      if (waiting) {
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
        LogEvent("agent.ready", {{"node", socket}, {"waited_ms", std::to_string(waited.count())}});
      }
      return s;
    }
    if (now >= deadline) {
      if (!waiting) return s;
      return Status::Error(s.message() + " (waited " + std::to_string(wait_ms) + "ms for it)");
    }
    if (!waiting) {
      LogEvent("agent.waiting",
               {{"node", socket}, {"reason", s.message()}, {"up_to_ms", std::to_string(wait_ms)}});
      waiting = true;
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(kAgentPoll, deadline - now));
  }
}

// What the agent would refuse at every start of a model's replica (400), found before serving:
// a pin to a GPU the host does not have, a size larger than any GPU the replica may use, a byte
// limit larger than any GPU of the host. --check cannot see these: it reads the file alone. A
// listing the agent does not give skips the check; the starts then say what is wrong
// (replica.config_error).
Status CheckSharesAgainstHost(const DeploySpec& spec, const std::string& origin,
                              const NodeClient& node) {
  std::vector<GpuRoom> rooms;
  if (!node.ListGpus(&rooms).ok() || rooms.empty()) return Status::Ok();
  std::vector<GpuInfo> gpus;
  uint64_t host_largest = 0;
  for (const GpuRoom& g : rooms) {
    gpus.push_back({g.index, g.uuid, "", g.total});
    host_largest = std::max(host_largest, g.total);
  }
  for (size_t i = 0; i < spec.models.size(); ++i) {
    const GpuShare& share = spec.models[i].share;
    const std::string path = origin + ": models[" + std::to_string(i) + "].gpu.";
    uint64_t largest = 0;
    std::string where = "any GPU of this host";
    if (!share.gpu.empty()) {
      GpuInfo pinned;
      if (Status s = FindGpu(gpus, share.gpu, &pinned); !s.ok()) {
        return Status::Error(path + "gpu: " + s.message());
      }
      largest = pinned.total_bytes;
      where = "GPU " + std::to_string(pinned.index);
    } else {
      largest = host_largest;
    }
    MemoryAmount amount;
    if (ParseMemoryAmount(share.memory.c_str(), &amount) == ParseError::kNone &&
        !amount.is_fraction && amount.bytes > largest) {
      return Status::Error(path + "memory: '" + share.memory + "' is more than " + where +
                           " has (" + Human(largest) + ")");
    }
    // The agent refuses a byte limit above its largest GPU (400) whatever the pin, so the limit is
    // measured against the whole host, as the agent does, not against the pinned card.
    MemoryAmount limit;
    if (!share.memory_limit.empty() &&
        ParseMemoryAmount(share.memory_limit.c_str(), &limit) == ParseError::kNone &&
        !limit.is_fraction && limit.bytes > host_largest) {
      return Status::Error(path + "memory_limit: '" + share.memory_limit +
                           "' is more than any GPU of this host has (" + Human(host_largest) + ")");
    }
  }
  return Status::Ok();
}

// Each stream holds two descriptors (client and replica) and the usual soft limit is 1,024, so
// thousands of streams need the soft limit raised to the hard one.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  }
  LogEvent("gateway.file_limit",
           {{"open_files",
             limit.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(limit.rlim_cur)},
            {"was", std::to_string(before)}});
}

}  // namespace

int RunServe(const ServeOptions& options) {
  DeploySpec spec;
  if (Status s = LoadDeployFile(options.deploy_path, &spec); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 2;
  }
  DeployOverrides overrides;
  if (!options.listen.empty()) {
    std::string host;
    uint16_t port = 0;
    if (Status s = ParseListenAddress(options.listen, &host, &port); !s.ok()) {
      std::fprintf(stderr, "gpufrac serve: error: --listen: %s\n", s.message().c_str());
      return 2;
    }
    overrides.host = host;
    overrides.port = port;
  }
  uint64_t agent_wait_ms = 0;
  if (!ParseDurationMs(options.agent_wait.c_str(), &agent_wait_ms)) {
    std::fprintf(stderr,
                 "gpufrac serve: error: --agent-wait: '%s' is not a duration (like 250ms, 10s, "
                 "2m)\n",
                 options.agent_wait.c_str());
    return 2;
  }
  overrides.node_socket = options.node_socket;
  overrides.ApplyTo(&spec);
  if (options.check_only) {
    std::printf("%s: ok (%zu models)\n", options.deploy_path.c_str(), spec.models.size());
    return 0;
  }
  if (Status s = WaitForAgent(spec.node_socket, static_cast<int64_t>(agent_wait_ms)); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 1;
  }
  if (Status s = CheckSharesAgainstHost(spec, options.deploy_path, NodeClient(spec.node_socket));
      !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 2;
  }
  std::vector<std::string> orphans;
  if (Status s = DeleteOrphanReplicas(NodeClient(spec.node_socket), &orphans); !s.ok()) {
    LogEvent("agent.unreachable", {{"reason", s.message()}});
  }
  for (const std::string& id : orphans) {
    LogEvent("replica.orphan_deleted",
             {{"replica", id}, {"reason", "left by a gateway that no longer runs"}});
  }
  RaiseFileLimit();
  // A client or replica that goes away mid-write must not end the process.
  signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  Gateway gateway(io, std::move(spec), options.deploy_path, overrides);
  if (Status s = gateway.Start(); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 1;
  }
  asio::steady_timer shutdown_timer(io);
  WaitSignals(signals, shutdown_timer, io, gateway, false);
  io.run();
  gateway.Shutdown();
  LogEvent("gateway.stopped", {});
  return 0;
}

}  // namespace gpufrac::serve
