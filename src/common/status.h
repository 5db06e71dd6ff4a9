// A value-type result for the C++ side of gpufrac (CLI, agent, libraries): either OK or an error
// with a one-line message meant for the user. Exceptions stay inside the layer that threw them.
#pragma once

#include <string>
#include <utility>

namespace gpufrac {

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !failed_; }
  const std::string& message() const { return message_; }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

}  // namespace gpufrac
