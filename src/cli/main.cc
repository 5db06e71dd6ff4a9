// gpufrac: one binary, one subcommand per component. Flag parsing lives in <subcommand>_command.cc;
// the work lives in the component libraries.
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"gpufrac: share NVIDIA GPUs safely between many workloads"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gpufrac 0.1.0");
  int exit_code = 0;
  // (subcommands are added here, one line each)
  gpufrac::cli::AddRunCommand(app, &exit_code);
  gpufrac::cli::AddSimCommand(app, &exit_code);
  gpufrac::cli::AddBenchCommand(app, &exit_code);
  gpufrac::cli::AddNodeCommand(app, &exit_code);
  gpufrac::cli::AddPsCommand(app, &exit_code);
  gpufrac::cli::AddTopCommand(app, &exit_code);
  gpufrac::cli::AddServeCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line naming the problem; exit code 2 for every usage error.
    std::fprintf(stderr, "gpufrac: error: %s\n", e.what());
    return 2;
  }
  return exit_code;
}
