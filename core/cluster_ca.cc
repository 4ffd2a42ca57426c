#include "core/cluster_ca.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/identity.h"
#include "core/x509.h"

namespace ptrust::cluster_ca {

namespace {

const std::string kPath(kDir);

std::string path_of(std::string_view name) { return kPath + "/" + std::string(name); }

// An exclusive flock on ca/lock, held until destruction. Every CA writer takes it; `sign`
// allocates serials under it.
class CaLock {
 public:
  explicit CaLock(int dir) {
    int fd = ::openat(dir, std::string(kLock).c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == ELOOP || errno == EISDIR || errno == ENXIO)
        throw Error(Code::kLockFailed, path_of(kLock) + " is not a regular file");
      throw_errno(Code::kLockFailed, "cannot open " + path_of(kLock));
    }
    fd_ = fs::Fd(fd);
    while (::flock(fd, LOCK_EX) != 0)
      if (errno != EINTR) throw_errno(Code::kLockFailed, "cannot lock " + path_of(kLock));
  }

 private:
  fs::Fd fd_;
};

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n')) s.remove_suffix(1);
  std::uint64_t v = 0;
  if (s.empty() || s.size() > 20) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A decimal counter file: nullopt when missing, STORE_CORRUPT when it does not parse.
std::optional<std::uint64_t> read_number(int dir, std::string_view name) {
  auto data = fs::read_at(dir, std::string(name), 64);
  if (!data) return std::nullopt;
  auto v = parse_u64(*data);
  if (!v) throw Error(Code::kStoreCorrupt, path_of(name) + " does not hold a decimal number");
  return v;
}

ossl::X509Ptr read_cert(int dir) {
  auto data = fs::read_at(dir, std::string(kCert), 1u << 20);
  if (!data) return nullptr;
  ossl::BioPtr bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())));
  ossl::X509Ptr x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  if (!x) throw Error(Code::kStoreCorrupt, path_of(kCert) + " holds no certificate that parses");
  return x;
}

Digest digest_of(X509* x) {
  Digest d{};
  unsigned int n = 0;
  if (X509_digest(x, x509::fetch_sha256().get(), d.data(), &n) != 1 || n != d.size()) throw std::bad_alloc();
  return d;
}

ossl::X509ReqPtr parse_csr(std::string_view data) {
  ossl::BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) throw std::bad_alloc();
  ossl::X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    auto p = reinterpret_cast<const unsigned char*>(data.data());
    req.reset(d2i_X509_REQ(nullptr, &p, static_cast<long>(data.size())));
  }
  ERR_clear_error();
  if (!req) throw Error(Code::kCsrInvalid, "the input is not a certificate signing request (PEM or DER)");
  EVP_PKEY* pk = X509_REQ_get0_pubkey(req.get());
  if (!pk || X509_REQ_verify(req.get(), pk) != 1) {
    ERR_clear_error();
    throw Error(Code::kCsrInvalid, "the request's signature does not verify with its own public key");
  }
  return req;
}

}  // namespace

ossl::X509Ptr init(int root, const InitRequest& req, std::time_t now) {
  if (req.days < 1 || req.days > 36500) throw Error(Code::kUsage, "--days must be between 1 and 36500");
  ossl::PkeyPtr key = identity::generate_key(req.key_type);  // USAGE on a bad type, before anything is created
  fs::Fd dir = fs::open_dir(root, kDir, true);
  if (!dir) throw Error(Code::kIoError, "cannot create " + kPath);
  CaLock lock(dir.get());
  const bool exists = fs::stat_at(dir.get(), std::string(kCert)) || fs::stat_at(dir.get(), std::string(kKey));
  if (exists && !req.renew)
    throw Error(Code::kClusterCaAlreadyExists, kPath + " already holds a cluster CA; `ptrust ca init --renew` replaces its "
                                               "key and certificate (the serial file is kept)");
  auto last = read_number(dir.get(), kSerial);
  if (exists && !last)
    throw Error(Code::kStoreCorrupt, path_of(kSerial) + " is missing beside an existing CA; serials are never reset: "
                                     "restore it (any value at least the highest serial issued)");
  identity::CertProfile p;
  p.cn = req.cn;
  p.ca = true;
  p.not_before = static_cast<std::int64_t>(now) - 300;
  p.not_after = static_cast<std::int64_t>(now) + static_cast<std::int64_t>(req.days) * 86400;
  ossl::X509Ptr cert = identity::make_certificate(p, key.get(), nullptr, key.get());
  if (!last) fs::write_atomic(dir.get(), std::string(kSerial), "0\n", 0600);
  // Key first: a crash between the two leaves a pair that does not match, which `sign`
  // refuses (STORE_CORRUPT) until `init --renew` is run again; never a key in a 0644 file.
  fs::write_atomic(dir.get(), std::string(kKey), identity::key_pem(key.get()), 0400);
  fs::write_atomic(dir.get(), std::string(kCert), x509::pem(cert.get()), fs::kFileMode);
  return cert;
}

