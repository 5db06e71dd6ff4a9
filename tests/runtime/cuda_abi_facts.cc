// The ABI facts gpufrac relies on, as one header sees them. Compiled twice: with
// GPUFRAC_ABI_FROM_TOOLKIT against NVIDIA's <cuda.h> (only where the CUDA toolkit is installed),
// and without it against gpufrac's cuda_abi.h; cuda_abi_check_test compares the two.
#ifdef GPUFRAC_ABI_FROM_TOOLKIT
#include <cuda.h>
#define GPUFRAC_ABI_FACTS RealAbiFacts
#else
#include "runtime/cuda_abi.h"
#define GPUFRAC_ABI_FACTS OurAbiFacts
#endif

#include <cstddef>

#include "runtime/cuda_abi_facts.h"

namespace gpufrac::testing {

AbiFacts GPUFRAC_ABI_FACTS() {
  return AbiFacts{
      .success = CUDA_SUCCESS,
      .out_of_memory = CUDA_ERROR_OUT_OF_MEMORY,
      .not_found = CUDA_ERROR_NOT_FOUND,
      .invalid_context = CUDA_ERROR_INVALID_CONTEXT,
      .per_thread_flag = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
      .reserved_mem_current = CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
      .used_mem_current = CU_MEMPOOL_ATTR_USED_MEM_CURRENT,
      .location_device = CU_MEM_LOCATION_TYPE_DEVICE,
      .format_float = CU_AD_FORMAT_FLOAT,
      .format_half = CU_AD_FORMAT_HALF,
      .attr_sm_count = CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
      .attr_vmm = CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
      .ptr_attr_ordinal = CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
      .ptr_attr_range_start = CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
      .ptr_attr_range_size = CU_POINTER_ATTRIBUTE_RANGE_SIZE,
      .ptr_attr_mempool = CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE,
      .prop_size = sizeof(CUmemAllocationProp),
      .prop_location_offset = offsetof(CUmemAllocationProp, location),
      .pool_props_size = sizeof(CUmemPoolProps),
      .pool_props_location_offset = offsetof(CUmemPoolProps, location),
      .array_desc_size = sizeof(CUDA_ARRAY_DESCRIPTOR),
      .array3d_desc_size = sizeof(CUDA_ARRAY3D_DESCRIPTOR),
      .array3d_format_offset = offsetof(CUDA_ARRAY3D_DESCRIPTOR, Format),
      .ipc_handle_size = sizeof(CUipcMemHandle),
      .uuid_size = sizeof(CUuuid),
      .launch_config_size = sizeof(CUlaunchConfig),
      .launch_config_stream_offset = offsetof(CUlaunchConfig, hStream),
      .event_disable_timing = CU_EVENT_DISABLE_TIMING,
      .per_thread_stream = CU_STREAM_PER_THREAD,
  };
}

}  // namespace gpufrac::testing
