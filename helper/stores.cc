// crl / legacy / pool / export / import / eject.
#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "core/config_edit.h"
#include "core/error.h"
#include "core/exchange.h"
#include "core/layout.h"
#include "core/records.h"
#include "core/store.h"
#include "core/x509.h"
#include "helper/cli.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

using Describe = std::function<void(po::options_description&, po::positional_options_description&)>;

std::vector<std::string> purposes_opt(const po::variables_map& vm, const Config& cfg) {
  if (!vm.count("purpose")) return {};
  return parse_purpose_list(vm["purpose"].as<std::string>(), cfg);
}

int crl_install(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  auto purposes = purposes_opt(vm, ctx.config);
  std::string name = vm.count("name") ? vm["name"].as<std::string>() : "";
  if (vm.count("name") && name.empty()) throw Error(Code::kCrlNameInvalid, "empty CRL name");
  std::string data = read_input_file(vm["file"].as<std::string>());
  std::vector<Certificate> issuers;
  if (vm.count("issuer")) {
    try {
      issuers = parse_crl_issuers(read_input_file(vm["issuer"].as<std::string>()));
    } catch (const Error& e) {
      throw Error(e.code(), std::string("--issuer: ") + e.what());
    }
  }
  Store store(std::move(ctx));
  CrlInstallResult r = store.crl_install(data, name, purposes, std::time(nullptr), issuers);
  if (r.replaced) {
    std::cerr << "ptrust: replaced " << (r.record.delta_base.empty() ? "" : "delta ") << "CRL " << r.replaced->name;
    if (r.replaced->name != r.record.name) std::cerr << " with " << r.record.name;
    if (!r.replaced_number.empty() && !r.number.empty())
      std::cerr << " (crlNumber " << r.replaced_number << " -> " << r.number << ")";
    else
      std::cerr << " (thisUpdate " << x509::format_time(r.replaced->last_update) << " -> "
                << x509::format_time(r.record.last_update) << ")";
    std::cerr << "\n";
  }
  for (const auto& d : r.dropped)
    std::cerr << "ptrust: removed " << (d.delta_base.empty() ? "older CRL " : "delta CRL ") << d.name
              << (d.delta_base.empty() ? "" : " (base crlNumber " + d.delta_base + ", superseded)") << "\n";
  for (const auto& w : r.warnings) std::cerr << "ptrust: warning: " << w << "\n";
  std::cout << r.record.name << "\n";
  return 0;
}

int crl_uninstall(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  CrlRemoval r = store.crl_uninstall(vm["name"].as<std::string>());
  std::cerr << "removed CRL " << r.record.name << "\n";
  for (const auto& d : r.dropped)
    std::cerr << "removed delta CRL " << d.name << " (its base " << r.record.name << " is gone)\n";
  return 0;
}

int crl_list(const Common& c, const po::variables_map&) {
  Store store(c.context());
  Database db = store.database();
  std::time_t now = std::time(nullptr);
  const Config& cfg = store.context().config;
  if (c.json) {
    json::array a;
    for (const auto& r : db.crls) {
      CrlStatus st = crl_status(cfg, db, r, now);
      json::object o = crl_json(r);
      o["expired"] = r.next_update != 0 && r.next_update < now;
      o["status"] = to_string(st.state);
      json::array failing;
      for (const auto& p : st.failing) failing.emplace_back(p);
      o["failing"] = std::move(failing);
      a.emplace_back(std::move(o));
    }
    print_json(json::object{{"crls", std::move(a)}});
    return 0;
  }
  if (db.crls.empty()) std::cout << "no CRLs\n";
  for (const auto& r : db.crls) {
    CrlStatus st = crl_status(cfg, db, r, now);
    std::string scope, failing;
    for (const auto& p : r.purposes) scope += (scope.empty() ? "" : ",") + p;
    for (const auto& p : st.failing) failing += (failing.empty() ? "" : ",") + p;
    std::cout << r.name << "  status=" << to_string(st.state) << (failing.empty() ? "" : " (fails " + failing + ")")
              << "  issuer=" << r.issuer << "  purposes=" << (scope.empty() ? "all" : scope)
              << (r.delta_base.empty() ? "" : "  delta-of=" + r.delta_base)
              << "  next-update=" << (r.next_update ? x509::format_time(r.next_update) : "none") << "\n";
  }
  return 0;
}