Signed sign(int root, const SignRequest& req, std::time_t now) {
  // Every refusal about the request before anything is opened for writing.
  ossl::X509ReqPtr csr = parse_csr(req.csr);
  if (req.allowed.empty())
    throw Error(Code::kCsrNameNotAllowed, "no `cluster:` section in ptrust.yaml declares the cluster's names; add "
                                          "`cluster: {name: NAME, nodes: [HOST, ...]}`");
  if (std::find(req.allowed.begin(), req.allowed.end(), req.cn) == req.allowed.end())
    throw Error(Code::kCsrNameNotAllowed, "'" + req.cn + "' is neither the cluster name nor a declared node name (cluster: " +
                                              req.allowed.front() + ")");
  if (req.hours >= kMaxHours)
    throw Error(Code::kValidityTooLong, std::to_string(req.hours) + " hours: a cluster CA certificate must be valid for less than " +
                                            std::to_string(kMaxHours) + " hours");
  if (req.hours < 1) throw Error(Code::kUsage, "--hours must be at least 1");

  fs::Fd dir = fs::open_dir(root, kDir, false);
  if (!dir || !fs::stat_at(dir.get(), std::string(kCert)))
    throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  CaLock lock(dir.get());
  ossl::X509Ptr ca = read_cert(dir.get());
  if (!ca) throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  auto key_pem = fs::read_at(dir.get(), std::string(kKey), 1u << 20);
  if (!key_pem) throw Error(Code::kStoreCorrupt, path_of(kKey) + " is missing; run `ptrust ca init --renew`");
  ossl::PkeyPtr key;
  try {
    key = identity::parse_private_key(*key_pem);
  } catch (const Error&) {
    throw Error(Code::kStoreCorrupt, path_of(kKey) + " does not hold a private key; run `ptrust ca init --renew`");
  }
  if (X509_check_private_key(ca.get(), key.get()) != 1) {
    ERR_clear_error();
    throw Error(Code::kStoreCorrupt, path_of(kKey) + " does not match " + path_of(kCert) + "; run `ptrust ca init --renew`");
  }
  auto last = read_number(dir.get(), kSerial);
  if (!last) throw Error(Code::kStoreCorrupt, path_of(kSerial) + " is missing; serials are never reset: restore it");
  if (*last == UINT64_MAX) throw Error(Code::kStoreCorrupt, path_of(kSerial) + " is exhausted");
  const std::uint64_t serial = *last + 1;
  // The commit point of the allocation: written and synced before the certificate exists.
  fs::write_atomic(dir.get(), std::string(kSerial), std::to_string(serial) + "\n", 0600);

  identity::CertProfile p;
  p.cn = req.cn;
  p.san = {"DNS:" + req.cn};
  p.serial = serial;
  p.not_before = static_cast<std::int64_t>(now) - 300;  // clock skew between nodes
  p.not_after = static_cast<std::int64_t>(now) + static_cast<std::int64_t>(req.hours) * 3600 - 300;
  ossl::X509Ptr cert = identity::make_certificate(p, X509_REQ_get0_pubkey(csr.get()), ca.get(), key.get());
  return {std::move(cert), serial};
}

void revoke_below(int root, std::uint64_t min_serial, bool allow_lower) {
  fs::Fd dir = fs::open_dir(root, kDir, false);
  if (!dir || !fs::stat_at(dir.get(), std::string(kCert)))
    throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  CaLock lock(dir.get());
  auto cur = read_number(dir.get(), kMinSerial);
  if (cur && min_serial < *cur && !allow_lower)
    throw Error(Code::kUsage, "the minimum serial is " + std::to_string(*cur) + "; lowering it to " +
                                  std::to_string(min_serial) + " would accept revoked certificates again (--allow-lower)");
  fs::write_atomic(dir.get(), std::string(kMinSerial), std::to_string(min_serial) + "\n", fs::kFileMode);
}

std::optional<Info> info(int root) {
  fs::Fd dir = fs::open_dir(root, kDir, false);
  if (!dir) return std::nullopt;
  ossl::X509Ptr cert = read_cert(dir.get());
  if (!cert) return std::nullopt;
  Info i;
  i.cert = std::move(cert);
  i.last_serial = read_number(dir.get(), kSerial).value_or(0);
  i.min_serial = read_number(dir.get(), kMinSerial);
  return i;
}

std::optional<Minimum> load_minimum(int root) {
  fs::Fd dir = fs::open_dir(root, kDir, false);
  if (!dir) return std::nullopt;
  auto min = read_number(dir.get(), kMinSerial);
  if (!min) return std::nullopt;
  ossl::X509Ptr cert = read_cert(dir.get());
  if (!cert) throw Error(Code::kStoreCorrupt, path_of(kMinSerial) + " exists but " + path_of(kCert) + " does not");
  return Minimum{*min, digest_of(cert.get())};
}

bool below_minimum(const TrustState& state, STACK_OF(X509) * chain) noexcept {
  if (!state.min_serial || !chain || sk_X509_num(chain) < 2) return false;
  X509* issuer = sk_X509_value(chain, 1);
  Digest d{};
  unsigned int n = 0;
  if (X509_digest(issuer, x509::sha256(), d.data(), &n) != 1 || n != d.size()) return true;  // fail closed
  if (d != state.cluster_ca) return false;
  const ASN1_INTEGER* sn = X509_get0_serialNumber(sk_X509_value(chain, 0));
  if (ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER) return true;
  std::uint64_t v = 0;
  if (ASN1_INTEGER_get_uint64(&v, sn) != 1) {
    ERR_clear_error();
    return false;  // more than 64 bits: above any minimum (ptrust issues 64-bit serials)
  }
  return v < *state.min_serial;
}

}  // namespace ptrust::cluster_ca
