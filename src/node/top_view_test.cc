#include "node/top_view.h"

#include <gtest/gtest.h>

namespace gpufrac::node {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

nlohmann::json Gpu(int index, uint64_t committed, uint64_t used) {
  return {{"index", index},
          {"name", "H100"},
          {"memory", {{"total", 80 * kGiB}, {"committed", committed}, {"used", used}}}};
}

nlohmann::json Tenant(const std::string& id, int gpu, uint64_t used, uint64_t request) {
  return {{"id", id},
          {"gpu", gpu},
          {"state", "running"},
          {"memory", {{"used", used}, {"request", request}, {"limit", request}}}};
}

TEST(TopViewTest, SplitsEachGpuBarByTenant) {
  // Width 16: 5 GiB per cell. Tenant a uses 10 of its 20 GiB; b uses 20 of 20; 10 GiB belongs to
  // an owner the agent does not manage; the rest is free.
  const nlohmann::json gpus = {Gpu(0, 50 * kGiB, 30 * kGiB), Gpu(1, 0, 0)};
  const nlohmann::json tenants = {Tenant("chat", 0, 10 * kGiB, 20 * kGiB),
                                  Tenant("embed", 0, 20 * kGiB, 20 * kGiB)};
  const std::string frame = RenderTop(gpus, tenants, 16);
  EXPECT_NE(frame.find("GPU 0  H100               [aa::bbbb##......]  50.0GiB/80.0GiB committed, "
                       "30.0GiB used\n"),
            std::string::npos)
      << frame;
  EXPECT_NE(frame.find("[................]  0B/80.0GiB"), std::string::npos) << frame;
  EXPECT_NE(frame.find("  a chat  GPU 0  used 10.0GiB request 20.0GiB"), std::string::npos);
  EXPECT_NE(frame.find("  b embed  GPU 0  used 20.0GiB"), std::string::npos);
}

TEST(TopViewTest, ShowsComputeBusyAndSharesWhenReported) {
  nlohmann::json gpu = Gpu(0, 20 * kGiB, 10 * kGiB);
  gpu["compute"] = {{"busy", 0.73}};
  nlohmann::json unsampled = Gpu(1, 0, 0);
  unsampled["compute"] = {{"busy", nullptr}};
  nlohmann::json t = Tenant("chat", 0, 10 * kGiB, 20 * kGiB);
  t["compute"] = {{"share", 0.5}};
  const std::string frame = RenderTop({gpu, unsampled}, nlohmann::json::array({t}), 16);
  EXPECT_NE(frame.find("20.0GiB/80.0GiB committed, 10.0GiB used, compute busy 73%\n"),
            std::string::npos)
      << frame;
  EXPECT_NE(frame.find("0B/80.0GiB committed, 0B used\n"), std::string::npos) << frame;
  EXPECT_NE(frame.find("  a chat  GPU 0  used 10.0GiB request 20.0GiB limit 20.0GiB  running  "
                       "compute share 50%\n"),
            std::string::npos)
      << frame;
}

TEST(TopViewTest, NeverDrawsPastTheBar) {
  const nlohmann::json gpus = {Gpu(0, 80 * kGiB, 80 * kGiB)};
  const nlohmann::json tenants = {Tenant("x", 0, 80 * kGiB, 80 * kGiB)};
  const std::string frame = RenderTop(gpus, tenants, 10);
  EXPECT_NE(frame.find("[aaaaaaaaaa]"), std::string::npos) << frame;
}

}  // namespace
}  // namespace gpufrac::node
