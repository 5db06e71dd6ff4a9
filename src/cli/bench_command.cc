// gpufrac bench: the flags and the work live in the bench library (src/bench/bench_cli.cc).
#include "bench/bench_cli.h"
#include "cli/commands.h"

namespace gpufrac::cli {

void AddBenchCommand(CLI::App& app, int* exit_code) {
  gpufrac::bench::AddBenchSubcommand(app, exit_code);
}

}  // namespace gpufrac::cli
