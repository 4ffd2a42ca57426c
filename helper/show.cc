// Finding certificates by what people have (a UUID or its prefix, a fingerprint, the file that
// was installed) and `ptrust show` / `ptrust crl show`.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iostream>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/cert.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/layout.h"
#include "core/selection.h"
#include "core/store.h"
#include "core/x509.h"
#include "helper/cli.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

std::string lower_hex(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != ':') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string describe(const CertRecord& r) {
  std::string ps;
  for (const auto& p : r.purposes) ps += (ps.empty() ? "" : ",") + p;
  return r.uuid + " (" + std::string(to_string(r.type)) + ", " + (ps.empty() ? "general" : ps) + ", " + r.subject + ")";
}

}  // namespace

const CertRecord& select_certificate(const Database& db, const std::string& sel) {
  std::vector<const CertRecord*> found;
  std::string how;
  std::string hex = lower_hex(sel);
  if (valid_uuid(sel)) {
    how = "UUID";
    if (const CertRecord* r = db.find(sel)) found.push_back(r);
  } else if (hex.size() == 64 && is_hex(hex)) {
    how = "SHA-256 fingerprint";
    for (const auto& r : db.certs)
      if (lower_hex(r.sha256) == hex) found.push_back(&r);
  } else if (sel.size() >= 8 && sel.size() < 36 && sel.find_first_not_of("0123456789abcdef-") == std::string::npos) {
    how = "UUID prefix";
    for (const auto& r : db.certs)
      if (r.uuid.rfind(sel, 0) == 0) found.push_back(&r);
  } else {
    struct stat st;
    if (::stat(sel.c_str(), &st) != 0)
      throw Error(Code::kTrustedCertificateNotFound,
                  "'" + sel + "' is neither a UUID, a UUID prefix of 8 or more characters, a SHA-256 fingerprint "
                              "nor a certificate file");
    how = "certificate file";
    Certificate c = Certificate::parse(read_input_file(sel));
    std::string fp = lower_hex(x509::fingerprint(c.get(), x509::sha256()));
    for (const auto& r : db.certs)
      if (lower_hex(r.sha256) == fp) found.push_back(&r);
  }
  if (found.empty()) throw Error(Code::kTrustedCertificateNotFound, "no trusted certificate matches " + how + " '" + sel + "'");
  if (found.size() > 1) {
    std::string list;
    for (const auto* r : found) list += (list.empty() ? "" : "; ") + describe(*r);
    throw Error(Code::kCertificateSelectorAmbiguous,
                how + " '" + sel + "' matches " + std::to_string(found.size()) + " certificates: " + list +
                    "; give the UUID");
  }
  return *found[0];
}

namespace {

std::string ext_text(X509* x, int nid) {
  int i = X509_get_ext_by_NID(x, nid, -1);
  if (i < 0) return "";
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || !X509V3_EXT_print(b.get(), X509_get_ext(x, i), 0, 0)) return "";
  char* p = nullptr;
  long n = BIO_get_mem_data(b.get(), &p);
  std::string s(p, static_cast<size_t>(n));
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}

long days_left(std::int64_t not_after, std::time_t now) {
  return static_cast<long>((not_after - static_cast<std::int64_t>(now)) / 86400);
}

int show_cmd(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  Database db = store.database();
  const CertRecord& r = select_certificate(db, vm["selector"].as<std::string>());
  Certificate cert = Certificate::parse(r.pem);
  X509* x = cert.get();
  std::time_t now = std::time(nullptr);
  std::vector<std::string> files;
  for (const auto& k : r.stores()) {
    std::string root = store.context().root == "/" ? "" : store.context().root;
    files.push_back(root + "/" + std::string(layout::kTrustedDir) + "/" + layout::store_dir(k) + "/" + layout::cert_file(r.uuid));
    files.push_back(root + "/" + std::string(layout::kTrustedDir) + "/" + layout::bundle_file(k));
  }
  std::string sans = ext_text(x, NID_subject_alt_name), bc = ext_text(x, NID_basic_constraints),
              ku = ext_text(x, NID_key_usage), eku = ext_text(x, NID_ext_key_usage);
  if (c.json) {
    json::object o = record_json(r);
    o["days_left"] = days_left(r.not_after, now);
    o["subject_alt_names"] = sans;
    o["basic_constraints"] = bc;
    o["key_usage"] = ku;
    o["extended_key_usage"] = eku;
    json::array f;
    for (const auto& s : files) f.emplace_back(s);
    o["files"] = std::move(f);
    print_json(o);
    return 0;
  }
  std::string ps;
  for (const auto& p : r.purposes) ps += (ps.empty() ? "" : ",") + p;
  std::cout << "uuid:        " << r.uuid << "\n"
            << "type:        " << to_string(r.type) << "\n"
            << "purposes:    " << (ps.empty() ? "general" : ps) << "\n"
            << "subject:     " << r.subject << "\n"
            << "issuer:      " << r.issuer << "\n"
            << "serial:      " << r.serial << "\n"
            << "valid:       " << x509::format_time(r.not_before) << " to " << x509::format_time(r.not_after) << " ("
            << days_left(r.not_after, now) << " days left)\n"
            << "key:         " << r.key_type << " " << r.key_bits << " bits\n"
            << "sha256:      " << r.sha256 << "\n"
            << "sha1:        " << r.sha1 << "\n";
  if (!bc.empty()) std::cout << "constraints: " << bc << "\n";
  if (!ku.empty()) std::cout << "key usage:   " << ku << "\n";
  if (!eku.empty()) std::cout << "ext. usage:  " << eku << "\n";
  if (!sans.empty()) std::cout << "alt names:   " << sans << "\n";
  for (const auto& f : files) std::cout << "file:        " << f << "\n";
  return 0;
}

