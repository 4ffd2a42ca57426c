#include "helper/stunnel_sync.h"

#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "helper/stunnel_render.h"

namespace ptrust::stunnel {

void write_file_atomic(const std::string& path, const std::string& data) {
  std::filesystem::path p(path);
  fs::Fd dir = fs::open_root(p.parent_path().empty() ? "." : p.parent_path().string());
  fs::write_atomic(dir.get(), p.filename().string(), data, fs::kFileMode);
}

namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

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

}  // namespace

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
    Rendered r;
    try {
      r = render_service(ctx, svc, in.via);
    } catch (const Error& e) {
      // Never keep the old stanza: it may still trust what was removed.
      s.reason = std::string(code_name(e.code())) + ": " + e.what();
      s.error = e.code() != Code::kNoTrustForPurpose;
      r = render_fail_closed(ctx, svc, s.reason);
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
    std::string cnf = render_openssl_cnf(ctx, in.module.value_or("ptrust.so"));
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

}  // namespace ptrust::stunnel
