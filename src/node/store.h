// The agent's durable state: one SQLite database in WAL mode, one row per tenant. Written at every
// change of a tenant, read once at start to adopt what an earlier agent left running.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/tenant.h"

struct sqlite3;

namespace gpufrac::node {

class Store {
 public:
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store();

  Status Open(const std::string& path);
  Status Put(const TenantRecord& t);
  Status Remove(const std::string& id);
  Status LoadAll(std::vector<TenantRecord>* out);

 private:
  Status Exec(const char* sql);
  sqlite3* db_ = nullptr;
};

}  // namespace gpufrac::node
