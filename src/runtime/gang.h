// Tenants spread over several GPUs (tensor parallel). Their ranks meet at collectives, so a rank
// that runs while its peers wait for their GPUs' leases only burns its slice spinning. Each GPU's
// compute gate therefore prefers, within a bounded lead over its fair share, a gang tenant that
// holds a lease on another of its GPUs right now, and ends that lease when the other one ends:
// the ranks' leases line up, and the gang runs on all its GPUs at once (compute_gate.h).
#pragma once

#include <cstdint>

#include "runtime/ledger.h"

namespace gpufrac::runtime {

// The latest end of a live lease that tenant `spec` (matched by name) holds at `now` on another
// GPU of its gang; 0 when none, or when `spec` names no other GPU. `self` is the GPU deciding.
uint64_t GangLeaseEnd(const Ledger& self, const TenantSpec& spec, uint64_t now);

}  // namespace gpufrac::runtime