int crl_show_cmd(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  Database db = store.database();
  std::string name = vm["name"].as<std::string>();
  auto it = std::find_if(db.crls.begin(), db.crls.end(), [&](const CrlRecord& r) { return r.name == name; });
  if (it == db.crls.end()) throw Error(Code::kCrlDoesNotExist, "no CRL named '" + name + "'");
  auto crl = parse_crl(it->pem);
  if (!crl) throw Error(Code::kDatabaseInvalid, "the CRL '" + name + "' in the database does not parse");
  std::string number = x509::crl_number(crl.get());
  bool delta = X509_CRL_get_ext_by_NID(crl.get(), NID_delta_crl, -1) >= 0;
  int entries = std::max(0, sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get())));  // -1: none listed
  std::vector<std::string> applies;
  if (it->purposes.empty()) {
    for (const auto& [p, _] : store.context().config.purposes) applies.push_back(p);
    applies.push_back(std::string(kGeneral));
  } else {
    applies = it->purposes;
  }
  std::string list;
  for (const auto& p : applies) list += (list.empty() ? "" : ",") + p;
  if (c.json) {
    json::object o = crl_json(*it);
    o["crl_number"] = number.empty() ? json::value(nullptr) : json::value(number);
    o["entries"] = entries;
    o["delta"] = delta;
    o["delta_base"] = it->delta_base.empty() ? json::value(nullptr) : json::value(it->delta_base);
    // The SHA-256 of the --issuer certificate kept with it (never trusted).
    o["issuer_certificate"] =
        it->issuer_pem.empty() ? json::value(nullptr) : json::value(Certificate::parse(it->issuer_pem).info().sha256);
    json::array a;
    for (const auto& p : applies) a.emplace_back(p);
    o["applies_to"] = std::move(a);
    print_json(o);
    return 0;
  }
  std::cout << "name:        " << it->name << "\n"
            << "issuer:      " << it->issuer << "\n"
            << "crlNumber:   " << (number.empty() ? "none" : number)
            << (delta ? " (delta CRL of base crlNumber " + x509::crl_delta_base(crl.get()) + ")" : "") << "\n"
            << "thisUpdate:  " << x509::format_time(it->last_update) << "\n"
            << "nextUpdate:  " << (it->next_update ? x509::format_time(it->next_update) : "none")
            << (it->next_update && it->next_update < std::time(nullptr) ? " (PASSED)" : "") << "\n"
            << "entries:     " << entries << "\n"
            << "scope:       " << (it->purposes.empty() ? "every purpose" : list) << "\n"
            << "applies to:  " << list << " (unless a purpose's crl-policy is off or it is pinned)\n"
            << "sha256:      " << it->sha256 << "\n";
  if (!it->issuer_pem.empty())
    std::cout << "signer:      " << Certificate::parse(it->issuer_pem).info().sha256 << " (given with --issuer; not trusted)\n";
  return 0;
}

}  // namespace

void add_show_commands(std::vector<Command>& out) {
  out.push_back({"show", "SELECTOR",
                 "show one trusted certificate: SELECTOR is its UUID, a UUID prefix (8+), its SHA-256 or the file "
                 "installed",
                 true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("selector", po::value<std::string>()->required(),
                                   "UUID, UUID prefix, SHA-256 fingerprint or certificate file");
                   p.add("selector", 1);
                 },
                 show_cmd});
  out.push_back({"crl show", "NAME", "show one CRL: issuer, number, updates, entries, scope", true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("name", po::value<std::string>()->required(), "CRL name (as `crl list` shows)");
                   p.add("name", 1);
                 },
                 crl_show_cmd});
}

}  // namespace ptrust::cli