int legacy_install(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  Certificate cert = Certificate::parse(read_input_file(vm["file"].as<std::string>()));
  LegacyRecord r = store.legacy_install(vm["name"].as<std::string>(), cert, std::time(nullptr));
  std::cout << r.name << "\n";
  return 0;
}

int legacy_uninstall(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  LegacyRecord r = store.legacy_uninstall(vm["name"].as<std::string>(), vm["force"].as<bool>());
  std::cerr << "removed legacy CA " << r.name << "\n";
  return 0;
}

int legacy_list(const Common& c, const po::variables_map&) {
  Store store(c.context());
  Database db = store.database();
  if (c.json) {
    json::array a;
    for (const auto& r : db.legacy)
      a.emplace_back(json::object{{"name", r.name}, {"subject", r.subject}, {"sha256", r.sha256},
                                  {"not_after", x509::format_time(r.not_after)}});
    print_json(json::object{{"legacy", std::move(a)}});
    return 0;
  }
  if (db.legacy.empty()) std::cout << "no legacy CAs\n";
  for (const auto& r : db.legacy)
    std::cout << r.name << "  subject=" << r.subject << "  expires=" << x509::format_time(r.not_after) << "\n";
  return 0;
}

int pool_add(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  Certificate cert = Certificate::parse(read_input_file(vm["file"].as<std::string>()));
  PoolRecord r = store.pool_add(vm["host"].as<std::string>(), cert, vm["new"].as<bool>(), std::time(nullptr));
  std::cout << r.file() << "\n";
  return 0;
}

int pool_remove(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  for (const auto& r : store.pool_remove(vm["host"].as<std::string>(), vm["new"].as<bool>()))
    std::cerr << "removed pool certificate " << r.file() << "\n";
  return 0;
}

int pool_list(const Common& c, const po::variables_map&) {
  Store store(c.context());
  Database db = store.database();
  if (c.json) {
    json::array a;
    for (const auto& r : db.pool)
      a.emplace_back(json::object{{"host", r.host}, {"staged", r.staged}, {"file", r.file()}, {"subject", r.subject},
                                  {"sha256", r.sha256}, {"not_after", x509::format_time(r.not_after)}});
    print_json(json::object{{"pool", std::move(a)}});
    return 0;
  }
  if (db.pool.empty()) std::cout << "no pool certificates\n";
  for (const auto& r : db.pool)
    std::cout << r.file() << "  subject=" << r.subject << "  expires=" << x509::format_time(r.not_after) << "\n";
  return 0;
}

