// `host-cert ...` (this host's own identity) and `ca ...` (the cluster CA).
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <iostream>

#include <openssl/x509v3.h>

#include "core/cert.h"
#include "core/cluster_ca.h"
#include "core/db.h"
#include "core/error.h"
#include "core/generation.h"
#include "core/identity.h"
#include "core/layout.h"
#include "core/store.h"
#include "core/x509.h"
#include "helper/cli.h"
#include "helper/host_config.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

using Describe = std::function<void(po::options_description&, po::positional_options_description&)>;

constexpr const char* kKeyTypes = "rsa:2048, rsa:3072, ec:p256 or ed25519";

void check_key_type(const std::string& t) {
  if (t != "rsa:2048" && t != "rsa:3072" && t != "ec:p256" && t != "ed25519")
    throw Error(Code::kUsage, "--key-type must be one of " + std::string(kKeyTypes) + ", not '" + t + "'");
}

identity::Kind kind_opt(const po::variables_map& vm) {
  std::string k = vm["kind"].as<std::string>();
  auto kind = identity::kind_from(k);
  if (!kind) throw Error(Code::kUsage, "--kind must be server or internal, not '" + k + "'");
  return *kind;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string id_path(const Context& ctx, std::string_view name) {
  return (std::filesystem::path(ctx.root) / identity::kDir / name).lexically_normal().string();
}

// The host UUID: --host-uuid, else INSTALLATION_UUID of <root>/etc/xensource-inventory (xapi's).
std::string host_uuid(const po::variables_map& vm, int root) {
  if (vm.count("host-uuid")) return vm["host-uuid"].as<std::string>();
  fs::Fd etc = fs::open_dir(root, "etc", false);
  auto inv = etc ? fs::read_at(etc.get(), "xensource-inventory", 1u << 16) : std::nullopt;
  if (inv) {
    constexpr std::string_view kKey = "INSTALLATION_UUID=";
    for (size_t at = 0; at < inv->size();) {
      size_t nl = inv->find('\n', at);
      std::string line = inv->substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      at = nl == std::string::npos ? inv->size() : nl + 1;
      if (line.rfind(kKey, 0) != 0) continue;
      std::string v = line.substr(kKey.size());
      std::erase(v, '\'');
      std::erase(v, '"');
      return v;
    }
  }
  throw Error(Code::kHostUuidInvalid, "this host's UUID is not known: give --host-uuid (or INSTALLATION_UUID in "
                                      "etc/xensource-inventory)");
}

std::vector<std::string> san_of(X509* x) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      const ASN1_IA5STRING* s = g->d.dNSName;
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                         static_cast<size_t>(ASN1_STRING_length(s))));
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = g->d.iPAddress;
      char buf[64] = {};
      int af = ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6;
      if (inet_ntop(af, ASN1_STRING_get0_data(s), buf, sizeof buf)) out.push_back("IP:" + std::string(buf));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string cn_of(X509* x) {
  X509_NAME* n = X509_get_subject_name(x);
  int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
  if (i < 0) return "";
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
  if (len < 0) return "";
  std::string s(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return s;
}

json::object cert_json(X509* x) {
  CertInfo i = Certificate::from_x509(x).info();
  json::array san;
  for (const auto& s : san_of(x)) san.emplace_back(s);
  return json::object{{"subject", i.subject}, {"issuer", i.issuer}, {"serial", i.serial}, {"sha256", i.sha256},
                      {"not_before", x509::format_time(i.not_before)}, {"not_after", x509::format_time(i.not_after)},
                      {"key_type", i.key_type}, {"san", std::move(san)}};
}

// --- host-cert ----------------------------------------------------------------------------

identity::Identity fresh_identity(const std::string& cn, const std::vector<std::string>& san, const std::string& key_type,
                                  int days, std::time_t now) {
  identity::Identity id;
  id.key = identity::generate_key(key_type);
  identity::CertProfile p;
  p.cn = cn;
  p.san = san.empty() ? std::vector<std::string>{"DNS:" + cn} : san;
  p.not_before = static_cast<std::int64_t>(now) - 300;
  p.not_after = static_cast<std::int64_t>(now) + static_cast<std::int64_t>(days) * 86400;
  id.certs.push_back(identity::make_certificate(p, id.key.get(), nullptr, id.key.get()));
  return id;
}

int days_opt(const po::variables_map& vm) {
  int days = vm["days"].as<int>();
  if (days < 1 || days > 36500) throw Error(Code::kUsage, "--days must be between 1 and 36500");
  return days;
}

int host_generate(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  identity::Kind kind = kind_opt(vm);
  std::string key_type = vm["key-type"].as<std::string>();
  check_key_type(key_type);
  std::string cn = vm.count("cn") ? vm["cn"].as<std::string>() : host_name();
  if (cn.empty() || cn.size() > 64) throw Error(Code::kUsage, "--cn must be 1 to 64 characters");
  std::vector<std::string> san = vm.count("san") ? identity::parse_san(vm["san"].as<std::string>()) : std::vector<std::string>{};
  int days = days_opt(vm);
  fs::Fd root = fs::open_root(ctx.root);
  std::string name(identity::file_name(kind));
  const bool existed = identity::read_file(root.get(), name).has_value();
  identity::Identity id = fresh_identity(cn, san, key_type, days, std::time(nullptr));
  identity::write_file(root.get(), name, identity::identity_pem(id));
  std::cout << id_path(ctx, name) << "\n";
  if (kind == identity::Kind::kInternal)
    std::cerr << "ptrust: the pool trusts this host by its public certificate: `ptrust host-cert show --kind internal "
                 "--pem` prints it for `ptrust pool add HOST_UUID FILE` on each member"
              << (existed ? "; it replaced the previous one (use `host-cert refresh` to rotate without breaking the pool)"
                          : "")
              << "\n";
  return 0;
}

int host_install(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  identity::Kind kind = kind_opt(vm);
  if (kind != identity::Kind::kServer)
    throw Error(Code::kUsage, "only --kind server is installed from files; the internal identity is ptrust's own "
                              "(`host-cert generate` / `refresh --kind internal`)");
  identity::Identity id;
  id.certs = identity::parse_certificates(read_input_file(vm["cert"].as<std::string>()), "--cert");
  if (id.certs.size() != 1)
    throw Error(Code::kTrustedCertificateInvalid, "--cert must hold exactly one certificate (the chain goes in --chain)");
  id.key = identity::parse_private_key(read_input_file(vm["key"].as<std::string>()));
  if (vm.count("chain"))
    for (auto& x : identity::parse_certificates(read_input_file(vm["chain"].as<std::string>()), "--chain"))
      id.certs.push_back(std::move(x));
  identity::vet_identity(id, std::time(nullptr));
  fs::Fd root = fs::open_root(ctx.root);
  std::string name(identity::file_name(kind));
  identity::write_file(root.get(), name, identity::identity_pem(id));
  std::cout << id_path(ctx, name) << "\n";
  return 0;
}

int host_show(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  fs::Fd root = fs::open_root(ctx.root);
  std::vector<std::pair<std::string, std::string>> files;  // label, file name
  std::optional<identity::Kind> only;
  if (vm.count("kind")) only = kind_opt(vm);
  for (auto k : {identity::Kind::kServer, identity::Kind::kInternal})
    if (!only || *only == k) files.emplace_back(std::string(identity::to_string(k)), std::string(identity::file_name(k)));
  if (!only || *only == identity::Kind::kInternal) files.emplace_back("internal-staged", std::string(identity::kStagedInternal));
  if (vm["pem"].as<bool>()) {
    if (!only) throw Error(Code::kUsage, "--pem needs --kind server or --kind internal");
    const std::string& name = files.front().second;
    auto data = identity::read_file(root.get(), name);
    if (!data) throw Error(Code::kCertificateDoesNotExist, id_path(ctx, name) + " does not exist");
    identity::Identity id = identity::parse_identity(*data, id_path(ctx, name));
    std::cout << x509::pem(id.certs.front().get());  // the public certificate only, never the key
    return 0;
  }
  json::array out;
  for (const auto& [label, name] : files) {
    auto data = identity::read_file(root.get(), name);
    json::object o{{"kind", label}, {"path", id_path(ctx, name)}, {"present", data.has_value()}};
    if (data) {
      identity::Identity id = identity::parse_identity(*data, id_path(ctx, name));
      fs::Fd dir = fs::open_dir(root.get(), identity::kDir, false);
      auto st = fs::stat_at(dir.get(), name);
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st ? static_cast<unsigned>(st->st_mode & 07777) : 0u);
      o["mode"] = mode;
      o["certificate"] = cert_json(id.certs.front().get());
      o["chain"] = id.certs.size() - 1;
    }
    out.emplace_back(std::move(o));
  }
  if (c.json) {
    print_json(json::object{{"host_identity", std::move(out)}});
    return 0;
  }
  auto str = [](const json::object& o, const char* k) { return std::string(o.at(k).as_string()); };
  for (const auto& v : out) {
    const json::object& o = v.as_object();
    if (!o.at("present").as_bool()) {
      if (str(o, "kind") != "internal-staged") std::cout << str(o, "kind") << ": none (" << str(o, "path") << ")\n";
      continue;
    }
    const json::object& cert = o.at("certificate").as_object();
    std::cout << str(o, "kind") << ": " << str(o, "path") << " (mode " << str(o, "mode") << ")\n  subject="
              << str(cert, "subject") << "\n  issuer=" << str(cert, "issuer") << "\n  sha256=" << str(cert, "sha256")
              << "\n  expires=" << str(cert, "not_after") << "\n";
  }
  return 0;
}

