// ABI facts that must agree between gpufrac's cuda_abi.h and NVIDIA's <cuda.h>: gathered by two
// translation units (one per header) and compared by a test wherever the toolkit is installed.
#pragma once

#include <cstddef>

namespace gpufrac::testing {

struct AbiFacts {
  int success, out_of_memory, not_found, invalid_context;
  unsigned long long per_thread_flag;
  int reserved_mem_current, used_mem_current, location_device, format_float, format_half;
  int attr_sm_count, attr_vmm;
  int ptr_attr_ordinal, ptr_attr_range_start, ptr_attr_range_size, ptr_attr_mempool;
  size_t prop_size, prop_location_offset, pool_props_size, pool_props_location_offset;
  size_t array_desc_size, array3d_desc_size, array3d_format_offset, ipc_handle_size, uuid_size;
  size_t launch_config_size, launch_config_stream_offset;
  unsigned event_disable_timing;
  void* per_thread_stream;
  bool operator==(const AbiFacts&) const = default;
};

AbiFacts RealAbiFacts();
AbiFacts OurAbiFacts();

}  // namespace gpufrac::testing
