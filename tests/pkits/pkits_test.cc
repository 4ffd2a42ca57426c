// NIST PKITS (Public Key Interoperability Test Suite, 2011 data), sections 4.1-4.7 and
// 4.13-4.16 (no policy processing), through the real `ptrust` command: each case gets a fresh
// root with the suite's trust anchor installed as a CA for purpose `pkits` (crl-policy require,
// crl-scope chain), its CRLs installed with `crl install`, and `ptrust verify` on the end
// entity followed by the case's other certificates. The same inputs go to plain OpenSSL 3.0
// (`openssl verify -crl_check_all -extended_crl -use_deltas`). The target: every case OpenSSL
// decides as the suite expects, ptrust decides the same way. Each section prints its figures.
//
// tests/pkits/cases.tsv lists the cases (see tests/pkits/README.md for where they come from).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/x509.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {
namespace {

const std::string kData = PTRUST_PKITS_DIR;
constexpr const char* kAt = "2020-06-01";       // inside every PKITS validity period
constexpr const char* kAtEpoch = "1590969600";  // the same instant for openssl -attime

struct Case {
  std::string id, ee;
  bool valid = false;
  std::vector<std::string> others, crls;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  if (s == "-") return out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

std::vector<Case> load_cases() {
  std::vector<Case> cases;
  std::ifstream in(kData + "/cases.tsv");
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = split(line, '\t');
    if (f.size() != 5) continue;
    cases.push_back({f[0], f[2], f[1] == "valid", split(f[3], ','), split(f[4], ',')});
  }
  return cases;
}

std::string section_of(const std::string& id) { return id.substr(0, id.find('.', 2)); }

// The suite's DER files as PEM, through the helpers every test uses.
std::string cert_pem(const std::string& file) {
  std::string der = read_file(kData + "/data/" + file);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ossl::X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) throw std::runtime_error("not a certificate: " + file);
  return x509::pem(x.get());
}

std::string crl_pem_of(const std::string& file) {
  std::string der = read_file(kData + "/data/" + file);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ossl::X509CrlPtr c(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!c) throw std::runtime_error("not a CRL: " + file);
  return crl_pem(c.get());
}

struct Outcome {
  bool ptrust_valid = false, openssl_valid = false;
  std::string detail;  // ptrust's verdict line and any refused CRL install
};

Outcome run_case(const Case& c) {
  TempDir root, in;
  std::filesystem::create_directories(root / "etc/ptrust");
  write_file(root / "etc/ptrust/ptrust.yaml", "purposes:\n  pkits:\n    crl-policy: require\n    crl-scope: chain\n");
  write_file(in / "anchor.pem", cert_pem("TrustAnchorRootCertificate.crt"));
  std::string others;
  for (const auto& o : c.others) others += cert_pem(o);
  write_file(in / "chain.pem", cert_pem(c.ee) + others);
  write_file(in / "others.pem", others);

  Outcome out;
  RunResult inst = ptrust(root.path(), {"install", in / "anchor.pem", "--ca", "--purpose", "pkits"});
  if (inst.status != 0) throw std::runtime_error("installing the PKITS trust anchor failed: " + inst.err);
  std::vector<std::string> crls{"TrustAnchorRootCRL.crl"};
  crls.insert(crls.end(), c.crls.begin(), c.crls.end());
  std::string all_crls;
  for (const auto& crl : crls) {
    all_crls += crl_pem_of(crl);
    // DER as published; named after the file, since several PKITS CRLs share an issuer CN.
    RunResult r = ptrust(root.path(), {"crl", "install", kData + "/data/" + crl, "--name", crl, "--purpose", "pkits"});
    if (r.status != 0) out.detail += " [crl install " + crl + " refused: " + r.err.substr(0, r.err.find('\n')) + "]";
  }
  write_file(in / "crls.pem", all_crls);

  RunResult v = ptrust(root.path(), {"verify", "--purpose", "pkits", "--at", kAt, in / "chain.pem"});
  out.ptrust_valid = v.status == 0;
  out.detail = v.out.substr(0, v.out.find('\n')) + out.detail;

  std::vector<std::string> ossl{"openssl", "verify", "-CAfile", in / "anchor.pem", "-CRLfile", in / "crls.pem",
                                "-crl_check_all", "-extended_crl", "-use_deltas", "-attime", kAtEpoch};
  if (!c.others.empty()) ossl.insert(ossl.end(), {"-untrusted", in / "others.pem"});
  ossl.push_back(in / "chain.pem");
  out.openssl_valid = run(ossl).status == 0;
  return out;
}

class Pkits : public ::testing::TestWithParam<std::string> {};

TEST_P(Pkits, PtrustDecidesEveryCaseThatOpenSslDecides) {
  static const std::vector<Case> cases = load_cases();
  ASSERT_EQ(cases.size(), 161u) << "tests/pkits/cases.tsv";
  int n = 0, ptrust_right = 0, openssl_right = 0;
  std::string both_wrong;
  for (const Case& c : cases) {
    if (section_of(c.id) != GetParam()) continue;
    ++n;
    Outcome o = run_case(c);
    const bool pr = o.ptrust_valid == c.valid, orr = o.openssl_valid == c.valid;
    ptrust_right += pr;
    openssl_right += orr;
    if (!pr && !orr) both_wrong += " " + c.id;
    // Where OpenSSL gets the suite's answer, ptrust must too; and ptrust never accepts a path
    // the suite rejects, whatever OpenSSL does.
    if (orr) {
      EXPECT_TRUE(pr) << c.id << " " << c.ee << " expected " << (c.valid ? "valid" : "invalid") << ": " << o.detail;
    }
    if (!c.valid) {
      EXPECT_FALSE(o.ptrust_valid) << c.id << " accepted: " << o.detail;
    }
  }
  ASSERT_GT(n, 0);
  std::printf("PKITS %s: ptrust %d/%d as expected, openssl 3.0 %d/%d; both differ from the suite on:%s\n",
              GetParam().c_str(), ptrust_right, n, openssl_right, n, both_wrong.empty() ? " none" : both_wrong.c_str());
}

INSTANTIATE_TEST_SUITE_P(Sections, Pkits,
                         ::testing::Values("4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.13", "4.14", "4.15",
                                           "4.16"),
                         [](const auto& info) {
                           std::string s = "S" + info.param;
                           for (char& ch : s)
                             if (ch == '.') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace ptrust::testing