// Rotation of the internal identity, in two steps so that peers trust the new certificate
// before this host presents it: stage (new key and certificate in xapi-pool-tls.new.pem,
// its certificate as certs-pool/<uuid>.new.pem), then --switch.
int host_refresh(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  if (kind_opt(vm) != identity::Kind::kInternal)
    throw Error(Code::kUsage, "refresh rotates --kind internal (the server identity is replaced with generate or install)");
  std::string key_type = vm["key-type"].as<std::string>();
  check_key_type(key_type);
  int days = days_opt(vm);
  fs::Fd root = fs::open_root(ctx.root);
  std::string host = host_uuid(vm, root.get());
  if (!valid_uuid(host)) throw Error(Code::kHostUuidInvalid, "'" + host + "' is not a host UUID (lower-case 8-4-4-4-12 hex)");
  const std::string cur_name(identity::file_name(identity::Kind::kInternal));
  const std::string staged_name(identity::kStagedInternal);
  std::time_t now = std::time(nullptr);
  Store store(ctx);
  if (vm["switch"].as<bool>()) {
    auto data = identity::read_file(root.get(), staged_name);
    if (!data)
      throw Error(Code::kCertificateDoesNotExist, "no staged internal identity (" + id_path(ctx, staged_name) +
                                                      "); run `ptrust host-cert refresh --kind internal` first");
    identity::Identity id = identity::parse_identity(*data, id_path(ctx, staged_name));
    identity::vet_identity(id, now);
    Certificate cert = Certificate::from_x509(id.certs.front().get());
    identity::rename_file(root.get(), staged_name, cur_name);  // this host now presents the new one
    store.pool_add(host, cert, false, now);                    // ... which the pool trusted as staged
    try {
      store.pool_remove(host, true);
    } catch (const Error& e) {
      if (e.code() != Code::kCertificateDoesNotExist) throw;
    }
    std::cout << id_path(ctx, cur_name) << "\n";
    return 0;
  }
  // The new identity keeps the current one's names.
  std::string cn = host_name();
  std::vector<std::string> san;
  if (auto data = identity::read_file(root.get(), cur_name)) {
    identity::Identity cur = identity::parse_identity(*data, id_path(ctx, cur_name));
    cn = cn_of(cur.certs.front().get());
    san = san_of(cur.certs.front().get());
  }
  if (vm.count("cn")) cn = vm["cn"].as<std::string>();
  if (vm.count("san")) san = identity::parse_san(vm["san"].as<std::string>());
  identity::Identity id = fresh_identity(cn, san, key_type, days, now);
  identity::write_file(root.get(), staged_name, identity::identity_pem(id));
  PoolRecord r = store.pool_add(host, Certificate::from_x509(id.certs.front().get()), true, now);
  std::string pub = (std::filesystem::path(ctx.root) / layout::kStunnelDir / layout::kPoolDir / r.file()).lexically_normal().string();
  std::cout << pub << "\n";
  std::cerr << "ptrust: staged; add " << pub << " on every pool member (`ptrust pool add --new " << host
            << " FILE`), then run `ptrust host-cert refresh --kind internal --switch`\n";
  return 0;
}

