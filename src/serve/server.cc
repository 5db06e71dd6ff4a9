#include "serve/server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "serve/gateway.h"
#include "serve/node_client.h"
#include "serve/orphans.h"
#include "serve/serve_log.h"

namespace gpufrac::serve {
namespace {

namespace asio = boost::asio;

void WaitSignals(asio::signal_set& signals, asio::io_context& io, Gateway& gateway) {
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      gateway.Reload();  // logs its result; a bad file changes nothing
      WaitSignals(signals, io, gateway);
      return;
    }
    LogEvent("gateway.stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    io.stop();
  });
}

}  // namespace

int RunServe(const ServeOptions& options) {
  DeploySpec spec;
  if (Status s = LoadDeployFile(options.deploy_path, &spec); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 2;
  }
  if (!options.listen.empty()) {
    const size_t colon = options.listen.rfind(':');
    char* end = nullptr;
    const long port =
        colon == std::string::npos ? -1 : std::strtol(options.listen.c_str() + colon + 1, &end, 10);
    if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535 || *end != '\0') {
      std::fprintf(stderr, "gpufrac serve: error: --listen: '%s': expected IP:PORT\n",
                   options.listen.c_str());
      return 2;
    }
    spec.gateway.host = options.listen.substr(0, colon);
    spec.gateway.port = static_cast<uint16_t>(port);
  }
  if (!options.node_socket.empty()) spec.node_socket = options.node_socket;
  if (options.check_only) {
    std::printf("%s: ok (%zu models)\n", options.deploy_path.c_str(), spec.models.size());
    return 0;
  }
  if (Status s = NodeClient(spec.node_socket).Health(); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 1;
  }
  std::vector<std::string> orphans;
  if (Status s = DeleteOrphanReplicas(NodeClient(spec.node_socket), &orphans); !s.ok()) {
    LogEvent("agent.unreachable", {{"reason", s.message()}});
  }
  for (const std::string& id : orphans) {
    LogEvent("replica.orphan_deleted",
             {{"replica", id}, {"reason", "left by a gateway that no longer runs"}});
  }
  // A client or replica that goes away mid-write must not end the process.
  signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  Gateway gateway(io, std::move(spec), options.deploy_path);
  if (Status s = gateway.Start(); !s.ok()) {
    std::fprintf(stderr, "gpufrac serve: error: %s\n", s.message().c_str());
    return 1;
  }
  WaitSignals(signals, io, gateway);
  io.run();
  gateway.Shutdown();
  LogEvent("gateway.stopped", {});
  return 0;
}

}  // namespace gpufrac::serve
