#include "core/exchange.h"

#include <algorithm>
#include <set>

#include <boost/json.hpp>

#include "core/cert.h"
#include "core/error.h"
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

std::string export_json(const Database& in) {
  Database db = in;
  db.canonicalize();
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
  return json::serialize(doc) + "\n";
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
    for (const auto& v : o.at("trusted").as_array()) {
      const json::object& t = v.as_object();
      std::string uuid(t.at("uuid").as_string());
      if (!valid_uuid(uuid) || !uuids.insert(uuid).second) throw std::invalid_argument("bad or repeated uuid " + uuid);
      auto type = cert_type_from(t.at("type").as_string());
      if (!type) throw std::invalid_argument("bad type for " + uuid);
      std::int64_t installed = install_time(t, uuid);
      CertRecord r = vetted("trusted certificate " + uuid, [&] {
        return vet_trusted(Certificate::parse(std::string(t.at("pem").as_string())), *type,
                           strings_from(t.at("purposes")), cfg, installed, std::nullopt);
      });
      r.uuid = uuid;
      in.certs.push_back(std::move(r));
    }
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
  for (const auto& r : in.legacy) {
    auto it = std::find_if(out.legacy.begin(), out.legacy.end(), [&](const auto& o) { return o.name == r.name; });
    if (it == out.legacy.end()) {
      out.legacy.push_back(r);
      plan.added.push_back("legacy " + r.name);
    } else if (it->sha256 == r.sha256) {
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
    auto same_uuid = std::find_if(out.certs.begin(), out.certs.end(), [&](const auto& o) { return o.uuid == r.uuid; });
    if (same_uuid != out.certs.end()) {
      if (same_uuid->type == r.type && same_uuid->sha256 == r.sha256 && same_uuid->purposes == r.purposes) {
        same_uuid->installed_at = std::min(same_uuid->installed_at, r.installed_at);
        plan.unchanged.push_back("trusted " + r.uuid);
        continue;
      }
      throw Error(Code::kPoolJoiningHostTrustedCertificatesConflict,
                  "UUID " + r.uuid + " names different trusted certificates on the two sides");
    }
    bool present = false;
    for (const auto& o : out.certs) {
      if (o.type != r.type || o.sha256 != r.sha256) continue;
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
      out.certs.push_back(r);
      plan.added.push_back("trusted " + r.uuid);
    }
  }
  for (const auto& r : in.crls) {
    auto it = std::find_if(out.crls.begin(), out.crls.end(), [&](const auto& o) { return o.name == r.name; });
    if (it == out.crls.end()) {
      out.crls.push_back(r);
      plan.added.push_back("crl " + r.name);
    } else if (it->sha256 == r.sha256 && it->purposes == r.purposes) {
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

}  // namespace ptrust
