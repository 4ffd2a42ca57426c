// stunnel render / stunnel sync: stunnel 5.68 configurations that follow the purposes'
// current trust (see docs/stunnel.md).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "helper/cli.h"
#include "helper/stunnel_render.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

// Replaces a file named by the administrator (outside the stores) atomically, 0644.
void write_file_atomic(const std::string& path, const std::string& data) {
  std::filesystem::path p(path);
  fs::Fd dir = fs::open_root(p.parent_path().empty() ? "." : p.parent_path().string());
  fs::write_atomic(dir.get(), p.filename().string(), data, fs::kFileMode);
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

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
  if ((svc.check_host ? 1 : 0) + (svc.check_ip ? 1 : 0) + (svc.no_subject_check ? 1 : 0) > 1)
    throw Error(Code::kUsage, "give at most one of --check-host, --check-ip, --no-subject-check");
  for (auto [what, v] : {std::pair{"--name", &svc.name}, {"--accept", &svc.accept}, {"--connect", &svc.connect}})
    stunnel::check_line_value(what, *v);
  if (svc.name.find_first_of("[]") != std::string::npos) throw Error(Code::kUsage, "--name must not contain [ or ]");
  if (svc.check_host) stunnel::check_line_value("--check-host", *svc.check_host);
  if (svc.check_ip) stunnel::check_line_value("--check-ip", *svc.check_ip);
  StunnelVia via = via_option(vm);
  if (via == StunnelVia::kFiles && (vm.count("openssl-conf") || vm.count("module")))
    throw Error(Code::kUsage, "--openssl-conf and --module apply to --via provider only");
  std::string module = vm.count("module") ? vm["module"].as<std::string>() : "ptrust.so";
  stunnel::check_line_value("--module", module);

  Context ctx = c.context();
  stunnel::Rendered r = stunnel::render_service(ctx, svc, via);
  if (vm.count("openssl-conf")) {
    const std::string& path = vm["openssl-conf"].as<std::string>();
    write_file_atomic(path, stunnel::render_openssl_cnf(ctx, module));
    std::cerr << "ptrust: wrote " << path << " (start stunnel with OPENSSL_CONF=" << path << ")\n";
  } else if (via == StunnelVia::kProvider) {
    std::cerr << "ptrust: warning: stunnel needs OPENSSL_CONF naming an openssl.cnf that loads ptrust.so "
                 "(--openssl-conf PATH writes one)\n";
  }
  for (const auto& w : r.warnings) std::cerr << "ptrust: warning: " << w << "\n";
  std::cout << r.text;
  return 0;
}

// ---- sync -------------------------------------------------------------------------

// The lines of each "[name]" section of a stunnel configuration, blank lines dropped.
std::map<std::string, std::string> sections(const std::string& text) {
  std::map<std::string, std::string> out;
  std::string* cur = nullptr;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    if (!line.empty() && line[0] == '[') {
      auto end = line.find(']');
      cur = &out[line.substr(1, end == std::string::npos ? std::string::npos : end - 1)];
    }
    if (cur && !line.empty()) *cur += line + "\n";
  }
  return out;
}

struct ServiceReport {
  std::string name, purpose;
  Mode mode = Mode::kNone;
  bool changed = false, fail_closed = false;
  std::string reason;  // why it fails closed
  bool error = false;  // the material was unusable (not merely mode none)
  std::vector<std::string> warnings;
};

struct InstanceReport {
  std::string name, config;
  bool written = false, openssl_conf_written = false;
  std::string reload = "none";  // none | sighup | not-running | failed
  long pid = 0;
  std::string reload_detail;
  std::vector<ServiceReport> services;
};

// SIGHUP makes stunnel re-read its configuration and re-create every SSL_CTX (found CAs
// and CRLs are cached per SSL_CTX). Only a live process whose name says stunnel is signalled.
void reload(const StunnelInstance& in, InstanceReport& rep) {
  auto text = read_text(in.pidfile);
  if (!text) {
    rep.reload = "not-running";
    rep.reload_detail = "no pid file " + in.pidfile + "; the configuration applies when stunnel starts";
    return;
  }
  char* end = nullptr;
  long pid = std::strtol(text->c_str(), &end, 10);
  if (pid <= 1 || end == text->c_str()) {
    rep.reload = "failed";
    rep.reload_detail = "pid file " + in.pidfile + " holds no pid";
    return;
  }
  rep.pid = pid;
  auto comm = read_text("/proc/" + std::to_string(pid) + "/comm");
  if (!comm) {
    rep.reload = "not-running";
    rep.reload_detail = "stale pid file " + in.pidfile + " (no process " + std::to_string(pid) + ")";
    return;
  }
  while (!comm->empty() && comm->back() == '\n') comm->pop_back();
  if (*comm != "stunnel" && *comm != "stunnel4") {
    rep.reload = "failed";
    rep.reload_detail = "process " + std::to_string(pid) + " is not stunnel; not signalled";
    return;
  }
  if (::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
    rep.reload = "failed";
    rep.reload_detail = "SIGHUP to " + std::to_string(pid) + ": " + std::strerror(errno);
    return;
  }
  rep.reload = "sighup";
}

