#include "sim/sim_state.h"

#include <gtest/gtest.h>

namespace gpufrac::sim {
namespace {

TEST(ParseDeviceList, ReadsNamesAndSizes) {
  std::vector<DeviceConfig> devices;
  std::string error;
  ASSERT_TRUE(ParseDeviceList("H100:80GiB,A100:40GiB", &devices, &error)) << error;
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].name, "H100");
  EXPECT_EQ(devices[0].total_bytes, 80ull << 30);
  EXPECT_EQ(devices[1].total_bytes, 40ull << 30);
}

TEST(ParseDeviceList, RefusesMalformedEntries) {
  std::vector<DeviceConfig> devices;
  std::string error;
  EXPECT_FALSE(ParseDeviceList("H100", &devices, &error));
  EXPECT_NE(error.find("NAME:MEMORY"), std::string::npos);
  EXPECT_FALSE(ParseDeviceList("H100:lots", &devices, &error));
  EXPECT_NE(error.find("lots"), std::string::npos);
  EXPECT_FALSE(ParseDeviceList("H100:80GiB,", &devices, &error));
}

SimShared* FakeShared(int count) {
  static SimShared shared;
  shared.device_count = static_cast<uint32_t>(count);
  for (int i = 0; i < count; ++i) {
    snprintf(shared.devices[i].uuid, sizeof shared.devices[i].uuid,
             "GPU-0000000%d-aaaa-bbbb-cccc-dddddddddddd", i);
  }
  return &shared;
}

TEST(VisibleDevices, FollowsTheRealDriversRules) {
  const SimShared& shared = *FakeShared(4);
  EXPECT_EQ(VisibleDevices(nullptr, shared), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(VisibleDevices("2,0", shared), (std::vector<int>{2, 0}));
  EXPECT_EQ(VisibleDevices("", shared), std::vector<int>{});
  // Parsing stops at the first entry that names no device.
  EXPECT_EQ(VisibleDevices("1,7,2", shared), (std::vector<int>{1}));
  EXPECT_EQ(VisibleDevices("GPU-00000003", shared), (std::vector<int>{3}));
  EXPECT_EQ(VisibleDevices("GPU-00000003-aaaa-bbbb-cccc-dddddddddddd,0", shared),
            (std::vector<int>{3, 0}));
  EXPECT_EQ(VisibleDevices("GPU-ffff", shared), std::vector<int>{});
}

}  // namespace
}  // namespace gpufrac::sim
