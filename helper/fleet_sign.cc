#include "helper/fleet_sign.h"

#include <openssl/cms.h>
#include <openssl/err.h>

#include <boost/json.hpp>
#include <charconv>
#include <set>
#include <ctime>

#include "core/cert.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/ossl.h"
#include "core/trust.h"

namespace ptrust::fleet {

namespace {

using CmsPtr = ossl::Ptr<CMS_ContentInfo, CMS_ContentInfo_free>;

[[noreturn]] void refuse(const std::string& why) {
  ERR_clear_error();
  throw Error(Code::kFleetSignatureInvalid, "the desired document's signature: " + why);
}

struct X509Stack {
  STACK_OF(X509)* s = sk_X509_new_null();
  ~X509Stack() { sk_X509_free(s); }  // the certificates are borrowed
};

std::string subject_of(X509* x) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
  return buf;
}

std::string state_file(std::string_view fleet) { return "fleet-" + std::string(fleet) + ".signed-at"; }

}  // namespace

Signed verify_signature(std::string_view doc, std::string_view sig, const std::vector<X509*>& pins) {
  if (sig.empty()) refuse("none (the fleet requires signed documents: fleet publish --signature)");
  if (sig.size() > kMaxSignature) refuse("larger than " + std::to_string(kMaxSignature >> 10) + " KiB");
  if (pins.empty()) refuse("no certificate is pinned for purpose fleet");
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(sig.size())));
  if (!cms || p != reinterpret_cast<const unsigned char*>(sig.data()) + sig.size()) refuse("not one DER CMS structure");
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) refuse("not CMS SignedData");
  // Embedded content would be verified instead of the document: only a detached signature.
  if (CMS_is_detached(cms.get()) != 1) refuse("not detached (sign with -detach)");
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (!infos || sk_CMS_SignerInfo_num(infos) != 1) refuse("not exactly one signer");
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
  // signingTime, in the signed attributes (covered by the signature).
  int at = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
  if (at < 0 || CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, at) >= 0) refuse("not exactly one signingTime");
  X509_ATTRIBUTE* attr = CMS_signed_get_attr(si, at);
  ASN1_TYPE* t = attr && X509_ATTRIBUTE_count(attr) == 1 ? X509_ATTRIBUTE_get0_type(attr, 0) : nullptr;
  if (!t || (t->type != V_ASN1_UTCTIME && t->type != V_ASN1_GENERALIZEDTIME)) refuse("signingTime is not a time");
  struct tm tm {};
  if (ASN1_TIME_to_tm(reinterpret_cast<const ASN1_TIME*>(t->value.asn1_string), &tm) != 1) refuse("signingTime is not a time");
  Signed out;
  out.signed_at = static_cast<std::int64_t>(timegm(&tm));
  if (out.signed_at <= 0) refuse("signingTime before 1970");

  X509Stack certs;
  for (X509* x : pins) sk_X509_push(certs.s, x);
  // A pass-through filter over the memory BIO: OpenSSL 3.0's CMS_verify copies a memory BIO
  // into one of its own, which it leaks when it cannot set up the content digest (a damaged
  // signature; LeakSanitizer in the fleet_fuzz smoke). Given any other BIO it reads it as is.
  ossl::BioPtr content(BIO_new(BIO_f_null()));
  BIO* mem = BIO_new_mem_buf(doc.data(), static_cast<int>(doc.size()));
  if (!content || !mem) {
    BIO_free(mem);
    throw Error(Code::kIoError, "out of memory");
  }
  BIO_push(content.get(), mem);  // freed with the chain
  // The signer among the pins only; the pin is the trust (no chain, no store).
  constexpr unsigned kFlags = CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY | CMS_NOCRL;
  if (CMS_verify(cms.get(), certs.s, nullptr, content.get(), nullptr, kFlags) != 1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_CMS && ERR_GET_REASON(e) == CMS_R_SIGNER_CERTIFICATE_NOT_FOUND)
      refuse("not made by a key pinned for purpose fleet");
    const char* reason = e ? ERR_reason_error_string(e) : nullptr;
    refuse(std::string("does not verify over this document (") + (reason ? reason : "no reason given") + ")");
  }
  STACK_OF(X509)* signers = CMS_get0_signers(cms.get());
  if (signers && sk_X509_num(signers) == 1) out.signer = subject_of(sk_X509_value(signers, 0));
  sk_X509_free(signers);
  ERR_clear_error();
  return out;
}

