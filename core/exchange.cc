#include "core/exchange.h"

#include <algorithm>
#include <map>
#include <set>

#include <boost/json.hpp>

#include "core/cert.h"
#include "core/error.h"
#include "core/ossl.h"
#include "core/parallel.h"
#include "core/records.h"

namespace ptrust {

namespace json = boost::json;

namespace {

constexpr std::string_view kFormat = "ptrust-export";
constexpr int kVersion = 1;

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

bool overlaps(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  // Empty means general: it overlaps only another empty set.
  if (a.empty() || b.empty()) return a.empty() && b.empty();
  for (const auto& x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) return true;
  return false;
}

std::vector<std::string> strings_from(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& p : v.as_array()) out.emplace_back(p.as_string());
  return out;
}

// installed_at as install would stamp it: a time between 1970 and 9999.
std::int64_t install_time(const json::object& t, const std::string& what) {
  constexpr std::int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  std::int64_t v = t.at("installed_at").to_number<std::int64_t>();
  if (v < 0 || v > kMax) throw std::invalid_argument("installed_at of " + what + " is out of range");
  return v;
}

// Runs the intake checks `install` runs (records.h) on one object; a refusal names the object.
template <typename F>
auto vetted(const std::string& what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(e.code(), what + ": " + e.what());
  }
}

}  // namespace

std::string export_json(const Database& in, const Config* cfg) {
  Database db = in;
  db.canonicalize();
  json::object declared;
  if (cfg) {
    std::set<std::string> names;
    for (const auto& r : db.certs) names.insert(r.purposes.begin(), r.purposes.end());
    for (const auto& r : db.crls) names.insert(r.purposes.begin(), r.purposes.end());
    const PurposePolicy strict;
    for (const auto& n : names) {
      auto it = cfg->purposes.find(n);
      if (it == cfg->purposes.end()) continue;
      const PurposePolicy& p = it->second;
      json::object o;
      if (p.crl_policy != strict.crl_policy) o["crl-policy"] = std::string(to_string(p.crl_policy));
      if (p.crl_scope != strict.crl_scope) o["crl-scope"] = std::string(to_string(p.crl_scope));
      if (p.allow_expired_crl != strict.allow_expired_crl) o["allow-expired-crl"] = p.allow_expired_crl;
      if (p.pin_match != strict.pin_match) o["pin-match"] = std::string(to_string(p.pin_match));
      if (p.enforce_pin_validity != strict.enforce_pin_validity) o["enforce-pin-validity"] = p.enforce_pin_validity;
      if (p.report_only != strict.report_only) o["report-only"] = p.report_only;
      declared[n] = std::move(o);
    }
  }
  json::array trusted, legacy, crls;
  for (const auto& r : db.certs)
    trusted.emplace_back(json::object{{"uuid", r.uuid},
                                      {"type", std::string(to_string(r.type))},
                                      {"purposes", strings(r.purposes)},
                                      {"installed_at", r.installed_at},
                                      {"pem", r.pem}});
  for (const auto& r : db.legacy)
    legacy.emplace_back(json::object{{"name", r.name}, {"installed_at", r.installed_at}, {"pem", r.pem}});
  for (const auto& r : db.crls)
    crls.emplace_back(json::object{
        {"name", r.name}, {"purposes", strings(r.purposes)}, {"installed_at", r.installed_at}, {"pem", r.pem}});
  json::object doc{{"format", kFormat}, {"version", kVersion}, {"trusted", std::move(trusted)},
                   {"legacy", std::move(legacy)}, {"crls", std::move(crls)}};
  if (cfg) doc["purposes"] = std::move(declared);
  return json::serialize(doc) + "\n";
}

DocumentPurposes document_purposes(const std::string& text) {
  DocumentPurposes out;
  try {
    json::value doc = json::parse(text);
    const json::object& o = doc.as_object();
    for (const char* list : {"trusted", "crls"})
      if (const json::value* v = o.if_contains(list))
        for (const auto& item : v->as_array())
          if (const json::value* ps = item.as_object().if_contains("purposes"))
            for (const auto& p : ps->as_array()) out.referenced.emplace(p.as_string());
    const json::value* declared = o.if_contains("purposes");
    if (!declared || declared->as_object().empty()) return out;
    // Validated as ptrust.yaml is, by the same parser, from a YAML text built only of
    // well-formed names and plain words (nothing from the document reaches it unchecked).
    auto word = [](std::string_view s) {
      return !s.empty() && s.size() <= 32 && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz-") == std::string_view::npos;
    };
    std::string yaml = "purposes:\n";
    for (const auto& [name, policy] : declared->as_object()) {
      if (!valid_purpose_name(name) || name == kGeneral)
        throw std::invalid_argument("bad purpose name '" + std::string(name) + "'");
      yaml += "  " + std::string(name) + ": {";
      bool first = true;
      for (const auto& [k, v] : policy.as_object()) {
        std::string value = v.is_bool() ? (v.as_bool() ? "true" : "false") : std::string(v.as_string());
        if (!word(k) || !word(value)) throw std::invalid_argument("bad setting of purpose '" + std::string(name) + "'");
        yaml += (first ? " " : ", ") + std::string(k) + ": " + value;
        first = false;
      }
      yaml += " }\n";
    }
    Config cfg = parse_config(yaml, "the document's purposes");
    out.declared = cfg.purposes;
  } catch (const Error& e) {
    throw Error(Code::kImportInvalid, std::string("malformed purpose declarations: ") + e.what());
  } catch (const std::exception& e) {
    throw Error(Code::kImportInvalid, std::string("malformed export document: ") + e.what());
  }
  return out;
}

