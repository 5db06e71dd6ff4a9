#include "node/metrics.h"

#include <cstdio>
#include <sstream>
#include <tuple>

namespace gpufrac::node {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? 'n' : c;
  }
  return out;
}

double Seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

class Family {
 public:
  Family(std::ostringstream* out, const char* name, const char* type, const char* help)
      : out_(out), name_(name) {
    *out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void Sample(const std::string& labels, uint64_t value) {
    *out_ << name_ << "{" << labels << "} " << value << "\n";
  }
  void Sample(const std::string& labels, double value) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", value);
    *out_ << name_ << "{" << labels << "} " << buf << "\n";
  }

 private:
  std::ostringstream* out_;
  const char* name_;
};

}  // namespace

std::string RenderMetrics(Agent* agent) {
  std::ostringstream out;
  const std::vector<GpuView> gpus = agent->Gpus();
  std::vector<std::string> gpu_labels;
  for (const GpuView& g : gpus) {
    gpu_labels.push_back("gpu=\"" + std::to_string(g.info.index) + "\",uuid=\"" +
                         Escape(g.info.uuid) + "\"");
  }
  {
    Family f(&out, "gpufrac_gpu_memory_total_bytes", "gauge", "The GPU's memory.");
    for (size_t i = 0; i < gpus.size(); ++i) f.Sample(gpu_labels[i], gpus[i].info.total_bytes);
  }
  {
    Family f(&out, "gpufrac_gpu_memory_used_bytes", "gauge",
             "Memory charged to the GPU's tenants right now.");
    for (size_t i = 0; i < gpus.size(); ++i) f.Sample(gpu_labels[i], gpus[i].used);
  }
  {
    Family f(&out, "gpufrac_gpu_memory_reserved_bytes", "gauge",
             "Memory promised to or used by tenants (sum of max(used, request)).");
    for (size_t i = 0; i < gpus.size(); ++i) f.Sample(gpu_labels[i], gpus[i].committed);
  }
  {
    Family f(&out, "gpufrac_gpu_healthy", "gauge",
             "1 while NVML reports the GPU healthy; 0 (no new tenants) on uncorrected memory "
             "errors or when it stops answering.");
    for (size_t i = 0; i < gpus.size(); ++i) {
      f.Sample(gpu_labels[i], uint64_t{gpus[i].problem.empty() ? 1u : 0u});
    }
  }
  {
    Family f(&out, "gpufrac_gpu_compute_busy_ratio", "gauge",
             "Share of NVML's last sample period in which the GPU ran kernels (0-1).");
    for (size_t i = 0; i < gpus.size(); ++i) {
      if (gpus[i].compute_busy >= 0) f.Sample(gpu_labels[i], gpus[i].compute_busy);
    }
  }
  {
    Family f(&out, "gpufrac_gpu_tenants", "gauge",
             "Live tenants in the GPU's ledger (this agent's and any gpufrac run's).");
    for (size_t i = 0; i < gpus.size(); ++i) {
      f.Sample(gpu_labels[i], static_cast<uint64_t>(gpus[i].tenants));
    }
  }
  std::vector<TenantView> tenants;
  for (TenantView& v : agent->List()) {
    if (v.record.state != TenantState::kExited) tenants.push_back(std::move(v));
  }
  auto labels = [](const TenantView& v) {
    return "tenant=\"" + Escape(v.record.id) + "\",gpu=\"" + std::to_string(v.record.gpu_index) +
           "\"";
  };
  {
    Family f(&out, "gpufrac_tenant_memory_used_bytes", "gauge", "Memory the tenant holds.");
    for (const TenantView& v : tenants) f.Sample(labels(v), v.usage.used);
  }
  {
    Family f(&out, "gpufrac_tenant_memory_request_bytes", "gauge", "The tenant's guarantee.");
    for (const TenantView& v : tenants) f.Sample(labels(v), v.record.memory_request);
  }
  {
    Family f(&out, "gpufrac_tenant_memory_limit_bytes", "gauge", "The tenant's burstable cap.");
    for (const TenantView& v : tenants) f.Sample(labels(v), v.record.memory_limit);
  }
  {
    Family f(&out, "gpufrac_tenant_oom_refusals_total", "counter",
             "Allocations refused at the tenant's limit or the card's size.");
    for (const TenantView& v : tenants) f.Sample(labels(v), v.usage.refusals);
  }
  {
    Family f(&out, "gpufrac_tenant_compute_seconds_total", "counter",
             "GPU time the tenant held the device (compute-sharing runtime).");
    for (const TenantView& v : tenants) f.Sample(labels(v), Seconds(v.usage.gpu_time_ns));
  }
  {
    Family f(&out, "gpufrac_tenant_compute_throttled_seconds_total", "counter",
             "Time the tenant's kernel launches waited for their turn.");
    for (const TenantView& v : tenants) f.Sample(labels(v), Seconds(v.usage.throttled_ns));
  }
  {
    Family f(&out, "gpufrac_tenant_compute_share", "gauge",
             "The tenant's entitled share of the GPU among busy tenants, last decided.");
    for (const TenantView& v : tenants) f.Sample(labels(v), v.usage.share_permille / 1000.0);
  }
  {
    Family f(&out, "gpufrac_tenant_processes", "gauge", "Live processes holding tenant memory.");
    for (const TenantView& v : tenants) {
      f.Sample(labels(v), static_cast<uint64_t>(v.usage.processes));
    }
  }
  {
    Family f(&out, "gpufrac_tenant_restarts_total", "counter",
             "Times the agent started the tenant's command again after it failed.");
    for (const TenantView& v : tenants) f.Sample(labels(v), uint64_t{v.record.restarts});
  }
  const BackstopView backstop = agent->Backstop();
  if (backstop.mode == BackstopMode::kOff) return out.str();
  {
    Family f(&out, "gpufrac_tenant_memory_nvml_bytes", "gauge",
             "Memory NVML sees the tenant's processes hold (the backstop's last sample).");
    for (const TenantView& v : tenants) {
      if (v.usage.nvml_used >= 0) f.Sample(labels(v), static_cast<uint64_t>(v.usage.nvml_used));
    }
  }
  {
    Family f(&out, "gpufrac_gpu_memory_unattributed_bytes", "gauge",
             "Memory NVML sees held by processes that belong to no tenant.");
    for (size_t i = 0; i < gpus.size() && i < backstop.unattributed.size(); ++i) {
      f.Sample(gpu_labels[i], backstop.unattributed[i]);
    }
  }
  for (const auto& [name, counts, help] :
       {std::tuple{"gpufrac_backstop_flagged_total", &backstop.flagged,
                   "Processes the NVML backstop flagged: over their tenant's limit, or of no "
                   "tenant."},
        std::tuple{"gpufrac_backstop_killed_total", &backstop.killed,
                   "Processes the NVML backstop killed (backstop.mode: kill)."}}) {
    Family f(&out, name, "counter", help);
    for (size_t i = 0; i < gpus.size() && i < counts->size(); ++i) {
      for (BackstopReason r : {BackstopReason::kOverLimit, BackstopReason::kNoTenant}) {
        f.Sample(gpu_labels[i] + ",reason=\"" + BackstopReasonName(r) + "\"",
                 (*counts)[i][static_cast<size_t>(r)]);
      }
    }
  }
  {
    Family f(&out, "gpufrac_backstop_offender_memory_bytes", "gauge",
             "Each process the backstop found breaking the rules in its last sample.");
    for (const BackstopOffender& o : backstop.offenders) {
      f.Sample("gpu=\"" + std::to_string(o.gpu) + "\",pid=\"" + std::to_string(o.finding.pid) +
                   "\",tenant=\"" + Escape(o.finding.tenant) + "\",reason=\"" +
                   BackstopReasonName(o.finding.reason) + "\",action=\"" +
                   (o.killed ? "killed" : "flagged") + "\"",
               o.finding.used);
    }
  }
  return out.str();
}

}  // namespace gpufrac::node
