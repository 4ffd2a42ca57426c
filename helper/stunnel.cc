// stunnel render / stunnel sync: stunnel 5.68 configurations that follow the purposes'
// current trust (see docs/stunnel.md).
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "helper/cli.h"
#include "helper/stunnel_render.h"
#include "helper/stunnel_sync.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

StunnelVia via_option(const po::variables_map& vm) {
  auto s = vm["via"].as<std::string>();
  auto v = stunnel_via_from(s);
  if (!v) throw Error(Code::kUsage, "--via must be files or provider, not '" + s + "'");
  return *v;
}

int render_cmd(const Common& c, const po::variables_map& vm) {
  StunnelService svc;
  svc.purpose = vm["purpose"].as<std::string>();
  svc.name = vm["name"].as<std::string>();
  svc.accept = vm["accept"].as<std::string>();
  svc.connect = vm["connect"].as<std::string>();
  if (vm.count("check-host")) svc.check_host = vm["check-host"].as<std::string>();
  if (vm.count("check-ip")) svc.check_ip = vm["check-ip"].as<std::string>();
  svc.no_subject_check = vm["no-subject-check"].as<bool>();
  svc.accept_stricter = vm["accept-stricter"].as<bool>();
  if ((svc.check_host ? 1 : 0) + (svc.check_ip ? 1 : 0) + (svc.no_subject_check ? 1 : 0) > 1)
    throw Error(Code::kUsage, "give at most one of --check-host, --check-ip, --no-subject-check");
  for (auto [what, v] : {std::pair{"--name", &svc.name}, {"--accept", &svc.accept}, {"--connect", &svc.connect}})
    stunnel::check_line_value(what, *v);
  if (!valid_stunnel_name(svc.name)) throw Error(Code::kUsage, "--name must match [A-Za-z0-9._-]{1,64}");
  if (svc.check_host) stunnel::check_line_value("--check-host", *svc.check_host);
  if (svc.check_ip) stunnel::check_line_value("--check-ip", *svc.check_ip);
  StunnelVia via = via_option(vm);
  if (via == StunnelVia::kFiles && (vm.count("openssl-conf") || vm.count("module")))
    throw Error(Code::kUsage, "--openssl-conf and --module apply to --via provider only");
  std::string module = vm.count("module") ? vm["module"].as<std::string>() : "ptrust.so";
  stunnel::check_line_value("--module", module);

  Context ctx = c.context();
  // Everything that can be refused is checked before anything is written.
  std::string cnf;
  if (vm.count("openssl-conf")) {
    std::filesystem::path dir = std::filesystem::path(vm["openssl-conf"].as<std::string>()).parent_path();
    if (!std::filesystem::is_directory(dir.empty() ? "." : dir))
      throw Error(Code::kIoError, "--openssl-conf: directory " + dir.string() + " does not exist");
    cnf = stunnel::render_openssl_cnf(ctx, module);
  }
  stunnel::Rendered r = stunnel::render_service(ctx, svc, via);
  // The stanza names it: it exists before the stanza is printed (the same file sync writes).
  if (r.crl_file) stunnel::write_crl_file(ctx, *r.crl_file);
  if (vm.count("openssl-conf")) {
    const std::string& path = vm["openssl-conf"].as<std::string>();
    stunnel::write_file_atomic(path, cnf);
    std::cerr << "ptrust: wrote " << path << " (start stunnel with OPENSSL_CONF=" << path << ")\n";
  } else if (via == StunnelVia::kProvider) {
    std::cerr << "ptrust: warning: stunnel needs OPENSSL_CONF naming an openssl.cnf that loads ptrust.so "
                 "(--openssl-conf PATH writes one)\n";
  }
  for (const auto& w : r.warnings) std::cerr << "ptrust: warning: " << w << "\n";
  for (const auto& a : r.advisories) std::cerr << "ptrust: note: " << a << "\n";
  std::cout << r.text;
  return 0;
}

using stunnel::InstanceReport;

json::object report_json(const InstanceReport& r) {
  json::array svcs;
  for (const auto& s : r.services) {
    json::array w;
    for (const auto& x : s.warnings) w.emplace_back(x);
    svcs.emplace_back(json::object{{"name", s.name},
                                   {"purpose", s.purpose},
                                   {"mode", s.fail_closed ? "fail-closed" : std::string(to_string(s.mode))},
                                   {"changed", s.changed},
                                   {"fail_closed", s.fail_closed},
                                   {"reason", s.reason.empty() ? json::value(nullptr) : json::value(s.reason)},
                                   {"error", s.error},
                                   {"warnings", std::move(w)}});
  }
  return {{"name", r.name},
          {"config", r.config},
          {"written", r.written},
          {"openssl_conf_written", r.openssl_conf_written},
          {"reload", r.reload},
          {"pid", r.pid ? json::value(r.pid) : json::value(nullptr)},
          {"reload_detail", r.reload_detail.empty() ? json::value(nullptr) : json::value(r.reload_detail)},
          {"pending", r.pending},
          {"services", std::move(svcs)}};
}

