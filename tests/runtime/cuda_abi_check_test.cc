#include <gtest/gtest.h>

#include "runtime/cuda_abi_facts.h"

namespace gpufrac::testing {
namespace {

TEST(CudaAbi, MatchesTheToolkitHeader) { EXPECT_TRUE(RealAbiFacts() == OurAbiFacts()); }

}  // namespace
}  // namespace gpufrac::testing