int export_cmd(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  std::string doc = store.export_document();
  std::string path = vm["file"].as<std::string>();
  if (path == "-") {
    std::cout << doc;
    return 0;
  }
  fs::Fd cwd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto slash = path.rfind('/');
  fs::Fd dir = slash == std::string::npos ? std::move(cwd) : fs::Fd(::open(path.substr(0, slash + 1).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) throw_errno(Code::kIoError, "cannot open the directory of " + path);
  fs::write_atomic(dir.get(), slash == std::string::npos ? path : path.substr(slash + 1), doc, 0644);
  return 0;
}

// The configuration file purposes get declared in: the one in use, or (with the built-in
// configuration) <root>/etc/ptrust/ptrust.yaml, created with the built-in purposes.
struct ConfigEdit {
  std::string path;
  std::string text;  // new content
};

ConfigEdit plan_declarations(Context& ctx, const std::map<std::string, PurposePolicy>& missing) {
  ConfigEdit e;
  std::string base;
  if (ctx.config.source == "<built-in>") {
    e.path = ctx.root + "/" + std::string(layout::kConfigFile);
    base = "purposes:\n";
    for (const auto& l : declaration_lines(ctx.config.purposes)) base += l + "\n";
  } else {
    e.path = ctx.config.source;
    struct stat st;
    if (::lstat(e.path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      throw Error(Code::kConfigInvalid, e.path + " is a symbolic link: declare the purposes in the file it points to");
    base = fs::read_input(e.path, 1u << 20);
  }
  e.text = declare_purposes(base, e.path, missing);
  ctx.config = parse_config(e.text, e.path);
  return e;
}

void write_config(const ConfigEdit& e) {
  std::filesystem::path p(e.path);
  std::filesystem::create_directories(p.parent_path());
  fs::Fd dir(::open(p.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) throw_errno(Code::kIoError, "cannot open the directory of " + e.path);
  struct stat st;
  mode_t mode = ::stat(e.path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
  fs::write_atomic(dir.get(), p.filename().string(), e.text, mode);
}

int import_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  std::string path = vm["file"].as<std::string>();
  std::string doc;
  if (path == "-") {  // as `export -` writes: a document piped from another host
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    doc = ss.str();
    if (doc.size() > (256u << 20)) throw Error(Code::kInputUnreadable, "standard input is larger than 256 MiB");
  } else {
    doc = fs::read_input(path, 256u << 20);
  }
  bool dry = vm["dry-run"].as<bool>();
  // Purposes the document names that this host does not declare: refused with the lines to
  // add (the exporting host's policies), or declared with --declare-purposes.
  DocumentPurposes dp = document_purposes(doc);
  std::map<std::string, PurposePolicy> missing;
  for (const auto& name : dp.referenced) {
    if (!valid_purpose_name(name) || name == kGeneral) continue;  // refused below, as install refuses it
    auto theirs = dp.declared.find(name);
    if (!ctx.config.declares(name)) {
      missing[name] = theirs != dp.declared.end() ? theirs->second : PurposePolicy{};
    } else if (theirs != dp.declared.end() && !(theirs->second == ctx.config.purposes.at(name))) {
      std::cerr << "ptrust: note: purpose " << name << " is declared here as " << policy_yaml(ctx.config.purposes.at(name))
                << "; the exporting host had " << policy_yaml(theirs->second) << " (this host's is kept)\n";
    }
  }
  std::optional<ConfigEdit> edit;
  if (!missing.empty()) {
    std::string names, lines;
    for (const auto& [n, p] : missing) names += (names.empty() ? "" : ", ") + n;
    for (const auto& l : declaration_lines(missing)) lines += (lines.empty() ? "`" : ", `") + l + "`";
    if (!vm["declare-purposes"].as<bool>()) {
      std::string where = ctx.config.source == "<built-in>"
                              ? "the built-in configuration (create " + ctx.root + "/" + std::string(layout::kConfigFile) + ")"
                              : ctx.config.source;
      throw Error(Code::kUnknownPurpose, "the document uses purposes not declared in " + where + ": " + names +
                                             "; add under `purposes:` " + lines + ", or import with --declare-purposes");
    }
    edit = plan_declarations(ctx, missing);  // ctx.config now declares them (in memory)
  }
  Store store(ctx);
  apply_mode_change_option(store, vm);
  if (edit) {
    store.import_document(doc, true);  // every refusal before the configuration is touched
    for (const auto& [n, p] : missing)
      std::cerr << "ptrust: " << (dry ? "would declare" : "declared") << " purpose " << n << " in " << edit->path << ": "
                << policy_yaml(p) << "\n";
    if (!dry) write_config(*edit);
  }
  ImportPlan plan = store.import_document(doc, dry);
  report_mode_changes(store);
  if (c.json) {
    json::array added, same;
    for (const auto& a : plan.added) added.emplace_back(a);
    for (const auto& a : plan.unchanged) same.emplace_back(a);
    print_json(json::object{{"dry_run", dry}, {"added", std::move(added)}, {"unchanged", std::move(same)}});
    return 0;
  }
  for (const auto& a : plan.added) std::cout << (dry ? "would add " : "added ") << a << "\n";
  for (const auto& a : plan.unchanged) std::cout << "already present " << a << "\n";
  if (plan.added.empty()) std::cout << "nothing to import\n";
  return 0;
}

int eject_cmd(const Common& c, const po::variables_map& vm) {
  if (!vm["yes"].as<bool>())
    throw Error(Code::kUsage, "eject empties every trusted, legacy and CRL store: every purpose then fails closed "
                              "until trust is installed again; repeat with --yes to do it");
  Store store(c.context());
  Database removed = store.eject();
  report_mode_changes(store);
  std::cout << "removed " << removed.certs.size() << " trusted certificates, " << removed.legacy.size()
            << " legacy CAs, " << removed.crls.size() << " CRLs (pool certificates kept)\n";
  return 0;
}

Describe positional(std::vector<std::pair<const char*, const char*>> names) {
  return [names](po::options_description& d, po::positional_options_description& p) {
    for (const auto& [n, help] : names) {
      d.add_options()(n, po::value<std::string>()->required(), help);
      p.add(n, 1);
    }
  };
}

Describe none() {
  return [](po::options_description&, po::positional_options_description&) {};
}

}  // namespace

void add_store_commands(std::vector<Command>& out) {
  out.push_back({"crl install", "FILE [--name NAME] [--purpose a,b] [--issuer CERTS]",
                 "install a CRL (PEM or DER), for every purpose or the --purpose ones; a newer CRL of the same line "
                 "(issuer, AKID, distribution point, purposes) replaces the installed one; prints its name",
                 false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("file", po::value<std::string>()->required(),
                                   "CRL file. Newer = higher crlNumber when both have one, else later thisUpdate; an "
                                   "older or equal one is CRL_NOT_NEWER. A delta CRL needs a complete CRL of its line "
                                   "with crlNumber >= its base (CRL_DELTA_WITHOUT_BASE); a complete CRL drops the deltas "
                                   "below its number. A CRL past its nextUpdate is accepted with a warning naming the "
                                   "purposes it fails")(
                       "name", po::value<std::string>(), "file name in etc/stunnel/crls ([A-Za-z0-9._-]; default from the issuer, "
                       "or the name of the CRL it replaces)")(
                       "purpose", po::value<std::string>(), "limit the CRL to these purposes")(
                       "issuer", po::value<std::string>(),
                       "certificates (PEM or DER) that may have signed the CRL, e.g. an intermediate that is not installed: "
                       "one named as the CRL's issuer must verify it (CRL_SIGNATURE_INVALID otherwise); never trusted, "
                       "kept in the CRL's record. Without it an installed CA of the issuer's name checks it; with none, "
                       "a warning says the signature is checked only at verification");
                   p.add("file", 1);
                 },
                 crl_install});
  out.push_back({"crl uninstall", "NAME", "remove a CRL (a complete CRL takes its delta CRLs with it)", false,
                 positional({{"name", "CRL name"}}), crl_uninstall});
  out.push_back({"crl list", "", "list CRLs: status ok / expired / not-yet-valid and the purposes it fails, delta base",
                 true, none(), crl_list});
  out.push_back({"legacy install", "NAME FILE", "install a CA into etc/stunnel/certs (deprecated xapi store)", false,
                 positional({{"name", "file name, ending in .pem"}, {"file", "certificate file"}}), legacy_install});
  out.push_back({"legacy uninstall", "NAME [--force]", "remove a legacy CA", false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("name", po::value<std::string>()->required(), "legacy CA name")(
                       "force", po::bool_switch(), "also drop a record whose file is already gone");
                   p.add("name", 1);
                 },
                 legacy_uninstall});
  out.push_back({"legacy list", "", "list legacy CAs", true, none(), legacy_list});
  out.push_back({"pool add", "HOST_UUID FILE [--new]",
                 "set a pool member's certificate (--new: stage a rotation as <uuid>.new.pem)", false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("host", po::value<std::string>()->required(), "host UUID")(
                       "file", po::value<std::string>()->required(), "certificate file")(
                       "new", po::bool_switch(), "stage the next certificate of a rotation");
                   p.add("host", 1).add("file", 1);
                 },
                 pool_add});
  out.push_back({"pool remove", "HOST_UUID [--new]", "remove a pool member's certificates (--new: only the staged one)",
                 false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("host", po::value<std::string>()->required(), "host UUID")(
                       "new", po::bool_switch(), "remove only the staged certificate");
                   p.add("host", 1);
                 },
                 pool_remove});
  out.push_back({"pool list", "", "list pool members' certificates", true, none(), pool_list});
  out.push_back({"export", "FILE", "write everything this host trusts to FILE (- for stdout), for a pool exchange",
                 false, positional({{"file", "output file, or -"}}), export_cmd});
  out.push_back({"import", "FILE [--dry-run] [--declare-purposes]", "merge an export document; all or nothing", true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("file", po::value<std::string>()->required(), "export document, or - for standard input")(
                       "dry-run", po::bool_switch(), "report what would change; change nothing")(
                       "declare-purposes", po::bool_switch(),
                       "declare the purposes the document uses and this host lacks in ptrust.yaml, with the "
                       "exporting host's policies (an edit that keeps the rest of the file)");
                   add_mode_change_option(d);
                   p.add("file", 1);
                 },
                 import_cmd});
  out.push_back({"eject", "--yes", "empty the trusted, legacy and CRL stores (a host leaving its pool; pool store kept)",
                 false,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("yes", po::bool_switch(), "yes, empty them (every purpose then fails closed)");
                 },
                 eject_cmd});
}

}  // namespace ptrust::cli
