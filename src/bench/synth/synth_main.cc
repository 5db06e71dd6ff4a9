// gpufrac-synth-server: the synthetic OpenAI-compatible server as a process (a stand-in model
// replica). Prints "listening on HOST:PORT" once ready; exits 0 on SIGTERM or SIGINT after closing
// every connection; writes the ground truth of every request as JSONL when asked.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/synth/synth_server.h"

namespace {

int64_t MsToNs(double ms) { return static_cast<int64_t>(ms * 1e6); }

}  // namespace

int main(int argc, char** argv) {
  using gpufrac::bench::SynthConfig;
  SynthConfig config;
  double ttft_ms = 20, itl_ms = 5, slowdown_ms = 0, split_delay_ms = 0.3, spin_window_us = 200;
  std::string ground_truth_path;
  CLI::App app{"gpufrac-synth-server: a synthetic OpenAI-compatible server with exact timings"};
  app.add_option("--host", config.host, "Address to listen on")->envname("SYNTH_HOST");
  app.add_option("--port", config.port, "Port to listen on (0: any free port)")
      ->envname("SYNTH_PORT");
  app.add_option("--threads", config.threads, "Event-loop threads")->check(CLI::Range(1, 64));
  app.add_option("--model", config.model, "Model name served");
  app.add_option("--ttft-ms", ttft_ms, "Time to first token")->check(CLI::NonNegativeNumber);
  app.add_option("--itl-ms", itl_ms, "Gap between content events")->check(CLI::NonNegativeNumber);
  app.add_option("--output-tokens", config.output_tokens,
                 "Output length when a request sets no max_tokens")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-output-tokens", config.max_output_tokens, "Cap on output length")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tokens-per-event", config.tokens_per_event, "Tokens in each content event")
      ->check(CLI::PositiveNumber);
  app.add_option("--reasoning-tokens", config.reasoning_tokens,
                 "First N tokens are sent as reasoning_content")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--slowdown-ms-per-stream", slowdown_ms,
                 "TTFT grows by this for every other stream in flight at arrival")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("!--no-role-chunk", config.role_chunk, "Do not send a role-only first chunk");
  app.add_flag("!--no-usage", config.usage, "Never send a usage chunk");
  app.add_flag("--keepalive-comments", config.keepalive_comments,
               "Send ': keep-alive' comments before and between tokens");
  app.add_option("--split-every", config.split_every,
                 "Every Nth content event is written in two parts")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--split-delay-ms", split_delay_ms, "Gap between the two parts of a split event")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--coalesce", config.coalesce, "Content events per write")
      ->check(CLI::PositiveNumber);
  app.add_option("--stream-error-every", config.stream_error_every,
                 "Every Nth request fails mid-stream")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stream-error-after", config.stream_error_after,
                 "Content events before the mid-stream failure")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--http-error-every", config.http_error_every, "Every Nth request gets HTTP 500")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* busy_poll =
      app.add_flag("--busy-poll", config.busy_poll,
                   "Spin instead of sleeping within --spin-window-us of each planned write (writes "
                   "leave on time; costs CPU)");
  app.add_option("--spin-window-us", spin_window_us,
                 "Busy-poll: how long before a planned write to stop sleeping and spin")
      ->check(CLI::NonNegativeNumber)
      ->needs(busy_poll);
  app.add_option("--ground-truth", ground_truth_path,
                 "Write what the server did for each request to this JSONL file on exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "gpufrac-synth-server: error: %s\n", e.what());
    return 2;
  }
  config.ttft_ns = MsToNs(ttft_ms);
  config.itl_ns = MsToNs(itl_ms);
  config.slowdown_ns_per_stream = MsToNs(slowdown_ms);
  config.split_delay_ns = MsToNs(split_delay_ms);
  config.spin_window_ns = static_cast<int64_t>(spin_window_us * 1e3);
  config.record_ground_truth = !ground_truth_path.empty();

  // Block the stop signals before any thread starts, then wait for one on this thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  gpufrac::bench::SynthServer server(config);
  gpufrac::Status status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "gpufrac-synth-server: error: %s\n", status.message().c_str());
    return 1;
  }
  std::printf("listening on %s:%u\n", config.host.c_str(), server.port());
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server.Stop();
  if (!ground_truth_path.empty()) {
    std::ofstream out(ground_truth_path);
    for (const auto& truth : server.TakeGroundTruth()) {
      nlohmann::json line = {{"request_id", truth.request_id},
                             {"path", truth.path},
                             {"status", truth.status},
                             {"stream", truth.stream},
                             {"received_ns", truth.received_ns},
                             {"content_ns", truth.content_ns},
                             {"end_ns", truth.end_ns},
                             {"prompt_tokens", truth.prompt_tokens},
                             {"completion_tokens", truth.completion_tokens},
                             {"planned_ttft_ns", truth.planned_ttft_ns},
                             {"failed_mid_stream", truth.failed_mid_stream}};
      out << line.dump() << '\n';
    }
    if (!out) {
      std::fprintf(stderr, "gpufrac-synth-server: error: cannot write %s\n",
                   ground_truth_path.c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "gpufrac-synth-server: stopped (signal %d)\n", signal_number);
  return 0;
}