Signed verify_with_pins(const Context& ctx, std::string_view doc, std::string_view sig) {
  if (!ctx.config.declares(kSignaturePurpose))
    refuse("purpose fleet is not declared in this root's ptrust.yaml (declare it and pin the signer's certificate)");
  auto trust = build_trust(ctx, kSignaturePurpose, TrustStamp{});
  if (!trust) refuse("the trust of purpose fleet could not be read");
  if (trust->failure) refuse("purpose fleet cannot be trusted now (" + std::string(code_name(*trust->failure)) + ": " + trust->failure_message + ")");
  if (trust->mode != Mode::kPinned) refuse("purpose fleet is not in pinned mode (install the signer's certificate with --pinned)");
  std::vector<X509*> pins;
  for (const auto& x : trust->decoded) pins.push_back(x.get());
  return verify_signature(doc, sig, pins);
}

std::int64_t last_signed_at(const std::string& root, std::string_view fleet) {
  fs::Fd r = fs::open_root(root);
  fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, false);
  auto v = state ? fs::read_at(state.get(), state_file(fleet), 64) : std::nullopt;
  if (!v) return 0;
  std::int64_t t = 0;
  std::string_view s = *v;
  if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), t);
  if (ec != std::errc() || end != s.data() + s.size() || t < 0)
    throw Error(Code::kStoreCorrupt, std::string(layout::kStateDir) + "/" + state_file(fleet) + " is not a Unix time");
  return t;
}

void record_signed_at(const std::string& root, std::string_view fleet, std::int64_t t) {
  fs::Fd r = fs::open_root(root);
  fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, true);
  fs::write_atomic(state.get(), state_file(fleet), std::to_string(t) + "\n", 0644);
}

}  // namespace ptrust::fleet

namespace ptrust::fleet {

void refuse_cut_off(const Context& ctx, const std::vector<std::string>& keep, const std::string& doc) {
  if (keep.empty()) return;
  boost::system::error_code ec;
  boost::json::parse_options opt;
  opt.max_depth = 16;
  boost::json::value v = boost::json::parse(doc, ec, {}, opt);
  const boost::json::array* trusted = nullptr;
  if (!ec && v.is_object())
    if (const auto* t = v.as_object().if_contains("trusted"); t && t->is_array()) trusted = &t->as_array();
  if (!trusted) return;  // malformed: the validation that follows refuses it with its own code
  for (const std::string& p : keep) {
    auto now = build_trust(ctx, p, TrustStamp{});
    if (!now || now->failure || now->certs.empty()) continue;
    std::set<std::string> ders;
    for (const auto& c : now->certs) ders.insert(c.der);
    bool kept = false;
    for (const auto& o : *trusted) {
      if (!o.is_object()) continue;
      const auto* pem = o.as_object().if_contains("pem");
      const auto* ps = o.as_object().if_contains("purposes");
      if (!pem || !pem->is_string() || !ps || !ps->is_array()) continue;
      bool names = ps->as_array().empty() && now->mode == Mode::kGeneral;
      for (const auto& x : ps->as_array()) names = names || (x.is_string() && x.as_string() == p);
      if (!names) continue;
      try {
        for (const auto& c : scan_bundle(std::string_view(pem->as_string()), "the document"))
          kept = kept || ders.count(c.der);
      } catch (const Error&) {
        continue;  // refused by the validation that follows
      }
      if (kept) break;
    }
    if (!kept)
      throw Error(Code::kFleetDocumentCutsOff,
                  "the desired document trusts none of the certificates purpose " + p +
                      " trusts on this host now, which it needs to keep following the fleet (" +
                      (p == kSignaturePurpose ? std::string("to verify the next signed document") : std::string("to reach etcd")) +
                      "): not applied; publish the new trust beside the old first, and remove the old in a later document");
  }
}

}  // namespace ptrust::fleet