InstanceReport sync_instance(const Context& ctx, const StunnelInstance& in) {
  InstanceReport rep{.name = in.name, .config = in.config};
  std::ostringstream file;
  file << "; Written by `ptrust stunnel sync` (instance " << in.name << "). Do not edit: sync rewrites it.\n"
       << "pid = " << in.pidfile << "\n";
  for (const auto& g : in.global) file << g << "\n";
  auto old = read_text(in.config);
  auto old_sections = sections(old.value_or(""));
  for (const auto& svc : in.services) {
    ServiceReport s{.name = svc.name, .purpose = svc.purpose};
    stunnel::Rendered r;
    try {
      r = stunnel::render_service(ctx, svc, in.via);
    } catch (const Error& e) {
      // Never keep the old stanza: it may still trust what was removed.
      s.reason = std::string(code_name(e.code())) + ": " + e.what();
      s.error = e.code() != Code::kNoTrustForPurpose;
      r = stunnel::render_fail_closed(ctx, svc, s.reason);
    }
    s.mode = r.mode;
    s.fail_closed = r.fail_closed;
    s.warnings = r.warnings;
    auto it = old_sections.find(svc.name);
    s.changed = it == old_sections.end() || it->second != r.text;
    file << "\n" << r.text;
    rep.services.push_back(std::move(s));
  }
  if (in.via == StunnelVia::kProvider) {
    std::string cnf = stunnel::render_openssl_cnf(ctx, in.module.value_or("ptrust.so"));
    if (read_text(*in.openssl_conf) != cnf) {
      write_file_atomic(*in.openssl_conf, cnf);
      rep.openssl_conf_written = true;
    }
  }
  if (old != file.str()) {
    write_file_atomic(in.config, file.str());
    rep.written = true;
    reload(in, rep);
  }
  return rep;
}

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
  if (!r.written) {
    std::cout << r.name << ": " << r.config << " unchanged\n";
  } else if (r.reload == "sighup") {
    std::cout << r.name << ": wrote " << r.config << ", SIGHUP sent to stunnel pid " << r.pid << "\n";
  } else {
    std::cout << r.name << ": wrote " << r.config << ", " << r.reload << ": " << r.reload_detail << "\n";
  }
}

int sync_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  std::optional<std::string> only;
  if (vm.count("instance")) only = vm["instance"].as<std::string>();
  if (ctx.config.stunnel.empty())
    throw Error(Code::kConfigInvalid, ctx.config.source + ": no `stunnel:` instances declared");
  bool ok = true, found = false;
  json::array out;
  for (const auto& in : ctx.config.stunnel) {
    if (only && in.name != *only) continue;
    found = true;
    InstanceReport r = sync_instance(ctx, in);
    for (const auto& s : r.services) ok &= !s.error;
    ok &= r.reload != "failed";
    if (c.json)
      out.emplace_back(report_json(r));
    else
      print_text(r);
  }
  if (!found) throw Error(Code::kConfigInvalid, "no stunnel instance named '" + *only + "' in " + ctx.config.source);
  if (c.json) print_json(json::object{{"ok", ok}, {"instances", std::move(out)}});
  if (!ok) std::cerr << "ptrust: " << code_name(Code::kStunnelSignalFailed) << " or unusable material: see above\n";
  return ok ? 0 : 1;
}

}  // namespace

void add_stunnel_commands(std::vector<Command>& out) {
  out.push_back({"stunnel render",
                 "--purpose P --name SERVICE --accept ADDR --connect HOST:PORT [--check-host NAME | --check-ip IP | "
                 "--no-subject-check] [--via files|provider]",
                 "print a stunnel client stanza for the purpose's current mode", false,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>()->required(), "purpose, or general")(
                       "name", po::value<std::string>()->required(), "service name ([SERVICE])")(
                       "accept", po::value<std::string>()->required(), "stunnel accept address")(
                       "connect", po::value<std::string>()->required(), "TLS server HOST:PORT")(
                       "check-host", po::value<std::string>(), "host name the server certificate must match")(
                       "check-ip", po::value<std::string>(), "IP address the server certificate must match")(
                       "no-subject-check", po::bool_switch(), "accept any name (chain modes; explicit opt-out)")(
                       "via", po::value<std::string>()->default_value("files"),
                       "files: CAfile = chosen bundle + CRLpath (CRLs enforced); provider: VerifyCAStore")(
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
