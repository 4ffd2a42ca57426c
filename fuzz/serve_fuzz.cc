// `ptrust serve`'s JSON-lines protocol: serve::reply_line, the parser of every request line a
// client sends (the event loop only splits lines). The handler stands for the daemon's: it
// refuses unknown methods and bad params with ptrust::Error as helper/serve.cc does, and
// echoes what it was given. Checked: the reply is always exactly one JSON object line with an
// "id" and either "result" or an "error" whose code is never INTERNAL_ERROR.
#include <boost/json.hpp>

#include "fuzz/fuzz.h"
#include "helper/serve_io.h"

namespace json = boost::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  static const serve::Handler handler = [](std::string_view method, const json::object& params,
                                           const serve::Peer&) -> json::value {
    if (method == "resolve") {
      auto* p = params.if_contains("purpose");
      if (!p || !p->is_string()) throw Error(Code::kUsage, "resolve needs params {\"purpose\": NAME}");
      return json::object{{"purpose", *p}};
    }
    if (method == "status" || method == "alerts") return json::object{{"params", params}};
    throw Error(Code::kUsage, "unknown method '" + std::string(method) + "'");
  };
  std::string reply = serve::reply_line(fuzz::bytes(data, size), handler, serve::Peer{});
  if (reply.empty() || reply.back() != '\n' || reply.find('\n') != reply.size() - 1) __builtin_trap();
  json::value v = json::parse(std::string_view(reply).substr(0, reply.size() - 1));
  const json::object& o = v.as_object();
  if (!o.contains("id") || o.contains("result") == o.contains("error")) __builtin_trap();
  if (auto* e = o.if_contains("error"); e && e->at("code").as_string() == "INTERNAL_ERROR") __builtin_trap();
  return 0;
}
