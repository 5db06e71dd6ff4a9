// fork: a child inherits none of its parent's driver resources (CUDA does not survive fork), so
// it must not credit the parent's allocations nor reuse the parent's ledger slot.
#include <pthread.h>

#include "runtime/alloc_table.h"
#include "runtime/interposer.h"

namespace gpufrac::runtime {

void ResetPoolsAfterFork();
void ResetContextsAfterFork();
void ResetCapturesAfterFork();
void ResetInflightAfterFork();

namespace {

void AfterForkInChild() {
  Allocations().Clear();
  ResetPoolsAfterFork();
  ResetContextsAfterFork();
  ResetCapturesAfterFork();
  ResetInflightAfterFork();
  ResetAccountingAfterFork();
}

__attribute__((constructor)) void RegisterForkHandler() {
  // Cheap (no I/O): keeps process start within budget.
  pthread_atfork(nullptr, nullptr, AfterForkInChild);
}

}  // namespace
}  // namespace gpufrac::runtime