// --- ca -------------------------------------------------------------------------------------

// Runs a CA change under the store's writer lock, then moves the store generation so every
// consumer re-reads min-serial and ca.pem with its next handshake.
template <typename Fn>
void ca_change(Store& store, Fn fn) {
  store.with_state_lock([&](int state) {
    fn();
    begin_change(state);
    end_change(state);
  });
}

std::string ca_cn_default(const Context& ctx) {
  HostConfig h = parse_host_config(ctx.config);
  return h.cluster ? "ptrust cluster CA " + h.cluster->name : "ptrust cluster CA";
}

int ca_init(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  cluster_ca::InitRequest req;
  req.cn = vm.count("cn") ? vm["cn"].as<std::string>() : ca_cn_default(ctx);
  req.key_type = vm["key-type"].as<std::string>();
  req.days = days_opt(vm);
  req.renew = vm["renew"].as<bool>();
  check_key_type(req.key_type);
  if (req.cn.empty() || req.cn.size() > 64) throw Error(Code::kUsage, "--cn must be 1 to 64 characters");
  fs::Fd root = fs::open_root(ctx.root);
  if (!req.renew && cluster_ca::info(root.get()))  // refused before anything is created
    throw Error(Code::kClusterCaAlreadyExists, std::string(cluster_ca::kDir) +
                                                   " already holds a cluster CA; `ptrust ca init --renew` replaces its key "
                                                   "and certificate (the serial file is kept)");
  Store store(ctx);
  ossl::X509Ptr cert;
  ca_change(store, [&] { cert = cluster_ca::init(root.get(), req, std::time(nullptr)); });
  std::cout << (std::filesystem::path(ctx.root) / cluster_ca::kDir / cluster_ca::kCert).lexically_normal().string() << "\n";
  return 0;
}

