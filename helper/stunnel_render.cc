#include "helper/stunnel_render.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <span>
#include <sstream>

#include "core/crl.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/trust.h"
#include "core/x509.h"

namespace ptrust::stunnel {

namespace {

// Matches nothing a real peer can present: `.invalid` is reserved (RFC 2606).
constexpr std::string_view kFailClosedHost = "fail-closed.ptrust.invalid";

// Measured (TunnelNameTest): 5.68's checkHost is X509_check_host without
// X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, so it matches the subject CN when the certificate has
// no DNS subjectAltName; ptrust's hook never looks at the CN.
constexpr const char* kCnFallbackWarning =
    "checkHost: stunnel 5.68 matches the subject CN when the certificate has no DNS subjectAltName: a CN-only "
    "certificate is accepted by stunnel 5.68 but refused by ptrust's hook";

// Measured (TunnelPinTest): verifyPeer accepts a self-signed leaf only when it is the pinned
// certificate itself, and a CA-issued leaf whose subject and public key are a pin's.
constexpr const char* kPinCertificateNote =
    "pinned: stunnel 5.68 accepts a self-signed pin only as the pinned certificate itself, but a CA-issued pin "
    "by subject + public key (a re-issued certificate with the same subject and key is accepted)";
constexpr const char* kPinSpkiDifference =
    "stunnel 5.68's verifyPeer needs the pinned subject, and for a self-signed pin the pinned certificate "
    "itself, so a re-issued certificate with the pinned key is refused by stunnel while ptrust accepts it";

// Above this many CAs a --via files stanza names the purpose's hashed directory (CApath)
// instead of its bundle (CAfile). Measured with `openssl verify` on one 2-core machine:
// loading a CAfile of 100 CAs costs 0.05 s, 1,000 0.41 s, 3,000 2.2 s, 10,000 19 s of CPU
// (quadratic), paid by stunnel at every start and reload; a CApath costs 0.02 s at 10,000.
// Below the threshold the bundle keeps the stanza self-contained at a cost under ~0.1 s.
constexpr std::size_t kCapathAbove = 256;

std::string under_root(const std::string& root, std::string_view rel) {
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return (r == "/" ? "" : r) + "/" + std::string(rel);
}

// A SHA-256 over a sequence of strings, each length-prefixed so that ("ab","c") and
// ("a","bc") differ.
class Digest {
 public:
  Digest() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || !EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr))
      throw Error(Code::kIoError, "cannot start a SHA-256 digest");
  }
  void add(std::string_view s) {
    std::string len = std::to_string(s.size()) + ":";
    EVP_DigestUpdate(ctx_.get(), len.data(), len.size());
    EVP_DigestUpdate(ctx_.get(), s.data(), s.size());
  }
  std::string hex_value() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &n);
    return x509::hex_lower({md, n});
  }

 private:
  ossl::EvpMdCtxPtr ctx_;
};

// The certificates stunnel loads (not the generation: an unrelated change must not reload it).
std::string material_digest(const TrustState& t) {
  Digest d;
  for (const auto& c : t.certs) d.add(c.der);
  return d.hex_value();
}

struct Stanza {
  std::ostringstream os;
  Rendered out;
  void line(std::string_view k, std::string_view v) { os << k << " = " << v << "\n"; }
  void note(const std::string& s) { os << "; " << s << "\n"; }
  void warn(const std::string& s) {
    note("warning: " + s);
    out.warnings.push_back(s);
  }
};

void head(Stanza& s, const StunnelService& svc, std::string_view summary) {
  s.os << "[" << svc.name << "]\n";
  s.note("ptrust: " + std::string(summary));
  s.line("client", "yes");
  s.line("accept", svc.accept);
  s.line("connect", svc.connect);
  // A resumed session skips verification: every connection must verify afresh.
  s.line("sessionResume", "no");
}

void subject_check(Stanza& s, const StunnelService& svc) {
  if (svc.check_host) {
    s.line("checkHost", *svc.check_host);
    s.warn(kCnFallbackWarning);
  }
  if (svc.check_ip) s.line("checkIP", *svc.check_ip);
  if (!svc.check_host && !svc.check_ip) {
    if (!svc.no_subject_check)
      throw Error(Code::kSubjectCheckMissing,
                  "service '" + svc.name + "': chain mode needs --check-host or --check-ip (or --no-subject-check)");
    s.warn("no subject check (no-subject-check): any certificate chaining to a trusted CA is accepted");
  }
}

