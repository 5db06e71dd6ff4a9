// gpufrac run: flags in, RunTenant out. Every usage error is one line and exit code 2.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "common/quantity.h"
#include "runtime/run_session.h"

namespace gpufrac::cli {
namespace {

struct RunFlags {
  std::string gpu;
  std::string fraction;
  std::string memory;
  std::string memory_limit;
  std::string tenant;
  std::string compute;
  std::string compute_limit;
  std::string mode;
  std::string priority;
  std::vector<std::string> command;
};

// A compute share: a number in [0, 1].
bool ParseShare(const std::string& text, double* share) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || *end != '\0' || !(value >= 0 && value <= 1)) {
    return false;
  }
  *share = value;
  return true;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "gpufrac run: error: %s\n", message.c_str());
  return 2;
}

int Run(const RunFlags& flags) {
  RunRequest request;
  request.gpu = flags.gpu;
  request.tenant = flags.tenant;
  request.command = flags.command;
  if (const char* lib = std::getenv("GPUFRAC_LIBRARY")) request.interposer_path = lib;
  if (flags.fraction.empty() == flags.memory.empty()) {
    return Fail("give exactly one of --fraction F or --memory SIZE");
  }
  if (!flags.fraction.empty()) {
    double fraction = 0;
    if (ParseError e = ParseFraction(flags.fraction.c_str(), &fraction); e != ParseError::kNone) {
      return Fail("--fraction '" + flags.fraction + "': " + ParseErrorText(e) +
                  " (expected a number in (0, 1])");
    }
    request.memory_request = MemoryAmount{.is_fraction = true, .fraction = fraction, .bytes = 0};
  } else {
    uint64_t bytes = 0;
    if (ParseError e = ParseSize(flags.memory.c_str(), &bytes); e != ParseError::kNone) {
      return Fail("--memory '" + flags.memory + "': " + ParseErrorText(e));
    }
    request.memory_request = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = bytes};
  }
  if (!flags.memory_limit.empty()) {
    uint64_t bytes = 0;
    if (ParseError e = ParseSize(flags.memory_limit.c_str(), &bytes); e != ParseError::kNone) {
      return Fail("--memory-limit '" + flags.memory_limit + "': " + ParseErrorText(e));
    }
    request.has_memory_limit = true;
    request.memory_limit = MemoryAmount{.is_fraction = false, .fraction = 0, .bytes = bytes};
  }
  if (!flags.compute.empty() && !ParseShare(flags.compute, &request.compute_request)) {
    return Fail("--compute '" + flags.compute + "': expected a share of the GPU in [0, 1]");
  }
  if (!flags.compute_limit.empty() && !ParseShare(flags.compute_limit, &request.compute_limit)) {
    return Fail("--compute-limit '" + flags.compute_limit +
                "': expected a share of the GPU in [0, 1]");
  }
  if (flags.mode == "strict") {
    request.compute_mode = ComputeMode::kStrict;
    if (!flags.compute_limit.empty()) {
      return Fail(
          "--compute-limit cannot be combined with --mode strict (strict: limit = request)");
    }
  } else if (!flags.mode.empty() && flags.mode != "fair") {
    return Fail("--mode '" + flags.mode + "': expected fair or strict");
  }
  if (flags.priority == "batch") {
    request.priority = Priority::kBatch;
  } else if (!flags.priority.empty() && flags.priority != "inference") {
    return Fail("--priority '" + flags.priority + "': expected inference or batch");
  }
  int exit_status = 0;
  if (Status s = RunTenant(request, &exit_status); !s.ok()) return Fail(s.message());
  return exit_status;
}

}  // namespace

void AddRunCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* run = app.add_subcommand(
      "run", "Run a command on a GPU fraction: gpufrac run (--fraction F | --memory SIZE) -- CMD");
  run->add_option("--gpu", flags->gpu, "GPU index or UUID (default: the first where it fits)")
      ->envname("GPUFRAC_GPU");
  run->add_option("--fraction", flags->fraction,
                  "memory request as a fraction of the card, (0, 1]");
  run->add_option("--memory", flags->memory, "memory request as a size (20GiB, 512MiB, ...)");
  run->add_option("--memory-limit", flags->memory_limit,
                  "burstable limit, >= the request (default: the request)");
  run->add_option("--tenant", flags->tenant, "tenant name (default: run-<pid>)")
      ->envname("GPUFRAC_TENANT_NAME");
  run->add_option("--compute", flags->compute,
                  "guaranteed compute share in [0, 1] (default: the memory fraction)");
  run->add_option("--compute-limit", flags->compute_limit,
                  "compute cap in [request, 1] (default: 1 in fair mode)");
  run->add_option("--mode", flags->mode,
                  "fair (lend and borrow idle share) or strict (cap at "
                  "the request); default fair");
  run->add_option("--priority", flags->priority, "inference (latency-sensitive, default) or batch");
  run->add_option("command", flags->command, "the command and its arguments, after --");
  run->positionals_at_end();
  run->callback([flags, exit_code] { *exit_code = Run(*flags); });
}

}  // namespace gpufrac::cli
