// The hook's decisions, as a table of cases run as real in-process TLS handshakes (TLS 1.2
// and 1.3; RSA, ECDSA and Ed25519 chains). Each case also runs offline through
// ptrust_verify_chain, which must reach the same verdict (one decision function).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>

#include "tests/hook/hook_util.h"

namespace ptrust::testing {
namespace {

constexpr long kDay = 24 * 3600;

enum class Served { kGood, kOther, kExpired, kCnOnly };

struct Pki {
  Chain a, other;
  Issued expired;    // issued by a.inter, expired yesterday
  Issued same_key;   // self-signed, a.leaf's key: an SPKI pin of a.leaf
  Issued cn_only;    // issued by a.inter, CN server.test and no subjectAltName
};

const Pki& pki(KeyKind k) {
  static std::map<KeyKind, std::unique_ptr<Pki>> cache;  // keygen once per binary
  auto& p = cache[k];
  if (!p) {
    p = std::make_unique<Pki>();
    p->a = make_chain(k, "A");
    p->other = make_chain(k, "B");
    CertSpec e;
    e.cn = "server.test";
    e.dns = {"server.test"};
    e.not_before = -10 * kDay;
    e.not_after = -kDay;
    p->expired = issue(e, p->a.inter, k);
    CertSpec n;
    n.cn = "server.test";
    p->cn_only = issue(n, p->a.inter, k);
    CertSpec s;
    s.cn = "server.test pin";
    EVP_PKEY_up_ref(p->a.leaf.key.get());
    p->same_key = issue_with_key(s, p->a.leaf, ossl::PkeyPtr(p->a.leaf.key.get()));
  }
  return *p;
}

using Setup = std::function<void(Root&, const Pki&)>;

struct Case {
  const char* name;
  const char* purpose;
  Setup setup;
  ptrust_reason want;
  ptrust_mode mode;
  Served served = Served::kGood;
  const char* host = "server.test";
  const char* ip = "";
};

Setup ca(const char* purpose, bool other = false) {
  return [=](Root& r, const Pki& p) {
    r.install((other ? p.other : p.a).root.cert.get(), CertType::kCa, {purpose});
  };
}
Setup general(bool other = false) {
  return [=](Root& r, const Pki& p) { r.install((other ? p.other : p.a).root.cert.get(), CertType::kCa, {}); };
}
Setup both(Setup x, Setup y) {
  return [=](Root& r, const Pki& p) {
    x(r, p);
    y(r, p);
  };
}
Setup pinned(const char* purpose, const Issued Pki::*which) {
  return [=](Root& r, const Pki& p) { r.install((p.*which).cert.get(), CertType::kPinned, {purpose}); };
}
Setup pin_other_leaf(const char* purpose) {
  return [=](Root& r, const Pki& p) { r.install(p.other.leaf.cert.get(), CertType::kPinned, {purpose}); };
}
Setup pin_a_leaf(const char* purpose) {
  return [=](Root& r, const Pki& p) { r.install(p.a.leaf.cert.get(), CertType::kPinned, {purpose}); };
}
// `install` refuses expired certificates, so the bundle is written as the helper would.
Setup expired_pin(const char* purpose) {
  return [=](Root& r, const Pki& p) { r.write_bundle(std::string("pinned-bundle-") + purpose + ".pem", p.expired.pem()); };
}

// CRL sets on top of the A chain trusted for the purpose.
enum CrlSet { kLeafRevoked, kInterRevoked, kNoCrl, kInterCrlOnly, kExpiredCrl, kExpiredCrlRevoking, kCorruptCrl };

Setup crls(const char* purpose, CrlSet set) {
  return [=](Root& r, const Pki& p) {
    r.install(p.a.root.cert.get(), CertType::kCa, {purpose});
    switch (set) {
      case kLeafRevoked:
        r.write_crl("inter.crl", make_crl(p.a.inter, {p.a.leaf.cert.get()}).get());
        r.write_crl("root.crl", make_crl(p.a.root, {}).get());
        break;
      case kInterRevoked:
        r.write_crl("inter.crl", make_crl(p.a.inter, {}).get());
        r.write_crl("root.crl", make_crl(p.a.root, {p.a.inter.cert.get()}).get());
        break;
      case kNoCrl: break;
      case kInterCrlOnly: r.write_crl("inter.crl", make_crl(p.a.inter, {}).get()); break;
      case kExpiredCrl:
        r.write_crl("inter.crl", make_crl(p.a.inter, {}, -10 * kDay, -kDay).get());
        r.write_crl("root.crl", make_crl(p.a.root, {}).get());
        break;
      case kExpiredCrlRevoking:
        r.write_crl("inter.crl", make_crl(p.a.inter, {p.a.leaf.cert.get()}, -10 * kDay, -kDay).get());
        r.write_crl("root.crl", make_crl(p.a.root, {}).get());
        break;
      case kCorruptCrl:
        std::filesystem::create_directories(r.path() + "/etc/stunnel/crls");
        write_file(r.path() + "/etc/stunnel/crls/bad.crl", "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n");
        r.bump();
        break;
    }
  };
}

Setup unreadable_bundle(const char* purpose) {
  return [=](Root& r, const Pki& p) {
    r.install(p.a.root.cert.get(), CertType::kCa, {});  // a general CA must not be used instead
    std::filesystem::create_directories(r.path() + "/etc/trusted-certs/ca-bundle-" + purpose + ".pem");
    r.bump();
  };
}

Setup corrupt_bundle(const char* purpose) {
  return [=](Root& r, const Pki& p) {
    r.install(p.a.root.cert.get(), CertType::kCa, {});
    r.write_bundle(std::string("ca-bundle-") + purpose + ".pem", "-----BEGIN CERTIFICATE-----\ngarbage\n");
  };
}

constexpr auto OK = PTRUST_REASON_OK;
constexpr auto CA = PTRUST_MODE_CA;
constexpr auto GEN = PTRUST_MODE_GENERAL;
constexpr auto PIN = PTRUST_MODE_PINNED;
constexpr auto NONE = PTRUST_MODE_NONE;

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // name, purpose, setup, reason, mode [, served, host, ip]
      {"CaAccepts", "licensing", ca("licensing"), OK, CA},
      {"CaRejectsOtherRoot", "licensing", ca("licensing", true), PTRUST_REASON_CHAIN_UNTRUSTED, CA},
      {"CaRejectsHostnameMismatch", "licensing", ca("licensing"), PTRUST_REASON_HOSTNAME_MISMATCH, CA, Served::kGood, "wrong.test"},
      {"CaAcceptsIp", "licensing", ca("licensing"), OK, CA, Served::kGood, "", "127.0.0.1"},
      {"CaRejectsIpMismatch", "licensing", ca("licensing"), PTRUST_REASON_IP_MISMATCH, CA, Served::kGood, "", "10.9.8.7"},
      {"CaAcceptsUnnamedPeer", "licensing", ca("licensing"), OK, CA, Served::kGood, ""},
      // Names are matched against subjectAltName only: a CN-only leaf never matches.
      {"CaRejectsCnOnlyLeaf", "licensing", ca("licensing"), PTRUST_REASON_HOSTNAME_MISMATCH, CA, Served::kCnOnly},
      {"GeneralRejectsCnOnlyLeaf", "licensing", general(), PTRUST_REASON_HOSTNAME_MISMATCH, GEN, Served::kCnOnly},
      {"CnOnlyLeafWithoutNameAccepted", "licensing", ca("licensing"), OK, CA, Served::kCnOnly, ""},
      {"CaRejectsExpiredLeaf", "licensing", ca("licensing"), PTRUST_REASON_CERT_EXPIRED, CA, Served::kExpired},
      {"GeneralAccepts", "licensing", general(), OK, GEN},
      {"GeneralRejectsOtherRoot", "licensing", general(true), PTRUST_REASON_CHAIN_UNTRUSTED, GEN},
      {"GeneralRejectsHostnameMismatch", "licensing", general(), PTRUST_REASON_HOSTNAME_MISMATCH, GEN, Served::kGood, "x.test"},
      {"CaBundleBeatsGeneralNoFallback", "licensing", both(general(), ca("licensing", true)), PTRUST_REASON_CHAIN_UNTRUSTED, CA},
      {"PinnedAccepts", "licensing", pin_a_leaf("licensing"), OK, PIN},
      {"PinnedSkipsHostnameCheck", "licensing", pin_a_leaf("licensing"), OK, PIN, Served::kGood, "wrong.test"},
      {"PinnedRejectsOtherLeaf", "licensing", pin_other_leaf("licensing"), PTRUST_REASON_PIN_MISMATCH, PIN},
      {"PinnedBeatsCaNoFallback", "licensing", both(ca("licensing"), pin_other_leaf("licensing")), PTRUST_REASON_PIN_MISMATCH, PIN},
      {"PinnedRejectsExpiredPin", "licensing", expired_pin("licensing"), PTRUST_REASON_CERT_EXPIRED, PIN, Served::kExpired},
      {"PinnedRelaxedAcceptsExpiredPin", "relaxed", expired_pin("relaxed"), OK, PIN, Served::kExpired},
      {"SpkiPinAcceptsSameKey", "spki", pinned("spki", &Pki::same_key), OK, PIN},
      {"CertificatePinRejectsSameKeyOtherCert", "licensing", pinned("licensing", &Pki::same_key), PTRUST_REASON_PIN_MISMATCH, PIN},
      {"SpkiPinRejectsOtherKey", "spki", pin_other_leaf("spki"), PTRUST_REASON_PIN_MISMATCH, PIN},
      {"NoneRejects", "licensing", [](Root&, const Pki&) {}, PTRUST_REASON_NO_TRUST_FOR_PURPOSE, NONE},
      {"OtherPurposeCaDoesNotServe", "licensing", ca("spki"), PTRUST_REASON_NO_TRUST_FOR_PURPOSE, NONE},
      // The selection itself failed (the bundle is not a file): no mode was chosen.
      {"UnreadableBundleFailsNoFallback", "licensing", unreadable_bundle("licensing"), PTRUST_REASON_STORE_UNREADABLE, NONE},
      {"CorruptBundleFailsNoFallback", "licensing", corrupt_bundle("licensing"), PTRUST_REASON_STORE_CORRUPT, CA},
      {"ReportOnlyProceedsOnFailure", "report", ca("report", true), PTRUST_REASON_CHAIN_UNTRUSTED, CA},
      {"ReportOnlyAccepts", "report", ca("report"), OK, CA},
      // Revoked leaf under each policy and scope.
      {"RevokedLeafOffLeaf", "off-leaf", crls("off-leaf", kLeafRevoked), OK, CA},
      {"RevokedLeafOffChain", "off-chain", crls("off-chain", kLeafRevoked), OK, CA},
      {"RevokedLeafIfPresentLeaf", "ifp-leaf", crls("ifp-leaf", kLeafRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      {"RevokedLeafIfPresentChain", "ifp-chain", crls("ifp-chain", kLeafRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      {"RevokedLeafRequireLeaf", "req-leaf", crls("req-leaf", kLeafRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      {"RevokedLeafRequireChain", "req-chain", crls("req-chain", kLeafRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      // Revoked intermediate: only chain scope looks at it.
      {"RevokedInterOffChain", "off-chain", crls("off-chain", kInterRevoked), OK, CA},
      {"RevokedInterIfPresentLeaf", "ifp-leaf", crls("ifp-leaf", kInterRevoked), OK, CA},
      {"RevokedInterIfPresentChain", "ifp-chain", crls("ifp-chain", kInterRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      {"RevokedInterRequireLeaf", "req-leaf", crls("req-leaf", kInterRevoked), OK, CA},
      {"RevokedInterRequireChain", "req-chain", crls("req-chain", kInterRevoked), PTRUST_REASON_CERT_REVOKED, CA},
      // Missing CRLs.
      {"NoCrlOff", "off-chain", crls("off-chain", kNoCrl), OK, CA},
      {"NoCrlIfPresentChain", "ifp-chain", crls("ifp-chain", kNoCrl), OK, CA},
      {"NoCrlRequireLeaf", "req-leaf", crls("req-leaf", kNoCrl), PTRUST_REASON_CRL_MISSING, CA},
      {"NoCrlRequireChain", "req-chain", crls("req-chain", kNoCrl), PTRUST_REASON_CRL_MISSING, CA},
      {"InterCrlOnlyRequireLeaf", "req-leaf", crls("req-leaf", kInterCrlOnly), OK, CA},
      {"InterCrlOnlyRequireChain", "req-chain", crls("req-chain", kInterCrlOnly), PTRUST_REASON_CRL_MISSING, CA},
      {"InterCrlOnlyIfPresentChain", "ifp-chain", crls("ifp-chain", kInterCrlOnly), OK, CA},
      // Expired CRLs.
      {"ExpiredCrlFails", "licensing", crls("licensing", kExpiredCrl), PTRUST_REASON_CRL_EXPIRED, CA},
      {"ExpiredCrlRelaxedAccepts", "expired-ok", crls("expired-ok", kExpiredCrl), OK, CA},
      {"ExpiredCrlRelaxedStillRevokes", "expired-ok", crls("expired-ok", kExpiredCrlRevoking), PTRUST_REASON_CERT_REVOKED, CA},
      {"ExpiredCrlIgnoredWhenOff", "off-chain", crls("off-chain", kExpiredCrl), OK, CA},
      {"CorruptCrlFailsClosed", "licensing", crls("licensing", kCorruptCrl), PTRUST_REASON_STORE_CORRUPT, CA},
      {"CorruptCrlIgnoredWhenOff", "off-chain", crls("off-chain", kCorruptCrl), OK, CA},
  };
  return all;
}

using Param = std::tuple<KeyKind, int, size_t>;

class HookDecision : public ::testing::TestWithParam<Param> {};

TEST_P(HookDecision, HandshakeAndOfflineAgree) {
  auto [kind, version, index] = GetParam();
  const Case& c = cases()[index];
  const Pki& p = pki(kind);
  Root root;
  c.setup(root, p);

  const Issued* leaf = &p.a.leaf;
  std::vector<const Issued*> extra{&p.a.inter};
  switch (c.served) {
    case Served::kGood: break;
    case Served::kOther: leaf = &p.other.leaf; extra = {&p.other.inter}; break;
    case Served::kExpired: leaf = &p.expired; break;
    case Served::kCnOnly: leaf = &p.cn_only; break;
  }
  auto server = server_ctx(*leaf, extra, version);
  auto client = client_ctx(version);
  PTRUST_CTX* pt = root.open();
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), pt, c.purpose));

  Outcome o = handshake(client.get(), server.get(), c.host, c.ip);
  ASSERT_TRUE(o.have_result);
  EXPECT_STREQ(ptrust_reason_string(c.want), ptrust_reason_string(o.result.reason));
  EXPECT_STREQ(ptrust_mode_string(c.mode), ptrust_mode_string(o.result.mode));
  EXPECT_STREQ(c.purpose, o.result.purpose);
  bool report_only = std::string(c.purpose) == "report";
  EXPECT_EQ(c.want == OK, o.result.verified == 1);
  EXPECT_EQ(report_only ? 0 : 1, o.result.enforced);
  EXPECT_EQ(c.want == OK || report_only, o.ok) << "the handshake must stop exactly when an enforced verdict fails";
  EXPECT_EQ(c.want == OK, o.verify_result == X509_V_OK) << X509_verify_cert_error_string(o.verify_result);
  EXPECT_NE(0u, o.result.generation);

  // Same decision offline.
  ossl::X509StackPtr chain(sk_X509_new_null());
  for (const Issued* x : std::vector<const Issued*>{leaf, extra[0]}) {
    X509_up_ref(x->cert.get());
    sk_X509_push(chain.get(), x->cert.get());
  }
  PTRUST_VERIFY_OPTIONS opts{};
  opts.host = *c.host ? c.host : nullptr;
  opts.ip = *c.ip ? c.ip : nullptr;
  PTRUST_RESULT off{};
  ASSERT_EQ(1, ptrust_verify_chain(pt, c.purpose, chain.get(), &opts, &off));
  EXPECT_STREQ(ptrust_reason_string(c.want), ptrust_reason_string(off.reason));
  EXPECT_EQ(o.result.generation, off.generation);

  uint64_t counts[PTRUST_REASON_COUNT] = {};
  ASSERT_EQ(1, ptrust_ctx_get_counters(pt, c.purpose, counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(2u, counts[c.want]);
  ptrust_ctx_free(pt);
}

std::string case_name(const ::testing::TestParamInfo<Param>& info) {
  auto [kind, version, index] = info.param;
  return std::string(cases()[index].name) + "_" + key_name(kind) + "_" + (version == TLS1_3_VERSION ? "TLS13" : "TLS12");
}

INSTANTIATE_TEST_SUITE_P(Table, HookDecision,
                         ::testing::Combine(::testing::Values(KeyKind::kRsa2048, KeyKind::kP256, KeyKind::kEd25519),
                                            ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                                            ::testing::Range<size_t>(0, cases().size())),
                         case_name);

}  // namespace
}  // namespace ptrust::testing
