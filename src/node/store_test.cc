#include "node/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
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

TEST_F(StoreTest, RoundTripsAttachOnlyAndRestartFields) {
  TenantRecord t;
  t.id = "svc";
  t.gpu_uuid = "GPU-abc";
  t.attach_only = true;
  t.token = "00112233445566778899aabbccddeeff";
  t.release_on_exit = true;
  t.ever_attached = true;
  t.attached = {{4711, 123456789012ull}, {4712, 5}};
  t.restart_on_failure = true;
  t.max_restarts = 7;
  t.restarts = 2;
  {
    Store s;
    ASSERT_TRUE(s.Open(dir_ + "/node.db").ok());
    ASSERT_TRUE(s.Put(t).ok());
  }
  Store s;
  ASSERT_TRUE(s.Open(dir_ + "/node.db").ok());
  std::vector<TenantRecord> all;
  ASSERT_TRUE(s.LoadAll(&all).ok());
  ASSERT_EQ(all.size(), 1u);
  const TenantRecord& r = all[0];
  EXPECT_TRUE(r.attach_only);
  EXPECT_EQ(r.token, t.token);
  EXPECT_TRUE(r.release_on_exit);
  EXPECT_TRUE(r.ever_attached);
  EXPECT_EQ(r.attached, t.attached);
  EXPECT_TRUE(r.restart_on_failure);
  EXPECT_EQ(r.max_restarts, 7u);
  EXPECT_EQ(r.restarts, 2u);
}

// A database written before the extra column existed opens: the column is added, old rows load
// with the new fields' defaults, and new rows keep them.
TEST_F(StoreTest, OpensADatabaseFromBeforeTheExtraColumn) {
  const std::string path = dir_ + "/old.db";
  const std::string old_schema =
      "CREATE TABLE tenants (id TEXT PRIMARY KEY, gpu_index INTEGER, gpu_uuid TEXT, ledger_index "
      "INTEGER, generation INTEGER, memory_request INTEGER, memory_limit INTEGER, command TEXT, "
      "pid INTEGER, pid_start INTEGER, state TEXT, exit_known INTEGER, exit_status INTEGER, "
      "reason TEXT, created_ms INTEGER, finished_ms INTEGER, burst_signal INTEGER, "
      "compute_request REAL, compute_limit REAL, compute_strict INTEGER, batch INTEGER, burst_hook "
      "TEXT); INSERT INTO tenants VALUES ('old', 0, 'GPU-abc', 1, 9, 1024, 2048, '[\"sleep\"]', "
      "77, 88, 'running', 0, 0, '', 1, 0, 0, 0.5, 1.0, 0, 0, '');";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, old_schema.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  Store s;
  ASSERT_TRUE(s.Open(path).ok());
  std::vector<TenantRecord> all;
  ASSERT_TRUE(s.LoadAll(&all).ok());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, "old");
  EXPECT_EQ(all[0].pid, 77);
  EXPECT_FALSE(all[0].attach_only);
  EXPECT_EQ(all[0].restarts, 0u);
  TenantRecord t = all[0];
  t.restarts = 1;
  ASSERT_TRUE(s.Put(t).ok());
  ASSERT_TRUE(s.LoadAll(&all).ok());
  EXPECT_EQ(all[0].restarts, 1u);
}

}  // namespace
}  // namespace gpufrac::node