int ca_sign(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  HostConfig h = parse_host_config(ctx.config);
  cluster_ca::SignRequest req;
  req.csr = read_input_file(vm["csr"].as<std::string>());
  req.cn = vm["cn"].as<std::string>();
  req.hours = vm["hours"].as<int>();
  if (h.cluster) req.allowed = h.cluster->names();
  fs::Fd root = fs::open_root(ctx.root);
  cluster_ca::Signed s = cluster_ca::sign(root.get(), req, std::time(nullptr));
  std::string pem = x509::pem(s.cert.get());
  if (vm.count("out")) {
    std::filesystem::path out(vm["out"].as<std::string>());
    std::string dir = out.has_parent_path() ? out.parent_path().string() : ".";
    fs::Fd d = fs::open_root(dir);
    fs::write_atomic(d.get(), out.filename().string(), pem, fs::kFileMode);
    std::cerr << "ptrust: serial " << s.serial << " written to " << out.string() << "\n";
  } else {
    std::cout << pem;
  }
  return 0;
}

std::uint64_t parse_serial(const std::string& s) {
  std::uint64_t v = 0;
  size_t used = 0;
  try {
    if (s.empty() || s[0] == '-' || s[0] == '+') throw std::invalid_argument(s);
    v = std::stoull(s, &used, 0);  // decimal, or 0x hex as `ca show` prints serials
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) throw Error(Code::kUsage, "SERIAL must be a non-negative integer, not '" + s + "'");
  return v;
}

