#include "node/store.h"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

namespace gpufrac::node {
namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS tenants ("
    " id TEXT PRIMARY KEY, gpu_index INTEGER, gpu_uuid TEXT, ledger_index INTEGER,"
    " generation INTEGER, memory_request INTEGER, memory_limit INTEGER, command TEXT,"
    " pid INTEGER, pid_start INTEGER, state TEXT, exit_known INTEGER, exit_status INTEGER,"
    " reason TEXT, created_ms INTEGER, finished_ms INTEGER, burst_signal INTEGER,"
    " compute_request REAL, compute_limit REAL, compute_strict INTEGER, batch INTEGER, burst_hook "
    "TEXT, extra TEXT)";

// Fields added after the first schema, as one JSON object, so that a database written by an older
// agent opens (the column is added) and a newer field needs no migration.
std::string ExtraJson(const TenantRecord& t) {
  nlohmann::json attached = nlohmann::json::array();
  for (const auto& [pid, start] : t.attached) attached.push_back({pid, start});
  return nlohmann::json{{"attach_only", t.attach_only},
                        {"token", t.token},
                        {"release_on_exit", t.release_on_exit},
                        {"ever_attached", t.ever_attached},
                        {"attached", attached},
                        {"restart_on_failure", t.restart_on_failure},
                        {"max_restarts", t.max_restarts},
                        {"restarts", t.restarts}}
      .dump();
}

void ReadExtra(const std::string& text, TenantRecord* t) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return;
  t->attach_only = j.value("attach_only", false);
  t->token = j.value("token", "");
  t->release_on_exit = j.value("release_on_exit", false);
  t->ever_attached = j.value("ever_attached", false);
  if (j.contains("attached") && j["attached"].is_array()) {
    for (const auto& p : j["attached"]) {
      if (p.is_array() && p.size() == 2 && p[0].is_number_integer() && p[1].is_number_unsigned()) {
        t->attached.emplace_back(p[0].get<pid_t>(), p[1].get<uint64_t>());
      }
    }
  }
  t->restart_on_failure = j.value("restart_on_failure", false);
  t->max_restarts = j.value("max_restarts", 0u);
  t->restarts = j.value("restarts", 0u);
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

std::string Text(sqlite3_stmt* s, int col) {
  const unsigned char* t = sqlite3_column_text(s, col);
  return t == nullptr ? "" : reinterpret_cast<const char*>(t);
}

}  // namespace

Store::~Store() {
  if (db_ != nullptr) sqlite3_close(db_);
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    return Status::Error("state database: " + message);
  }
  return Status::Ok();
}

Status Store::Open(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    return Status::Error("cannot open state database '" + path + "': " + message);
  }
  sqlite3_busy_timeout(db_, 2000);
  // WAL: a crash (kill -9) never leaves a half-written row; NORMAL sync is durable across a
  // process crash, which is the failure the agent must survive.
  if (Status s = Exec("PRAGMA journal_mode=WAL"); !s.ok()) return s;
  if (Status s = Exec("PRAGMA synchronous=NORMAL"); !s.ok()) return s;
  if (Status s = Exec(kSchema); !s.ok()) return s;
  // A database from an agent that predates the extra column gets it.
  Statement probe(db_, "SELECT extra FROM tenants LIMIT 0");
  if (!probe.ok()) return Exec("ALTER TABLE tenants ADD COLUMN extra TEXT");
  return Status::Ok();
}

