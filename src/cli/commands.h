// One function per subcommand: each adds itself to the app and, when chosen, runs and stores the
// process exit code in *exit_code. Files are named <subcommand>_command.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>

namespace gpufrac::cli {

// Where an option's value came from, for messages: its flag when the command line gave it, else
// its environment variable (CLI11 fills it from there only when the flag is absent).
inline std::string SourceName(const CLI::App* app, const CLI::Option* option) {
  const std::vector<CLI::Option*> parsed = app->parse_order();
  const bool on_command_line = std::find(parsed.begin(), parsed.end(), option) != parsed.end();
  if (!on_command_line && option->count() > 0 && !option->get_envname().empty()) {
    return option->get_envname();
  }
  return option->get_name();
}

// (subcommands are declared here, one line each)
void AddRunCommand(CLI::App& app, int* exit_code);
void AddSimCommand(CLI::App& app, int* exit_code);
void AddBenchCommand(CLI::App& app, int* exit_code);
void AddNodeCommand(CLI::App& app, int* exit_code);
void AddPsCommand(CLI::App& app, int* exit_code);
void AddTopCommand(CLI::App& app, int* exit_code);
void AddServeCommand(CLI::App& app, int* exit_code);

}  // namespace gpufrac::cli
