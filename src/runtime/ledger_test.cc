#include "runtime/ledger.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "runtime/process_identity.h"

namespace gpufrac {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uuid_ = "GPU-ledgertest-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_TRUE(owner_.OpenAsOwner(uuid_.c_str(), 10 * kGiB));
  }
  void TearDown() override {
    owner_.Close();
    for (const char* part : {"limits", "usage"}) {
      char name[200];
      LedgerObjectName(uuid_.c_str(), part, name, sizeof name);
      shm_unlink(name);
    }
  }
  int Register(const char* name, uint64_t request, uint64_t limit) {
    TenantSpec spec;
    snprintf(spec.name, sizeof spec.name, "%s", name);
    spec.memory_request = request;
    spec.memory_limit = limit;
    int index = -1;
    char why[200] = {};
    if (!owner_.RegisterTenant(spec, getpid(), &index, why, sizeof why)) {
      last_why_ = why;
      return -1;
    }
    return index;
  }
  uint64_t Generation(int index) { return owner_.limits()->tenants[index].generation; }

  std::string uuid_;
  std::string last_why_;
  Ledger owner_;
};

TEST_F(LedgerTest, ReservesUpToTheLimitExactly) {
  const int t = Register("a", 2 * kGiB, 4 * kGiB);
  ASSERT_GE(t, 0);
  const uint64_t g = Generation(t);
  EXPECT_EQ(owner_.Reserve(t, g, -1, 4 * kGiB), Refusal::kNone);
  EXPECT_EQ(owner_.Reserve(t, g, -1, 1), Refusal::kTenantLimit);
  owner_.Release(t, g, -1, 1 * kGiB);
  EXPECT_EQ(owner_.Reserve(t, g, -1, 1 * kGiB), Refusal::kNone);
  EXPECT_EQ(owner_.Headroom(t, g), 0u);
}

TEST_F(LedgerTest, AdmissionRefusesRequestsThatDoNotFit) {
  ASSERT_GE(Register("a", 6 * kGiB, 6 * kGiB), 0);
  EXPECT_LT(Register("b", 5 * kGiB, 5 * kGiB), 0);
  EXPECT_NE(last_why_.find("asked 5.0GiB, but only 4.0GiB of 10.0GiB"), std::string::npos)
      << last_why_;
  EXPECT_GE(Register("c", 4 * kGiB, 4 * kGiB), 0);
  EXPECT_LT(Register("c", 1, 1), 0);
  EXPECT_NE(last_why_.find("already exists"), std::string::npos) << last_why_;
}

TEST_F(LedgerTest, BurstsBorrowOnlyUnpromisedMemory) {
  const int a = Register("a", 4 * kGiB, 10 * kGiB);
  const int b = Register("b", 4 * kGiB, 4 * kGiB);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // 2 GiB are promised to nobody: a may burst into them, not into b's request.
  EXPECT_EQ(owner_.Reserve(a, Generation(a), -1, 6 * kGiB), Refusal::kNone);
  EXPECT_EQ(owner_.Reserve(a, Generation(a), -1, 1), Refusal::kCardFull);
  EXPECT_EQ(owner_.Reserve(b, Generation(b), -1, 4 * kGiB), Refusal::kNone);
  EXPECT_EQ(owner_.Committed(), 10 * kGiB);
  // While a borrows, no new request is admitted into the borrowed memory.
  EXPECT_LT(Register("c", 1 * kGiB, 1 * kGiB), 0);
  owner_.Release(a, Generation(a), -1, 2 * kGiB);
  EXPECT_GE(Register("c", 1 * kGiB, 1 * kGiB), 0);
}

TEST_F(LedgerTest, UnregisterReleasesEverything) {
  const int a = Register("a", 2 * kGiB, 4 * kGiB);
  const uint64_t g = Generation(a);
  ASSERT_EQ(owner_.Reserve(a, g, -1, 3 * kGiB), Refusal::kNone);
  owner_.UnregisterTenant(a, g);
  EXPECT_EQ(owner_.Committed(), 0u);
  // The old generation is dead: nothing more can be charged under it.
  EXPECT_EQ(owner_.Reserve(a, g, -1, 1), Refusal::kNotRegistered);
}