// The CRLs a --via files stanza hands stunnel: of those that apply to the purpose
// (TrustState::crls), the ones that can matter for its chains: issued by the subject of a
// certificate in the chosen bundle, or explicitly limited to this purpose (crl install
// --purpose: the administrator said it applies). Any other CRL only switches on stunnel's
// CRL check (which then demands a CRL for every leaf's issuer) without checking anything.
// `left_out` gets the others: an intermediate's CRL is among them unless it was scoped.
std::vector<const TrustCrl*> stanza_crls(const Context& ctx, const TrustState& t, std::vector<std::string>& left_out) {
  std::vector<const TrustCrl*> out;
  if (t.crls.empty()) return out;
  std::vector<std::string> scoped = crls_scoped_to(ctx, t.purpose);
  for (const auto& c : t.crls) {
    bool keep = std::binary_search(scoped.begin(), scoped.end(), c.name);
    // The subjects scan_bundle decoded (TrustState::decoded may be empty: a report's memo
    // keeps no decoded certificates, see TrustMemo::verdicts).
    for (size_t i = 0; !keep && i < t.certs.size(); ++i)
      keep = t.certs[i].subject && X509_NAME_cmp(t.certs[i].subject.get(), X509_CRL_get_issuer(c.crl.get())) == 0;
    if (keep) out.push_back(&c);
    else left_out.push_back(c.name);
  }
  return out;
}

std::string crl_pem(const TrustCrl& c) {
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509_CRL(bio.get(), c.crl.get())) throw Error(Code::kIoError, "cannot encode CRL " + c.name);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// CRLs with --via files. stunnel 5.68 sets X509_V_FLAG_CRL_CHECK (leaf only, a CRL for the
// leaf's issuer required) on the CAfile store once CRLfile or CRLpath is given; nothing else
// can be expressed. The stanza names a file holding exactly stanza_crls(), so a CRL that
// cannot matter for this purpose changes neither the text nor the reload digest.
void crls_files(Stanza& s, const Context& ctx, const TrustState& t) {
  const PurposePolicy& p = t.policy;
  if (p.crl_policy == CrlPolicy::kOff) {
    s.note("crl-policy off: revocation is not checked");
    return;
  }
  std::vector<std::string> left_out;
  std::vector<const TrustCrl*> crls = stanza_crls(ctx, t, left_out);
  if (!left_out.empty()) {
    std::string names;
    for (const auto& n : left_out) names += (names.empty() ? "" : ", ") + n;
    s.out.advisories.push_back("CRLs not issued by a CA of purpose '" + t.purpose + "' are left out of its stanza (" +
                               names + "): stunnel would otherwise demand a CRL for every leaf's issuer. If one is "
                               "an intermediate's CRL for this purpose's peers, install it with `crl install --purpose " +
                               t.purpose + "` so stunnel checks it too (the verify hook already does)");
  }
  if (p.crl_policy == CrlPolicy::kIfPresent) {
    if (crls.empty()) {
      s.note("crl-policy if-present: no CRL for this purpose's CAs is installed (sync adds CRLfile once one is)");
      return;
    }
    s.warn("crl-policy if-present: stunnel 5.68 refuses a peer whose certificate's issuer has no CRL in CRLfile "
           "(\"unable to get certificate CRL\"); ptrust accepts it");
  }
  switch (p.crl_scope) {
    case CrlScope::kLeaf:
      break;
    case CrlScope::kChain:
      s.warn("crl-scope chain: stunnel 5.68 checks the leaf's CRL only, not the intermediates': a server behind a "
             "revoked intermediate is accepted");
      break;
  }
  if (p.allow_expired_crl) s.warn("allow-expired-crl: stunnel 5.68 refuses a peer whose CRL has expired");
  if (crls.empty()) {  // crl-policy require: a directory that never holds a CRL hash entry
    s.line("CRLpath", under_root(ctx.root, layout::kStunnelCrlDir));
    s.note("crl-policy require: no CRL for this purpose's CAs is installed: every peer is refused");
    return;
  }
  std::string pem;
  for (const TrustCrl* c : crls) pem += crl_pem(*c);
  std::string digest = x509::sha256_hex(pem);
  CrlFile f{.name = t.purpose + "." + digest.substr(0, 16) + ".pem", .pem = std::move(pem)};
  s.line("CRLfile", under_root(ctx.root, std::string(layout::kStunnelCrlDir) + "/" + f.name));
  s.note("crls sha256 " + digest);
  s.out.crl_file = std::move(f);
}

void crls_provider(Stanza& s, const TrustState& t) {
  if (t.policy.crl_policy == CrlPolicy::kOff) {
    s.note("crl-policy off: revocation is not checked");
    return;
  }
  s.warn("stunnel 5.68 does not enforce CRLs served through VerifyCAStore: revoked peers are accepted "
         "(use --via files to enforce CRLs)");
}

}  // namespace