Status Store::Put(const TenantRecord& t) {
  Statement st(
      db_, "INSERT OR REPLACE INTO tenants VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!st.ok()) return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  sqlite3_stmt* s = st.get();
  const std::string command = nlohmann::json(t.command).dump();
  sqlite3_bind_text(s, 1, t.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s, 2, t.gpu_index);
  sqlite3_bind_text(s, 3, t.gpu_uuid.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s, 4, t.ledger_index);
  sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(t.generation));
  sqlite3_bind_int64(s, 6, static_cast<sqlite3_int64>(t.memory_request));
  sqlite3_bind_int64(s, 7, static_cast<sqlite3_int64>(t.memory_limit));
  sqlite3_bind_text(s, 8, command.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 9, t.pid);
  sqlite3_bind_int64(s, 10, static_cast<sqlite3_int64>(t.pid_start));
  sqlite3_bind_text(s, 11, StateName(t.state), -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 12, t.exit_known ? 1 : 0);
  sqlite3_bind_int(s, 13, t.exit_status);
  sqlite3_bind_text(s, 14, t.reason.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 15, t.created_ms);
  sqlite3_bind_int64(s, 16, t.finished_ms);
  sqlite3_bind_int(s, 17, t.burst_signal);
  sqlite3_bind_double(s, 18, t.compute_request);
  sqlite3_bind_double(s, 19, t.compute_limit);
  sqlite3_bind_int(s, 20, t.compute_strict ? 1 : 0);
  sqlite3_bind_int(s, 21, t.batch ? 1 : 0);
  sqlite3_bind_text(s, 22, t.burst_hook.c_str(), -1, SQLITE_TRANSIENT);
  const std::string extra = ExtraJson(t);
  sqlite3_bind_text(s, 23, extra.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s) != SQLITE_DONE) {
    return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  }
  return Status::Ok();
}

Status Store::Remove(const std::string& id) {
  Statement st(db_, "DELETE FROM tenants WHERE id = ?");
  if (!st.ok()) return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  sqlite3_bind_text(st.get(), 1, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.get()) != SQLITE_DONE) {
    return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  }
  return Status::Ok();
}

Status Store::LoadAll(std::vector<TenantRecord>* out) {
  out->clear();
  Statement st(db_, "SELECT * FROM tenants ORDER BY created_ms, id");
  if (!st.ok()) return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  sqlite3_stmt* s = st.get();
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    TenantRecord t;
    t.id = Text(s, 0);
    t.gpu_index = sqlite3_column_int(s, 1);
    t.gpu_uuid = Text(s, 2);
    t.ledger_index = sqlite3_column_int(s, 3);
    t.generation = static_cast<uint64_t>(sqlite3_column_int64(s, 4));
    t.memory_request = static_cast<uint64_t>(sqlite3_column_int64(s, 5));
    t.memory_limit = static_cast<uint64_t>(sqlite3_column_int64(s, 6));
    const nlohmann::json command = nlohmann::json::parse(Text(s, 7), nullptr, false);
    if (command.is_array()) {
      for (const auto& a : command) {
        if (a.is_string()) t.command.push_back(a.get<std::string>());
      }
    }
    t.pid = static_cast<pid_t>(sqlite3_column_int64(s, 8));
    t.pid_start = static_cast<uint64_t>(sqlite3_column_int64(s, 9));
    if (!ParseState(Text(s, 10), &t.state)) t.state = TenantState::kExited;
    t.exit_known = sqlite3_column_int(s, 11) != 0;
    t.exit_status = sqlite3_column_int(s, 12);
    t.reason = Text(s, 13);
    t.created_ms = sqlite3_column_int64(s, 14);
    t.finished_ms = sqlite3_column_int64(s, 15);
    t.burst_signal = sqlite3_column_int(s, 16);
    t.compute_request = sqlite3_column_double(s, 17);
    t.compute_limit = sqlite3_column_double(s, 18);
    t.compute_strict = sqlite3_column_int(s, 19) != 0;
    t.batch = sqlite3_column_int(s, 20) != 0;
    t.burst_hook = Text(s, 21);
    ReadExtra(Text(s, 22), &t);
    out->push_back(std::move(t));
  }
  if (rc != SQLITE_DONE)
    return Status::Error(std::string("state database: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

const char* StateName(TenantState s) {
  switch (s) {
    case TenantState::kRunning:
      return "running";
    case TenantState::kStopping:
      return "stopping";
    case TenantState::kExited:
      return "exited";
  }
  return "exited";
}

bool ParseState(const std::string& text, TenantState* s) {
  for (TenantState c : {TenantState::kRunning, TenantState::kStopping, TenantState::kExited}) {
    if (text == StateName(c)) {
      *s = c;
      return true;
    }
  }
  return false;
}

}  // namespace gpufrac::node