TEST_F(LedgerTest, ReapsTheSlotsOfDeadProcesses) {
  const int a = Register("a", 4 * kGiB, 4 * kGiB);
  const uint64_t g = Generation(a);
  pid_t child = fork();
  if (child == 0) {
    Ledger tenant;
    if (!tenant.OpenAsTenant(uuid_.c_str())) _exit(1);
    const int slot = tenant.ClaimSlot(a, g, getpid(), ProcessStartTime(getpid()));
    if (slot < 0 || tenant.Reserve(a, g, slot, 3 * kGiB) != Refusal::kNone) _exit(2);
    _exit(0);  // dies holding 3 GiB
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(owner_.usage()->tenants[a].used.load(), 3 * kGiB);
  EXPECT_EQ(owner_.ReapDead(), 3 * kGiB);
  EXPECT_EQ(owner_.usage()->tenants[a].used.load(), 0u);
  EXPECT_EQ(owner_.ReapDead(), 0u);  // exactly once
}

TEST_F(LedgerTest, TenantsSeeLimitsReadOnly) {
  const int a = Register("a", 1 * kGiB, 1 * kGiB);
  ASSERT_GE(a, 0);
  pid_t child = fork();
  if (child == 0) {
    Ledger tenant;
    if (!tenant.OpenAsTenant(uuid_.c_str())) _exit(1);
    // Writing the limits through the tenant's mapping faults.
    auto* limits = const_cast<LimitsSegment*>(tenant.limits());
    limits->tenants[a].spec.memory_limit = 100 * kGiB;
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  // The write faults (under ASan the fault is reported and the child exits non-zero instead).
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(owner_.limits()->tenants[a].spec.memory_limit, 1 * kGiB);
}

TEST_F(LedgerTest, ConcurrentProcessesNeverOvershoot) {
  const int a = Register("a", 5 * kGiB, 5 * kGiB);
  const int b = Register("b", 5 * kGiB, 5 * kGiB);
  const uint64_t ga = Generation(a), gb = Generation(b);
  constexpr int kProcesses = 16;
  constexpr uint64_t kChunk = 7 << 20;
  for (int p = 0; p < kProcesses; ++p) {
    if (fork() == 0) {
      Ledger tenant;
      if (!tenant.OpenAsTenant(uuid_.c_str())) _exit(1);
      const int t = p % 2 ? a : b;
      const uint64_t g = p % 2 ? ga : gb;
      for (int i = 0; i < 2000; ++i) {
        if (tenant.Reserve(t, g, -1, kChunk) != Refusal::kNone) continue;
        const uint64_t used = tenant.usage()->tenants[t].used.load();
        if (used > 5 * kGiB) _exit(3);
        if (i % 3 == 0) tenant.Release(t, g, -1, kChunk);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < kProcesses; ++p) {
    int status = 0;
    wait(&status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_LE(owner_.usage()->tenants[a].used.load(), 5 * kGiB);
  EXPECT_LE(owner_.usage()->tenants[b].used.load(), 5 * kGiB);
  EXPECT_LE(owner_.Committed(), 10 * kGiB);
}

// A restarted node agent adopts the tenants its dead predecessor registered: without adoption they
// are reaped as orphans once the old owner is gone; with it they stay, and their request stays
// committed exactly once.
TEST_F(LedgerTest, AdoptedTenantsOutliveTheirFirstOwner) {
  for (bool adopt : {false, true}) {
    const pid_t old_owner = fork();
    if (old_owner == 0) {
      pause();
      _exit(0);
    }
    TenantSpec spec;
    snprintf(spec.name, sizeof spec.name, "adopt-%d", adopt ? 1 : 0);
    spec.memory_request = spec.memory_limit = 4 * kGiB;
    int index = -1;
    char why[200] = {};
    ASSERT_TRUE(owner_.RegisterTenant(spec, old_owner, &index, why, sizeof why)) << why;
    const uint64_t g = Generation(index);
    if (adopt) {
      EXPECT_TRUE(owner_.AdoptTenant(index, g, getpid()));
    }
    kill(old_owner, SIGKILL);
    waitpid(old_owner, nullptr, 0);
    owner_.ReapDead();
    uint64_t found = 0;
    EXPECT_EQ(owner_.FindTenant(spec.name, &found) >= 0, adopt);
    EXPECT_EQ(owner_.Committed(), adopt ? 4 * kGiB : 0u);
    if (adopt) {
      owner_.UnregisterTenant(index, g);
      EXPECT_FALSE(owner_.AdoptTenant(index, g, getpid()));  // a stale generation is refused
    }
  }
}

}  // namespace
}  // namespace gpufrac