void check_line_value(std::string_view what, std::string_view value) {
  if (value.empty()) throw Error(Code::kUsage, std::string(what) + " must not be empty");
  for (char c : value)
    if (c == '\n' || c == '\r' || c == '\0') throw Error(Code::kUsage, std::string(what) + " must be a single line");
}

Rendered render_service(const Context& ctx, const StunnelService& svc, StunnelVia via) {
  if (!safe_config_path(ctx.root))
    throw Error(Code::kConfigInvalid, "root '" + ctx.root + "' cannot be written into a stunnel configuration");
  if (svc.check_ip) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, svc.check_ip->c_str(), buf) != 1 && inet_pton(AF_INET6, svc.check_ip->c_str(), buf) != 1)
      throw Error(Code::kUsage, "check-ip '" + *svc.check_ip + "' is not an IP address");
  }
  // The purpose's trust as every consumer sees it; a failure (corrupt bundle or CRL, unknown
  // purpose) is a refusal here, never a fallback.
  std::shared_ptr<const TrustState> trust = build_trust(ctx, svc.purpose, TrustStamp{});
  if (!trust) throw std::bad_alloc();
  const TrustState& t = *trust;
  if (t.failure) throw Error(*t.failure, t.failure_message);
  if (via == StunnelVia::kProvider) refuse_ca_pins_for_chain_consumers(t);  // the provider refuses it
  Stanza s;
  s.out.mode = t.mode;
  std::string summary = "purpose " + svc.purpose + ", mode " + std::string(to_string(t.mode)) + ", via " +
                        std::string(to_string(via)) + ", material sha256 ";
  switch (t.mode) {
    case Mode::kNone:
      throw Error(Code::kNoTrustForPurpose, "purpose '" + svc.purpose +
                                                "' has no trusted certificates (mode none): refusing to render an "
                                                "unverified tunnel");
    case Mode::kPinned:
      head(s, svc, summary + material_digest(t));
      // verifyPeer: the leaf must be in the store (see docs/stunnel.md, "Pinned mode").
      s.line("verifyPeer", "yes");
      switch (t.policy.pin_match) {
        case PinMatch::kCertificate:
          s.note(kPinCertificateNote);
          break;
        case PinMatch::kSpki:
          if (!svc.accept_stricter)
            throw Error(Code::kRenderCannotExpress,
                        "purpose '" + svc.purpose + "' has pin-match: spki, which stunnel 5.68 cannot express: " +
                            kPinSpkiDifference + " (accept-stricter renders it anyway, with a warning)");
          s.warn(std::string("pin-match spki: ") + kPinSpkiDifference);
          break;
      }
      if (svc.check_host || svc.check_ip) s.note("pinned: the pin identifies the peer; no host/IP check");
      break;
    case Mode::kCa:
    case Mode::kGeneral:
      head(s, svc, summary + material_digest(t));
      s.line("verifyChain", "yes");
      subject_check(s, svc);
      break;
  }
  switch (via) {
    case StunnelVia::kFiles:
      if (t.mode != Mode::kPinned && t.certs.size() > kCapathAbove) {
        // A large purpose: OpenSSL 3.0 loads a CAfile with one sorted insert per certificate
        // (quadratic: 10,000 CAs took 19 s of CPU per stunnel start or reload, measured with
        // `openssl verify -CAfile`), while a hashed directory is read on demand (0.02 s). The
        // directory is the purpose's capath/ (the same selection, written in the same change
        // as the bundle).
        s.line("CApath", under_root(ctx.root, std::string(layout::kCapathDir) + "/" + svc.purpose));
        s.note("CApath: " + std::to_string(t.certs.size()) + " CAs (over " + std::to_string(kCapathAbove) +
               "), read on demand instead of a CAfile loaded whole at every start");
      } else {
        s.line("CAfile", t.bundle);
      }
      if (t.mode != Mode::kPinned) crls_files(s, ctx, t);
      break;
    case StunnelVia::kProvider:
      // 5.68 refuses to start without a CAfile; trust comes from VerifyCAStore only.
      s.line("CAfile", ensure_placeholder(ctx));
      s.line("config", "VerifyCAStore:ptrust://" + svc.purpose);
      if (t.mode != Mode::kPinned) crls_provider(s, t);
      break;
  }
  s.out.text = s.os.str();
  return std::move(s.out);
}

Rendered render_fail_closed(const Context& ctx, const StunnelService& svc, std::string_view reason) {
  Stanza s;
  s.out.fail_closed = true;
  std::string why(reason);
  for (char& c : why)
    if (c == '\n' || c == '\r') c = ' ';
  head(s, svc, "purpose " + svc.purpose + ", FAIL CLOSED: " + why);
  s.line("verifyChain", "yes");
  s.line("checkHost", kFailClosedHost);
  s.line("CAfile", ensure_placeholder(ctx));
  s.out.text = s.os.str();
  return std::move(s.out);
}

