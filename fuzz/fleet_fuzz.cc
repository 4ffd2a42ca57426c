// What etcd (or anything answering in its place) sends `fleet` and `serve --follow`: range,
// txn and put answers, watch messages, host reports, and the URLs a user gives. The first
// byte picks the parser; the rest is the input. Case 8, a document's detached CMS signature
// (`serve --follow --require-signature`): two bytes of document length, the document, then
// the signature, checked against one pinned certificate (the seed is signed by its key).
#include <openssl/pem.h>

#include "fuzz/fuzz.h"
#include "helper/fleet_etcd.h"
#include "helper/fleet_sign.h"

namespace {

constexpr char kPin[] = R"(-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUEywS9n7nR7FeeEhX8y2caOmVIGwwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRZnV6ei1mbGVldC1zaWduZXIwIBcNMjYxMTMwMDY1MjMxWhgP
MjEyNjExMDYwNjUyMzFaMBwxGjAYBgNVBAMMEWZ1enotZmxlZXQtc2lnbmVyMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPtF6S9M5bN3KhzR9llS/Jq4KXk8FbfB+
hlm6AoS8dDpV3O0i6S/Q5/htu/Xvhqq5StWwstQvxFg/O5978/lTbqNTMFEwHQYD
VR0OBBYEFOzoYu8xWb6H9h8+PF2qhOCluSqNMB8GA1UdIwQYMBaAFOzoYu8xWb6H
9h8+PF2qhOCluSqNMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
AISSn863YsXojiELWR+9rxTQpwqNAbGA3j262844Y9uwAiAVRLesExeq4IOy5jod
qY7xnW2wk4yshKacs3r3XwqOag==
-----END CERTIFICATE-----
)";

X509* pin() {
  static X509* x = [] {
    BIO* b = BIO_new_mem_buf(kPin, -1);
    X509* c = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    return c;
  }();
  return x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  using namespace ptrust::fleet;
  if (size == 0) return 0;
  std::string_view in = fuzz::bytes(data + 1, size - 1);
  static const std::string key = desired_key("f1"), prefix = hosts_prefix("f1");
  std::string fleet;
  switch (data[0] % 9) {
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
    case 8: {
      if (in.size() < 2) break;
      size_t n = std::min<size_t>(in.size() - 2, (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]));
      std::string doc(in.substr(2, n));
      std::string_view sig = in.substr(2 + n);
      if (!fuzz::refused([&] { verify_signature(doc, sig, {pin()}); })) {
        // Verified: the same signature over any other bytes must not.
        if (!fuzz::refused([&] { verify_signature(doc + " ", sig, {pin()}); })) __builtin_trap();
      }
      break;
    }
  }
  return 0;
}
