// One function per subcommand: each adds itself to the app and, when chosen, runs and stores the
// process exit code in *exit_code. Files are named <subcommand>_command.cc.
#pragma once

#include <CLI/CLI.hpp>

namespace gpufrac::cli {

// (subcommands are declared here, one line each)
void AddRunCommand(CLI::App& app, int* exit_code);
void AddSimCommand(CLI::App& app, int* exit_code);
void AddBenchCommand(CLI::App& app, int* exit_code);
void AddNodeCommand(CLI::App& app, int* exit_code);
void AddPsCommand(CLI::App& app, int* exit_code);
void AddTopCommand(CLI::App& app, int* exit_code);
void AddServeCommand(CLI::App& app, int* exit_code);

}  // namespace gpufrac::cli