namespace {

// A self-signed end-entity certificate whose key exists only inside this function.
std::string make_placeholder_pem() {
  ossl::PkeyPtr key(EVP_EC_gen("P-256"));
  ossl::X509Ptr x(X509_new());
  if (!key || !x) throw Error(Code::kIoError, "cannot generate the stunnel placeholder certificate");
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  ossl::BnPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get())))
    throw Error(Code::kIoError, "cannot build the placeholder's serial number");
  X509_set_version(x.get(), X509_VERSION_3);
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string cn = "ptrust stunnel placeholder (trusts nothing) " + x509::hex_lower(std::span(serial).first(8));
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(x.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_time_adj_ex(X509_getm_notAfter(x.get()), 365 * 100, 0, nullptr);
  X509_set_pubkey(x.get(), key.get());
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  // Not a CA and no keyCertSign: nothing can chain to it even if its key were known.
  for (auto [n, v] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                      {NID_key_usage, "critical,digitalSignature"}}) {
    ossl::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, n, v));
    if (!ext || !X509_add_ext(x.get(), ext.get(), -1)) throw Error(Code::kIoError, "cannot build the placeholder");
  }
  if (X509_sign(x.get(), key.get(), EVP_sha256()) <= 0) throw Error(Code::kIoError, "cannot sign the placeholder");
  std::string pem = x509::pem(x.get());
  if (pem.empty()) throw Error(Code::kIoError, "cannot encode the placeholder");
  return pem;
}

bool is_single_cert(const std::string& pem) {
  if (pem.find("-----BEGIN ") != pem.rfind("-----BEGIN ")) return false;
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ossl::X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  return x != nullptr;
}

}  // namespace

std::string ensure_placeholder(const Context& ctx) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd dir = fs::open_dir(root.get(), layout::kEtcDir, true);
  std::string name(layout::kStunnelPlaceholder);
  auto existing = fs::read_at(dir.get(), name, 64u << 10);
  if (!existing || !is_single_cert(*existing)) fs::write_atomic(dir.get(), name, make_placeholder_pem(), fs::kFileMode);
  return under_root(ctx.root, std::string(layout::kEtcDir) + "/" + name);
}

std::string write_crl_file(const Context& ctx, const CrlFile& f) {
  if (f.name.empty() || f.name.find('/') != std::string::npos || f.name[0] == '.')
    throw Error(Code::kIoError, "bad stunnel CRL file name '" + f.name + "'");
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd dir = fs::open_dir(root.get(), layout::kStunnelCrlDir, true);
  auto existing = fs::read_at(dir.get(), f.name, 64u << 20);  // STORE_UNSAFE for a symlink
  if (existing != f.pem) fs::write_atomic(dir.get(), f.name, f.pem, fs::kFileMode);
  return under_root(ctx.root, std::string(layout::kStunnelCrlDir) + "/" + f.name);
}

size_t remove_crl_files_except(const Context& ctx, const std::vector<std::string>& keep) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd dir = fs::open_dir(root.get(), layout::kStunnelCrlDir, false);
  if (!dir) return 0;
  size_t n = 0;
  for (const auto& e : fs::list_dir(dir.get())) {
    if (std::find(keep.begin(), keep.end(), e.name) != keep.end()) continue;
    if (e.type == S_IFDIR || e.name[0] == '.') continue;  // not ours, or a write under way
    n += fs::remove_at(dir.get(), e.name) ? 1 : 0;
  }
  return n;
}

std::string render_openssl_cnf(const Context& ctx, const std::string& module) {
  std::string config = ctx.config.source == "<built-in>"
                           ? ""
                           : std::filesystem::absolute(ctx.config.source).lexically_normal().string();
  for (const std::string* p : std::initializer_list<const std::string*>{&ctx.root, &module, &config})
    if (!safe_config_path(*p))
      throw Error(Code::kConfigInvalid, "'" + *p + "' cannot be written into openssl.cnf (#, $, \\, \" or a newline)");
  std::ostringstream os;
  os << "# Written by `ptrust stunnel`: start stunnel with OPENSSL_CONF pointing here.\n"
        "# `default` is activated explicitly: loading any provider disables the implicit one.\n"
        "openssl_conf = openssl_init\n\n[openssl_init]\nproviders = provider_sect\n\n"
        "[provider_sect]\ndefault = default_sect\nptrust = ptrust_sect\n\n"
        "[default_sect]\nactivate = 1\n\n[ptrust_sect]\n";
  os << "module = " << module << "\n";
  os << "root = " << ctx.root << "\n";
  if (!config.empty()) os << "config = " << config << "\n";
  os << "activate = 1\n";
  return os.str();
}

}  // namespace ptrust::stunnel