int ca_revoke_below(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  std::uint64_t min = parse_serial(vm["serial"].as<std::string>());
  bool lower = vm["allow-lower"].as<bool>();
  fs::Fd root = fs::open_root(ctx.root);
  auto i = cluster_ca::info(root.get());  // refusals before the store lock is created
  if (!i) throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  if (i->min_serial && min < *i->min_serial && !lower)
    throw Error(Code::kUsage, "the minimum serial is " + std::to_string(*i->min_serial) + "; lowering it to " +
                                  std::to_string(min) + " would accept revoked certificates again (--allow-lower)");
  Store store(ctx);
  ca_change(store, [&] { cluster_ca::revoke_below(root.get(), min, lower); });
  std::cerr << "ptrust: certificates of the cluster CA with a serial below " << min << " are refused\n";
  return 0;
}

int ca_show(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  fs::Fd root = fs::open_root(ctx.root);
  auto i = cluster_ca::info(root.get());
  if (!i) throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  if (vm["pem"].as<bool>()) {
    std::cout << x509::pem(i->cert.get());
    return 0;
  }
  json::object o = cert_json(i->cert.get());
  o["path"] = (std::filesystem::path(ctx.root) / cluster_ca::kDir / cluster_ca::kCert).lexically_normal().string();
  o["last_serial"] = i->last_serial;
  o["first_serial"] = 1;
  if (i->min_serial) o["min_serial"] = *i->min_serial;
  else o["min_serial"] = nullptr;
  if (c.json) {
    print_json(json::object{{"cluster_ca", std::move(o)}});
    return 0;
  }
  auto str = [&](const char* k) { return std::string(o.at(k).as_string()); };
  std::cout << "cluster CA: " << str("path") << "\n  subject=" << str("subject") << "\n  sha256=" << str("sha256")
            << "\n  expires=" << str("not_after")
            << "\n  serials issued: " << (i->last_serial ? "1.." + std::to_string(i->last_serial) : std::string("none"))
            << "\n  min serial: " << (i->min_serial ? std::to_string(*i->min_serial) : std::string("none")) << "\n";
  return 0;
}

int ca_trust(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  std::vector<std::string> purposes;
  if (vm.count("purpose")) purposes = parse_purpose_list(vm["purpose"].as<std::string>(), ctx.config, ctx.root);
  fs::Fd root = fs::open_root(ctx.root);
  auto i = cluster_ca::info(root.get());
  if (!i) throw Error(Code::kClusterCaMissing, "there is no cluster CA; create one with `ptrust ca init`");
  Store store(ctx);
  apply_mode_change_option(store, vm);
  CertRecord r = store.install(Certificate::from_x509(i->cert.get()), {CertType::kCa, purposes}, std::time(nullptr));
  report_mode_changes(store);
  std::cout << r.uuid << "\n";
  return 0;
}

}  // namespace

