// The handler the tests serve: a stand-in for the daemon's logic with every kind of answer.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/error.h"
#include "helper/serve_io.h"

namespace ptrust::testing {

// echo: the params back; sleep {ms}; big {n}: a string of n bytes; peer: the caller's uid and
// pid; refuse: a ptrust::Error; crash: another exception.
inline boost::json::value dummy_handler(std::string_view method, const boost::json::object& params,
                                        const serve::Peer& peer) {
  if (method == "echo") return params;
  if (method == "sleep") {
    std::this_thread::sleep_for(std::chrono::milliseconds(params.at("ms").to_number<int>()));
    return "slept";
  }
  if (method == "big") return boost::json::string(params.at("n").to_number<size_t>(), 'x');
  if (method == "peer") return {{"uid", peer.uid}, {"pid", peer.pid}};
  if (method == "refuse") throw Error(Code::kUnknownPurpose, "no purpose 'x'");
  if (method == "crash") throw std::runtime_error("boom");
  throw Error(Code::kUsage, "unknown method '" + std::string(method) + "'");
}

}  // namespace ptrust::testing
