// ptrust.hpp — a thin C++ layer over ptrust.h (header-only; links with libptrust).
//
//   std::string err;
//   auto trust = ptrust::Trust::open(root, config, &err);  // nullptr: CLI defaults
//   if (!trust) { std::cerr << err << "\n"; ... }
//   trust->attach(ssl_ctx, "licensing");                // before SSL_new
//   ... handshake ...
//   if (auto v = ptrust::verdict(ssl)) std::cout << v->reason_name() << "\n";
#ifndef PTRUST_PTRUST_HPP
#define PTRUST_PTRUST_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "ptrust/ptrust.h"

namespace ptrust {

// Verdict is PTRUST_RESULT with names.
struct Verdict : PTRUST_RESULT {
  bool ok() const noexcept { return verified != 0; }
  const char* reason_name() const noexcept { return ptrust_reason_string(reason); }
  const char* mode_name() const noexcept { return ptrust_mode_string(mode); }
  const char* x509_error_string() const noexcept {
    return X509_verify_cert_error_string(x509_error);
  }
};

// verdict returns the verdict of `ssl`'s handshake, or nullopt when ptrust did not verify it.
inline std::optional<Verdict> verdict(const SSL* ssl) noexcept {
  Verdict v{};
  if (ptrust_SSL_get_result(ssl, &v) != 1) return std::nullopt;
  return v;
}

// Trust owns one reference on a PTRUST_CTX.
class Trust {
 public:
  // open opens a root and configuration (nullptr: the same defaults as the `ptrust` CLI).
  // On failure returns nullopt and, when `error` is given, a message naming an error code.
  static std::optional<Trust> open(const char* root = nullptr, const char* config = nullptr,
                                   std::string* error = nullptr) {
    char err[512];
    PTRUST_CTX* c = ptrust_ctx_new(root, config, err, sizeof err);
    if (!c) {
      if (error) *error = err;
      return std::nullopt;
    }
    return Trust(c);
  }

  Trust(const Trust& o) noexcept : ctx_(o.ctx_) { ptrust_ctx_up_ref(ctx_); }
  Trust(Trust&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  Trust& operator=(Trust o) noexcept {
    std::swap(ctx_, o.ctx_);
    return *this;
  }
  ~Trust() { ptrust_ctx_free(ctx_); }

  // attach makes `ssl_ctx` verify peers under `purpose`; false for an unknown purpose.
  bool attach(SSL_CTX* ssl_ctx, const std::string& purpose) noexcept {
    return ptrust_SSL_CTX_set1_purpose(ssl_ctx, ctx_, purpose.c_str()) == 1;
  }

  // verify runs the same decision offline on a leaf-first chain.
  std::optional<Verdict> verify(const std::string& purpose, STACK_OF(X509) * chain,
                                const PTRUST_VERIFY_OPTIONS* opts = nullptr) noexcept {
    Verdict v{};
    if (ptrust_verify_chain(ctx_, purpose.c_str(), chain, opts, &v) != 1) return std::nullopt;
    return v;
  }

  PTRUST_CTX* get() const noexcept { return ctx_; }

 private:
  explicit Trust(PTRUST_CTX* c) noexcept : ctx_(c) {}
  PTRUST_CTX* ctx_;
};

}  // namespace ptrust

#endif  // PTRUST_PTRUST_HPP
