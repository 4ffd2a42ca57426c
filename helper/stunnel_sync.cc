#include "helper/stunnel_sync.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/layout.h"
#include "core/x509.h"
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

// The pid in a pid file: read without following symlinks, at most 32 bytes, digits and an
// optional newline only. 0 when there is no pid file; -1 when it holds no pid.
long read_pid(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  fs::Fd g(fd);
  char buf[33];
  ssize_t n = ::read(fd, buf, 32);
  if (n <= 0) return -1;
  std::string text(buf, static_cast<size_t>(n));
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return -1;
  long pid = std::strtol(text.c_str(), nullptr, 10);
  return pid > 1 ? pid : -1;
}

// The executable's file name and the command line of a process (empty when it is gone).
std::string exe_name(long pid) {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  return ec ? "" : exe.filename().string();
}

std::vector<std::string> cmdline(long pid) {
  std::vector<std::string> out;
  auto text = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  if (!text) return out;
  std::string cur;
  for (char ch : *text) {
    if (ch == '\0') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  return out;
}

// SIGHUP makes stunnel re-read its configuration and re-create every SSL_CTX (found CAs
// and CRLs are cached per SSL_CTX). Only a live stunnel binary that was started with this
// instance's configuration file is signalled, through a pidfd (no pid-reuse race).
void reload(const StunnelInstance& in, InstanceReport& rep) {
  long pid = read_pid(in.pidfile);
  if (pid == 0) {
    rep.reload = "not-running";
    rep.reload_detail = "no pid file " + in.pidfile + "; the configuration applies when stunnel starts";
    return;
  }
  if (pid < 0) {
    rep.reload = "failed";
    rep.reload_detail = "pid file " + in.pidfile + " holds no pid";
    return;
  }
  rep.pid = pid;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (pidfd < 0 && errno == ESRCH) {
    rep.reload = "not-running";
    rep.reload_detail = "stale pid file " + in.pidfile + " (no process " + std::to_string(pid) + ")";
    return;
  }
  if (pidfd < 0 && errno != ENOSYS) {  // anything but "no such process" leaves the reload pending
    rep.reload = "failed";
    rep.reload_detail = "cannot open process " + std::to_string(pid) + ": " + std::strerror(errno);
    return;
  }
  fs::Fd g(pidfd);  // -1 on kernels without pidfd_open: kill() below, after the same checks
  std::string exe = exe_name(pid);
  auto args = cmdline(pid);
  bool is_stunnel = exe == "stunnel" || exe == "stunnel4";
  bool our_config = std::find(args.begin(), args.end(), in.config) != args.end();
  if (!is_stunnel || !our_config) {
    rep.reload = "failed";
    rep.reload_detail = "process " + std::to_string(pid) + " is not stunnel running " + in.config + "; not signalled";
    return;
  }
  int rc = pidfd >= 0 ? static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, SIGHUP, nullptr, 0))
                      : ::kill(static_cast<pid_t>(pid), SIGHUP);
  if (rc != 0) {
    rep.reload = errno == ESRCH ? "not-running" : "failed";
    rep.reload_detail = "SIGHUP to " + std::to_string(pid) + ": " + std::strerror(errno);
    return;
  }
  rep.reload = "sighup";
}

// What stunnel was last told to load, per instance: the SHA-256 of the configuration text,
// recorded only once stunnel was signalled (or is not running and will read it at start).
// A sync whose signal failed, or that was killed between write and signal, retries.
std::string applied_name(const StunnelInstance& in) { return "stunnel-" + in.name + ".applied"; }

}  // namespace

namespace {

std::uint64_t current_generation(const Context& ctx) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd state = fs::open_dir(root.get(), layout::kStateDir, false);
  return state ? read_generation(state.get()) : 0;
}

}  // namespace

// Renders every service of the instance into one configuration text.
std::string render_instance(const Context& ctx, const StunnelInstance& in, InstanceReport& rep) {
  std::ostringstream file;
  file << "; Written by `ptrust stunnel sync` (instance " << in.name << "). Do not edit: sync rewrites it.\n"
       << "pid = " << in.pidfile << "\n";
  for (const auto& g : in.global) file << g << "\n";
  rep.services.clear();
  rep.crl_files.clear();
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
    s.warnings.insert(s.warnings.end(), r.advisories.begin(), r.advisories.end());
    if (r.crl_file && std::find(rep.crl_files.begin(), rep.crl_files.end(), *r.crl_file) == rep.crl_files.end())
      rep.crl_files.push_back(*r.crl_file);
    file << "\n" << r.text;
    rep.services.push_back(std::move(s));
  }
  return file.str();
}

namespace {

// Which services' stanzas differ from the file being replaced.
void mark_changed(const std::optional<std::string>& old, const std::string& text, InstanceReport& rep) {
  auto before = sections(old.value_or(""));
  auto after = sections(text);
  for (auto& s : rep.services) {
    auto it = before.find(s.name);
    s.changed = it == before.end() || it->second != after[s.name];
  }
}

// The CRLfile names (in etc/ptrust/stunnel-crls) a stunnel configuration text refers to.
void crl_files_named(const std::string& text, const std::string& prefix, std::vector<std::string>& out) {
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);)
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
}

