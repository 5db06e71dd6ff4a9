// One asynchronous health check of a replica: GET <path> on its port, healthy on a 2xx status
// line within the timeout. Runs on the event loop; `done` is called exactly once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <string>

namespace gpufrac::serve {

void ProbeHealth(boost::asio::io_context& io, uint16_t port, const std::string& path,
                 int64_t timeout_ms,
                 std::function<void(bool healthy, const std::string& why)> done);

}  // namespace gpufrac::serve
