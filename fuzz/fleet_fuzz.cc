// What etcd (or anything answering in its place) sends `fleet` and `serve --follow`: range,
// txn and put answers, watch messages, host reports, and the URLs a user gives. The first
// byte picks the parser; the rest is the input.
#include "fuzz/fuzz.h"
#include "helper/fleet_etcd.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  using namespace ptrust::fleet;
  if (size == 0) return 0;
  std::string_view in = fuzz::bytes(data + 1, size - 1);
  static const std::string key = desired_key("f1"), prefix = hosts_prefix("f1");
  std::string fleet;
  switch (data[0] % 8) {
    case 0: fuzz::refused([&] { parse_range(in, key, false, 1); }); break;
    case 1:
      fuzz::refused([&] {
        for (const auto& kv : parse_range(in, prefix, true, 1000).kvs) fuzz::refused([&] { parse_host_status(kv.value); });
      });
      break;
    case 2: fuzz::refused([&] { parse_txn(in); }); break;
    case 3: fuzz::refused([&] { parse_put(in); }); break;
    case 4: fuzz::refused([&] { parse_watch(in, key); }); break;
    case 5: fuzz::refused([&] { parse_host_status(in); }); break;
    case 6: {
      auto d = base64_decode(in, 1 << 16);
      if (d && base64_encode(*d) != in) __builtin_trap();  // strict: one encoding per value
      break;
    }
    case 7:
      fuzz::refused([&] { parse_etcd_url(in); });
      fuzz::refused([&] { parse_follow_spec(in, fleet); });
      break;
  }
  return 0;
}