void add_identity_commands(std::vector<Command>& out) {
  auto kind = [](po::options_description& d, bool required) {
    auto v = po::value<std::string>();
    if (required) v->required();
    d.add_options()("kind", v, "server (etc/xensource/xapi-ssl.pem: clients outside the pool) or internal "
                               "(etc/xensource/xapi-pool-tls.pem: host-to-host TLS; its public certificate is what "
                               "`pool add` distributes)");
  };
  auto keygen = [](po::options_description& d, int days) {
    d.add_options()("key-type", po::value<std::string>()->default_value("ec:p256"), "rsa:2048, rsa:3072, ec:p256 or ed25519")(
        "days", po::value<int>()->default_value(days), "validity in days");
  };
  out.push_back({"host-cert generate", "--kind server|internal [--cn NAME] [--san DNS:..,IP:..] [--key-type T] [--days N]",
                 "make this host's own key and self-signed certificate (key + certificate in one 0400 file, atomically)",
                 false,
                 [=](po::options_description& d, po::positional_options_description&) {
                   kind(d, true);
                   d.add_options()("cn", po::value<std::string>(), "common name (default: the host name)")(
                       "san", po::value<std::string>(), "subjectAltName entries, comma-separated (default: DNS:<cn>)");
                   keygen(d, 3650);
                 },
                 host_generate});
  out.push_back({"host-cert install", "--kind server --cert C --key K [--chain CH]",
                 "install an externally issued server identity; refused unless the key matches, the chain links, the "
                 "certificate is valid now and is not a CA",
                 false,
                 [=](po::options_description& d, po::positional_options_description&) {
                   kind(d, true);
                   d.add_options()("cert", po::value<std::string>()->required(), "the certificate (PEM, one)")(
                       "key", po::value<std::string>()->required(), "its private key (PEM, unencrypted)")(
                       "chain", po::value<std::string>(), "intermediates, leaf's issuer first (PEM)");
                 },
                 host_install});
  out.push_back({"host-cert show", "[--kind server|internal] [--pem]",
                 "describe the identity files (never the key); --pem prints only the public certificate", true,
                 [=](po::options_description& d, po::positional_options_description&) {
                   kind(d, false);
                   d.add_options()("pem", po::bool_switch(), "print the certificate of --kind as PEM (for `pool add`)");
                 },
                 host_show});
  out.push_back({"host-cert refresh", "--kind internal [--host-uuid U] [--switch]",
                 "rotate the internal identity: stage a new key and certificate (the pool trusts it as "
                 "certs-pool/<uuid>.new.pem), then --switch to use it",
                 false,
                 [=](po::options_description& d, po::positional_options_description&) {
                   kind(d, true);
                   d.add_options()("host-uuid", po::value<std::string>(),
                                   "this host's UUID (default: INSTALLATION_UUID in etc/xensource-inventory)")(
                       "switch", po::bool_switch(),
                       "second step: present the staged identity and make its certificate the pool's current one")(
                       "cn", po::value<std::string>(), "common name (default: the current certificate's)")(
                       "san", po::value<std::string>(), "subjectAltName entries (default: the current certificate's)");
                   keygen(d, 3650);
                 },
                 host_refresh});

  out.push_back({"ca init", "[--cn NAME] [--key-type T] [--days N] [--renew]",
                 "create the cluster CA in var/lib/ptrust/ca (certificate 0644, key 0400); --renew replaces key and "
                 "certificate, keeping the serial counter",
                 false,
                 [=](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("cn", po::value<std::string>(), "the CA's common name (default: ptrust cluster CA <cluster name>)")(
                       "renew", po::bool_switch(), "replace an existing CA (new key; serials continue)");
                   keygen(d, 3650);
                 },
                 ca_init});
  out.push_back({"ca sign", "CSR --cn NAME [--hours H] [--out FILE]",
                 "sign a CSR for the cluster name or a declared node (`cluster:` in ptrust.yaml), valid < 168 hours, "
                 "with a fresh serial and ptrust's extensions",
                 false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("csr", po::value<std::string>()->required(), "certificate signing request (PEM or DER)")(
                       "cn", po::value<std::string>()->required(), "common name: the cluster name or a declared node name")(
                       "hours", po::value<int>()->default_value(24), "validity in hours (1 to 167)")(
                       "out", po::value<std::string>(), "write the certificate here (default: standard output)");
                   p.add("csr", 1);
                 },
                 ca_sign});
  out.push_back({"ca revoke-below", "SERIAL [--allow-lower]",
                 "refuse every certificate of the cluster CA with a serial below SERIAL (the hook and `verify`)", false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("serial", po::value<std::string>()->required(), "the lowest serial still accepted")(
                       "allow-lower", po::bool_switch(), "allow lowering the minimum (re-admits revoked certificates)");
                   p.add("serial", 1);
                 },
                 ca_revoke_below});
  out.push_back({"ca show", "[--pem]", "describe the cluster CA: subject, expiry, serials issued, min serial (never the key)",
                 true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("pem", po::bool_switch(), "print the CA certificate as PEM");
                 },
                 ca_show});
  out.push_back({"ca trust", "[--purpose P,...]",
                 "install the cluster CA certificate as a trusted CA for purposes (general without --purpose)", false,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>(), "purposes that trust the cluster CA");
                   add_mode_change_option(d);
                 },
                 ca_trust});
}

}  // namespace ptrust::cli