void print_text(const InstanceReport& r) {
  for (const auto& s : r.services) {
    std::cout << r.name << "/" << s.name << ": " << (s.changed ? "changed" : "unchanged") << ", purpose " << s.purpose;
    if (s.fail_closed)
      std::cout << ", FAIL CLOSED (" << s.reason << ")";
    else
      std::cout << ", mode " << to_string(s.mode);
    std::cout << "\n";
    if (s.changed)
      for (const auto& w : s.warnings) std::cerr << "ptrust: warning: " << r.name << "/" << s.name << ": " << w << "\n";
  }
  if (r.openssl_conf_written) std::cout << r.name << ": wrote openssl.cnf (takes effect when stunnel restarts)\n";
  std::string what = r.written ? "wrote " + r.config : r.config + " unchanged";
  if (r.reload == "none") {
    std::cout << r.name << ": " << what << "\n";
  } else if (r.reload == "sighup") {
    std::cout << r.name << ": " << what << ", SIGHUP sent to stunnel pid " << r.pid << "\n";
  } else {
    std::cout << r.name << ": " << what << ", " << r.reload << ": " << r.reload_detail
              << (r.pending ? " (reload pending: retried on the next sync)" : "") << "\n";
  }
}

int sync_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  std::vector<StunnelInstance> instances = parse_stunnel_config(ctx.config);
  std::optional<std::string> only;
  if (vm.count("instance")) only = vm["instance"].as<std::string>();
  if (instances.empty())
    throw Error(Code::kConfigInvalid, ctx.config.source + ": no `stunnel:` instances declared");
  Store store(ctx);
  bool ok = true, found = false;
  json::array out;
  for (const auto& in : instances) {
    if (only && in.name != *only) continue;
    found = true;
    InstanceReport r;
    try {
      r = stunnel::sync_instance(store, in);
    } catch (const Error& e) {  // one instance failing does not stop the others
      ok = false;
      std::cerr << "ptrust: " << code_name(e.code()) << ": " << in.name << ": " << e.what() << "\n";
      if (c.json)
        out.emplace_back(json::object{{"name", in.name}, {"config", in.config}, {"error", std::string(code_name(e.code()))},
                                      {"detail", e.what()}});
      continue;
    }
    // One line per failure, naming its code, as every ptrust refusal does.
    for (const auto& s : r.services)
      if (s.error) ok = false, std::cerr << "ptrust: " << r.name << "/" << s.name << ": " << s.reason << "\n";
    if (r.reload == "failed")
      ok = false, std::cerr << "ptrust: " << code_name(Code::kStunnelSignalFailed) << ": " << r.name << ": "
                            << r.reload_detail << "\n";
    if (c.json)
      out.emplace_back(report_json(r));
    else
      print_text(r);
  }
  if (!found) throw Error(Code::kConfigInvalid, "no stunnel instance named '" + *only + "' in " + ctx.config.source);
  if (c.json) print_json(json::object{{"ok", ok}, {"instances", std::move(out)}});
  return ok ? 0 : 1;
}

}  // namespace

void add_stunnel_commands(std::vector<Command>& out) {
  out.push_back({"stunnel render",
                 "--purpose P --name SERVICE --accept ADDR --connect HOST:PORT [--check-host NAME | --check-ip IP | "
                 "--no-subject-check] [--via files|provider] [--accept-stricter]",
                 "print a stunnel client stanza for the purpose's current mode", false,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>()->required(), "purpose, or general")(
                       "name", po::value<std::string>()->required(), "service name ([SERVICE])")(
                       "accept", po::value<std::string>()->required(), "stunnel accept address")(
                       "connect", po::value<std::string>()->required(), "TLS server HOST:PORT")(
                       "check-host", po::value<std::string>(), "host name the server certificate must match")(
                       "check-ip", po::value<std::string>(), "IP address the server certificate must match")(
                       "no-subject-check", po::bool_switch(), "accept any name (chain modes; explicit opt-out)")(
                       "accept-stricter", po::bool_switch(),
                       "render a policy 5.68 can only enforce more strictly (pin-match spki) with a warning")(
                       "via", po::value<std::string>()->default_value("files"),
                       "files: CAfile = chosen bundle + CRLfile (CRLs enforced); provider: VerifyCAStore")(
                       "openssl-conf", po::value<std::string>(), "--via provider: write the openssl.cnf here")(
                       "module", po::value<std::string>(), "--via provider: ptrust.so path (default: ptrust.so)");
                 },
                 render_cmd});
  out.push_back({"stunnel sync", "[--instance NAME]",
                 "re-render the stunnel instances of the config; write changes and SIGHUP stunnel", true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("instance", po::value<std::string>(), "only this instance");
                 },
                 sync_cmd});
}

}  // namespace ptrust::cli