Incoming parse_export(const std::string& text, const Config& cfg) {
  json::value doc;
  try {
    doc = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(Code::kImportInvalid, std::string("not a JSON document (") + e.what() + ")");
  }
  Incoming in;
  std::set<std::string> uuids, legacy_names, crl_names;
  try {
    const json::object& o = doc.as_object();
    if (o.at("format").as_string() != kFormat) throw std::invalid_argument("not a ptrust export document");
    if (o.at("version").to_number<int>() != kVersion)
      throw std::invalid_argument("unsupported version " + json::serialize(o.at("version")));
    // The document's shape first, then each certificate's intake checks (a full decode: most
    // of an import's time) on every core.
    struct Trusted {
      std::string uuid;
      CertType type;
      std::int64_t installed;
      std::string_view pem;
      std::vector<std::string> purposes;
    };
    std::vector<Trusted> trusted;
    for (const auto& v : o.at("trusted").as_array()) {
      const json::object& t = v.as_object();
      std::string uuid(t.at("uuid").as_string());
      if (!valid_uuid(uuid) || !uuids.insert(uuid).second) throw std::invalid_argument("bad or repeated uuid " + uuid);
      auto type = cert_type_from(t.at("type").as_string());
      if (!type) throw std::invalid_argument("bad type for " + uuid);
      std::int64_t installed = install_time(t, uuid);
      trusted.push_back({std::move(uuid), *type, installed, t.at("pem").as_string(), strings_from(t.at("purposes"))});
    }
    in.certs.resize(trusted.size());
    // On several threads, each decodes in a library context of its own: in 3.0 the threads
    // of one context wait on each other for its decoder lookups (2 threads at 10,000 CAs: 0.7x
    // the decode time of a shared context). A context costs ~1 ms to make: one thread uses the
    // default one. Each is configured as the default one (decoding_context), so a key decodes
    // as `install` decodes it. Every certificate (and its key) is freed before its context.
    struct Decoder {
      ossl::LibCtxPtr ctx;
      bool tried = false;  // made on first use; null when it cannot be: the default context
    };
    const bool own_contexts = parallel_threads(trusted.size()) > 1;
    parallel_for_with<Decoder>(trusted.size(), [&](Decoder& d, size_t i) {
      if (own_contexts && !d.tried) {
        d.ctx = Certificate::decoding_context();
        d.tried = true;
      }
      Trusted& t = trusted[i];
      in.certs[i] = vetted("trusted certificate " + t.uuid, [&] {
        return vet_trusted(Certificate::parse(t.pem, d.ctx.get()), t.type, std::move(t.purposes), cfg, t.installed,
                           std::nullopt);
      });
      in.certs[i].uuid = std::move(t.uuid);
    });
    for (const auto& v : o.at("legacy").as_array()) {
      const json::object& t = v.as_object();
      std::string name(t.at("name").as_string());
      if (!layout::valid_legacy_name(name)) throw std::invalid_argument("invalid legacy CA name '" + name + "'");
      if (!legacy_names.insert(name).second) throw std::invalid_argument("repeated legacy name " + name);
      std::int64_t installed = install_time(t, name);
      in.legacy.push_back(vetted("legacy CA " + name, [&] {
        return vet_legacy(name, Certificate::parse(std::string(t.at("pem").as_string())), installed, std::nullopt);
      }));
    }
    for (const auto& v : o.at("crls").as_array()) {
      const json::object& t = v.as_object();
      std::string name(t.at("name").as_string());
      if (!layout::valid_file_name(name)) throw std::invalid_argument("invalid CRL name '" + name + "'");
      if (!crl_names.insert(name).second) throw std::invalid_argument("repeated CRL name " + name);
      std::int64_t installed = install_time(t, name);
      in.crls.push_back(vetted("CRL " + name, [&] {
        return vet_crl(std::string(t.at("pem").as_string()), name, strings_from(t.at("purposes")), cfg, installed);
      }));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Code::kImportInvalid, std::string("malformed export document: ") + e.what());
  }
  return in;
}

