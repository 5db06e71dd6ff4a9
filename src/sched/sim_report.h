// The simulator's outputs: a table for people, JSON for programs, and plots (gnuplot).
#pragma once

#include <cstdio>
#include <string>

#include "common/status.h"
#include "sched/simulator.h"

namespace gpufrac::sched {

void PrintReportTable(const SimReport& report, std::FILE* out);
// One decision as a JSON line: t, kind, action, workload, queue, node, gpus (indexes on the
// node), reason.
std::string DecisionJsonLine(double t, const ClusterState& state, const Decision& decision);
std::string ReportJson(const SimReport& report);
// Writes timeseries.dat and plot.gp into `dir` (which must exist) and, when gnuplot is
// installed, renders allocation.png, queues.png and pending.png from them.
Status WritePlots(const SimReport& report, const std::string& dir, bool render);

}  // namespace gpufrac::sched
