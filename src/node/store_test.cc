#include "node/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace gpufrac::node {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/gpufrac-store-XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StoreTest, RoundTripsTenantsAcrossReopens) {
  TenantRecord t;
  t.id = "chat";
  t.gpu_index = 1;
  t.gpu_uuid = "GPU-abc";
  t.ledger_index = 3;
  t.generation = 42;
  t.memory_request = 1ull << 34;
  t.memory_limit = 1ull << 35;
  t.command = {"sh", "-c", "echo 'a b'"};
  t.pid = 1234;
  t.pid_start = 99;
  t.state = TenantState::kStopping;
  t.created_ms = 1700000000000;
  t.burst_signal = 10;
  t.compute_request = 0.25;
  t.compute_limit = 0.5;
  t.compute_strict = true;
  t.batch = true;
  {
    Store s;
    ASSERT_TRUE(s.Open(dir_ + "/node.db").ok());
    ASSERT_TRUE(s.Put(t).ok());
    TenantRecord gone = t;
    gone.id = "gone";
    ASSERT_TRUE(s.Put(gone).ok());
    ASSERT_TRUE(s.Remove("gone").ok());
    t.exit_known = true;
    t.exit_status = 137;
    t.reason = "killed by signal 9";
    ASSERT_TRUE(s.Put(t).ok());  // replaces
  }
  Store s;
  ASSERT_TRUE(s.Open(dir_ + "/node.db").ok());
  std::vector<TenantRecord> all;
  ASSERT_TRUE(s.LoadAll(&all).ok());
  ASSERT_EQ(all.size(), 1u);
  const TenantRecord& r = all[0];
  EXPECT_EQ(r.id, "chat");
  EXPECT_EQ(r.gpu_index, 1);
  EXPECT_EQ(r.gpu_uuid, "GPU-abc");
  EXPECT_EQ(r.ledger_index, 3);
  EXPECT_EQ(r.generation, 42u);
  EXPECT_EQ(r.memory_request, 1ull << 34);
  EXPECT_EQ(r.memory_limit, 1ull << 35);
  EXPECT_EQ(r.command, t.command);
  EXPECT_EQ(r.pid, 1234);
  EXPECT_EQ(r.pid_start, 99u);
  EXPECT_EQ(r.state, TenantState::kStopping);
  EXPECT_TRUE(r.exit_known);
  EXPECT_EQ(r.exit_status, 137);
  EXPECT_EQ(r.reason, "killed by signal 9");
  EXPECT_EQ(r.created_ms, 1700000000000);
  EXPECT_EQ(r.burst_signal, 10);
  EXPECT_EQ(r.compute_request, 0.25);
  EXPECT_EQ(r.compute_limit, 0.5);
  EXPECT_TRUE(r.compute_strict);
  EXPECT_TRUE(r.batch);
  // WAL journal: the -wal file exists beside the database while it is open.
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/node.db-wal"));
}

TEST_F(StoreTest, UnwritablePathIsAnError) {
  Store s;
  Status st = s.Open(dir_ + "/missing/dir/node.db");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot open state database"), std::string::npos);
}

}  // namespace
}  // namespace gpufrac::node