Database merge_import(const Database& local, const Incoming& in, ImportPlan& plan) {
  Database out = local;
  // Indexes by merge key (positions in `out`, which only grows): a merge of N records into M
  // costs O((N + M) log), not a scan of the whole list per record.
  std::map<std::string, size_t> legacy_at, crl_at, uuid_at;
  std::map<std::pair<CertType, std::string>, std::vector<size_t>> by_digest;
  for (size_t i = 0; i < out.legacy.size(); ++i) legacy_at.emplace(out.legacy[i].name, i);
  for (size_t i = 0; i < out.crls.size(); ++i) crl_at.emplace(out.crls[i].name, i);
  for (size_t i = 0; i < out.certs.size(); ++i) {
    uuid_at.emplace(out.certs[i].uuid, i);
    by_digest[{out.certs[i].type, out.certs[i].sha256}].push_back(i);
  }
  for (const auto& r : in.legacy) {
    auto at = legacy_at.find(r.name);
    if (at == legacy_at.end()) {
      legacy_at.emplace(r.name, out.legacy.size());
      out.legacy.push_back(r);
      plan.added.push_back("legacy " + r.name);
    } else if (auto* it = &out.legacy[at->second]; it->sha256 == r.sha256) {
      // The same CA installed on both sides: keep the earlier install time, so that both
      // sides converge on the same record.
      it->installed_at = std::min(it->installed_at, r.installed_at);
      plan.unchanged.push_back("legacy " + r.name);
    } else {
      throw Error(Code::kPoolJoiningHostCaCertificatesConflict,
                  "legacy CA '" + r.name + "' exists on both sides with different certificates");
    }
  }
  for (const auto& r : in.certs) {
    if (auto at = uuid_at.find(r.uuid); at != uuid_at.end()) {
      CertRecord* same_uuid = &out.certs[at->second];
      if (same_uuid->type == r.type && same_uuid->sha256 == r.sha256 && same_uuid->purposes == r.purposes) {
        same_uuid->installed_at = std::min(same_uuid->installed_at, r.installed_at);
        plan.unchanged.push_back("trusted " + r.uuid);
        continue;
      }
      throw Error(Code::kPoolJoiningHostTrustedCertificatesConflict,
                  "UUID " + r.uuid + " names different trusted certificates on the two sides");
    }
    bool present = false;
    auto& alike = by_digest[{r.type, r.sha256}];
    for (size_t i : alike) {
      const CertRecord& o = out.certs[i];
      if (o.purposes == r.purposes) {
        present = true;
        break;
      }
      if (overlaps(o.purposes, r.purposes))
        throw Error(Code::kPoolJoiningHostTrustedCertificatesConflict,
                    "certificate " + r.sha256.substr(0, 23) + "... is trusted as " + std::string(to_string(r.type)) +
                        " for overlapping but different purposes on the two sides (" + o.uuid + " vs " + r.uuid + ")");
    }
    if (present) {
      plan.unchanged.push_back("trusted " + r.uuid);
    } else {
      uuid_at.emplace(r.uuid, out.certs.size());
      alike.push_back(out.certs.size());
      out.certs.push_back(r);
      plan.added.push_back("trusted " + r.uuid);
    }
  }
  for (const auto& r : in.crls) {
    auto at = crl_at.find(r.name);
    if (at == crl_at.end()) {
      crl_at.emplace(r.name, out.crls.size());
      out.crls.push_back(r);
      plan.added.push_back("crl " + r.name);
    } else if (auto* it = &out.crls[at->second]; it->sha256 == r.sha256 && it->purposes == r.purposes) {
      it->installed_at = std::min(it->installed_at, r.installed_at);
      plan.unchanged.push_back("crl " + r.name);
    } else {
      throw Error(Code::kPoolJoiningHostCrlsConflict, "CRL '" + r.name + "' exists on both sides with different content");
    }
  }
  for (const auto& r : in.crls) check_crl_signature(out, r);
  out.canonicalize();
  return out;
}

Database replace_import(const Database& local, const Incoming& in, ImportPlan& plan) {
  Database base = local;
  base.certs.clear();
  base.legacy.clear();
  base.crls.clear();
  ImportPlan into_empty;
  Database out = merge_import(base, in, into_empty);  // the document's own conflicts and CRL signatures
  // Keys that say what an object is and what it is trusted for: a record whose key is on one
  // side only was added or removed.
  auto keys = [](const Database& db) {
    std::set<std::string> k;
    for (const auto& r : db.certs) {
      std::string p;
      for (const auto& x : r.purposes) p += x + ",";
      k.insert("trusted " + r.uuid + "\t" + r.sha256 + "\t" + std::string(to_string(r.type)) + "\t" + p);
    }
    for (const auto& r : db.legacy) k.insert("legacy " + r.name + "\t" + r.sha256);
    for (const auto& r : db.crls) {
      std::string p;
      for (const auto& x : r.purposes) p += x + ",";
      k.insert("crl " + r.name + "\t" + r.sha256 + "\t" + p);
    }
    return k;
  };
  auto shown = [](const std::string& key) { return key.substr(0, key.find('\t')); };
  std::set<std::string> before = keys(local), after = keys(out);
  for (const auto& k : after) (before.count(k) ? plan.unchanged : plan.added).push_back(shown(k));
  for (const auto& k : before)
    if (!after.count(k)) plan.removed.push_back(shown(k));
  return out;
}

}  // namespace ptrust
