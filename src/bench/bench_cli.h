// The "gpufrac bench" subcommand: flags in, runs, reports out. src/cli/bench_command.cc only
// registers it; keeping it in the library lets tests drive the real command in-process.
#pragma once

#include <CLI/CLI.hpp>

namespace gpufrac::bench {

// Adds the subcommand. When it runs, *exit_code becomes 0 (done, SLOs met), 1 (SLOs missed, no
// SLA point found, or the run could not be made) or 2 (a usage error, also thrown as
// CLI::ValidationError so that the caller prints one line).
CLI::App* AddBenchSubcommand(CLI::App& app, int* exit_code);

}  // namespace gpufrac::bench