// Removes the CRLfiles no instance's configuration file (as on disk now) names. Nothing is
// removed when the instances cannot be listed or a configuration cannot be read: a file a
// running stunnel may re-read on its next reload is never removed on a guess. A stanza
// printed by `stunnel render` and pasted elsewhere is not seen here (docs/stunnel.md).
size_t collect_crl_files(const Context& ctx) {
  std::string root = ctx.root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  const std::string prefix =
      "CRLfile = " + (root == "/" ? "" : root) + "/" + std::string(layout::kStunnelCrlDir) + "/";
  std::vector<std::string> keep;
  try {
    for (const auto& in : parse_stunnel_config(ctx.config)) {
      std::error_code ec;
      if (!std::filesystem::exists(std::filesystem::symlink_status(in.config, ec)) && !ec) continue;
      auto text = read_text(in.config);
      if (!text) return 0;
      crl_files_named(*text, prefix, keep);
    }
    return remove_crl_files_except(ctx, keep);
  } catch (const Error&) {
    return 0;  // the store's own state decides nothing here; the next sync collects
  }
}

// Writes the instance's files, signals stunnel and records what it was told to load. Runs
// under the store's writer lock (`state` is its state directory), so two syncs, or a sync
// and a store change, never interleave their writes. `stable`: `text` is the stores'
// current state.
void publish(const Context& ctx, const StunnelInstance& in, const std::string& text, bool stable, int state,
             InstanceReport& rep) {
  auto old = read_text(in.config);
  mark_changed(old, text, rep);
  if (in.via == StunnelVia::kProvider) {
    std::string cnf = render_openssl_cnf(ctx, in.module.value_or("ptrust.so"));
    if (read_text(*in.openssl_conf) != cnf) {
      write_file_atomic(*in.openssl_conf, cnf);
      rep.openssl_conf_written = true;
    }
  }
  // What the configuration names exists before stunnel can read the configuration.
  for (const auto& f : rep.crl_files) write_crl_file(ctx, f);
  if (old != text) {
    write_file_atomic(in.config, text);
    rep.written = true;
  }
  rep.crl_files_removed = collect_crl_files(ctx);
  // Records live in their own directory: the store's own temp-file and drift checks of the
  // state directory never see a record being written.
  fs::Fd records = fs::open_dir(state, layout::kStunnelStateDir, true);
  auto applied = fs::read_at(records.get(), applied_name(in), 4096);
  const std::string want = x509::sha256_hex(text);
  if (!applied || *applied != want) {
    reload(in, rep);
    rep.pending = rep.reload == "failed" || !stable;
    // Only a delivered signal is recorded: a stunnel that is not running (or has not written
    // its pid file yet) gets one more, harmless, SIGHUP from the next sync.
    if (rep.reload == "sighup" && stable) fs::write_atomic(records.get(), applied_name(in), want, 0600);
  }
  if (!stable) {
    rep.pending = true;
    rep.reload_detail += (rep.reload_detail.empty() ? "" : "; ") +
                         std::string("the store kept changing while rendering; run sync again");
  }
}

}  // namespace

std::optional<std::string> applied_digest(const Context& ctx, const StunnelInstance& in) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd records = fs::open_dir(root.get(), std::string(layout::kStateDir) + "/" + std::string(layout::kStunnelStateDir), false);
  if (!records) return std::nullopt;
  return fs::read_at(records.get(), applied_name(in), 4096);
}

long live_pid(const std::string& pidfile) {
  long pid = read_pid(pidfile);
  if (pid <= 0) return 0;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM ? pid : 0;
}

InstanceReport sync_instance(Store& store, const StunnelInstance& in) {
  const Context& ctx = store.context();
  InstanceReport rep{.name = in.name, .config = in.config};
  if (!safe_config_path(ctx.root))  // also written into the fail-closed stanza
    throw Error(Code::kConfigInvalid, "root '" + ctx.root + "' cannot be written into a stunnel configuration");
  // The fail-closed stanza needs the placeholder: make sure it exists before rendering.
  ensure_placeholder(ctx);
  // The stores are read without the lock (readers never take the writer lock); the text is
  // published only when no writer was half-way (odd generation) or finished a change since
  // the rendering began, checked again under the lock. The last attempt publishes anyway,
  // flagged pending, so a store that never rests still gets a current file.
  constexpr int kAttempts = 5;
  for (int attempt = 0;; ++attempt) {
    if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::uint64_t before = current_generation(ctx);
    std::string text = render_instance(ctx, in, rep);
    std::uint64_t after = current_generation(ctx);
    bool published = false;
    store.with_state_lock([&](int state) {
      bool stable = before == after && generation_stable(after) && read_generation(state) == after;
      if (!stable && attempt + 1 < kAttempts) return;
      publish(ctx, in, text, stable, state, rep);
      published = true;
    });
    if (published) return rep;
  }
}

}  // namespace ptrust::stunnel
