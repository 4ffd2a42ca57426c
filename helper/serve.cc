// `ptrust serve`: the helper process. Keeps one status report of the host, refreshed when the
// stores or the configuration change (inotify, debounced) and when an alert window opens (one
// timer at the next boundary: no other wake-ups). Serves it on a Unix socket (JSON lines) and
// as Prometheus metrics on loopback, logs alert transitions and reloads, and keeps consumers
// in step: stunnel instances are synced (the same code as `ptrust stunnel sync`), declared
// services reloaded. It writes nothing but through the CLI's writers: Store (stunnel sync,
// consumer records under the writer lock) and the hooks' counter directory.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <map>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>

#include "core/counters.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/store.h"
#include "core/trust.h"
#include "core/generation.h"
#include "core/x509.h"
#include "helper/fleet_follow.h"
#include "helper/cli.h"
#include "helper/host_config.h"
#include "helper/serve_io.h"
#include "helper/status.h"
#include "helper/stunnel_config.h"
#include "helper/stunnel_sync.h"

extern char** environ;

namespace ptrust::cli {

namespace json = boost::json;

namespace {

using serve::log;

// Runs a reload-command (argv, absolute program, no shell) and waits up to 30 s for it.
bool run_command(const std::vector<std::string>& argv, std::string& detail) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* env[] = {path_env, nullptr};
  pid_t pid = 0;
  if (int rc = posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), env); rc != 0) {
    detail = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return false;
  }
  int status = 0;
  for (int waited = 0;; waited += 20) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0) {
      detail = std::string("waitpid: ") + std::strerror(errno);
      return false;
    }
    if (waited >= 30000) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      detail = argv[0] + " did not finish within 30 s; killed";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    detail = argv[0] + " succeeded";
    return true;
  }
  detail = argv[0] + (WIFEXITED(status) ? " exited " + std::to_string(WEXITSTATUS(status))
                                        : " killed by signal " + std::to_string(WTERMSIG(status)));
  return false;
}

// Signals the process in the pid file through a pidfd (no pid-reuse race between the check
// and the signal).
bool send_reload_signal(const std::string& pidfile, int sig, std::string& detail) {
  long pid = stunnel::live_pid(pidfile);
  if (!pid) {
    detail = "not running (" + pidfile + ")";
    return false;
  }
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  int rc = fd >= 0 ? static_cast<int>(::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0)) : -1;
  int err = errno;
  if (fd >= 0) ::close(fd);
  if (rc != 0) {
    detail = "signal " + std::to_string(sig) + " to " + std::to_string(pid) + ": " + std::strerror(err);
    return false;
  }
  detail = std::string(sigabbrev_np(sig) ? sigabbrev_np(sig) : "signal") + " sent to " + std::to_string(pid);
  return true;
}

class Daemon {
 public:
  Daemon(const Common& common, serve::EventLoop& loop) : common_(common), loop_(loop) {
    load_config(true);
    // The verdicts a previous run kept (status.h): the first refresh decodes only what is new.
    status::load_verdict_cache(ctx_.root, *verdicts_);
  }

  const Context& context() const { return ctx_; }

  // Re-reads the configuration; a broken one is logged and the previous one kept (consumers
  // fail closed on it by themselves; the daemon keeps reporting).
  void load_config(bool first) {
    try {
      Context ctx = common_.context();
      HostConfig hc = parse_host_config(ctx.config);
      if (!first && ctx.root != ctx_.root) throw Error(Code::kConfigInvalid, "the root cannot change while serving; restart");
      bool changed = ctx.config.text != ctx_.config.text || ctx.config.source != ctx_.config.source;
      ctx_ = std::move(ctx);
      hc_ = std::move(hc);
      if (!first && changed) log(LOG_INFO, "configuration reloaded from " + ctx_.config.source);
    } catch (const Error& e) {
      if (first) throw;
      log(LOG_ERR, std::string("configuration not reloaded: ") + std::string(code_name(e.code())) + ": " + e.what(),
          {{"PTRUST_CODE", std::string(code_name(e.code()))}});
    }
  }

  // What to watch: every directory whose entries a report reads.
  std::vector<std::string> watched() const {
    std::string root = ctx_.root == "/" ? "" : ctx_.root;
    std::vector<std::string> dirs = {root + "/" + std::string(layout::kTrustedDir),
                                     root + "/" + std::string(layout::kCrlDir),
                                     root + "/" + std::string(layout::kStunnelDir) + "/" + std::string(layout::kLegacyDir),
                                     root + "/" + std::string(layout::kStunnelDir) + "/" + std::string(layout::kPoolDir),
                                     root + "/" + std::string(layout::kStateDir),
                                     root + "/etc/xensource"};
    std::string cfg = ctx_.config.source;
    if (!cfg.empty() && cfg[0] == '/') dirs.push_back(cfg.substr(0, cfg.rfind('/')));
    else dirs.push_back(root + "/" + std::string(layout::kEtcDir));
    // Each store directory: a file removed by hand there is drift.
    try {
      fs::Fd r = fs::open_root(ctx_.root);
      if (fs::Fd t = fs::open_dir(r.get(), layout::kTrustedDir, false))
        for (const auto& e : fs::list_dir(t.get()))
          if (e.type == S_IFDIR && layout::parse_store_dir(e.name)) dirs.push_back(dirs[0] + "/" + e.name);
    } catch (const Error&) {
    }
    return dirs;
  }

  void start_watching() {
    loop_.watch(watched(), [this] { on_change(); });
  }

  void on_change() {
    load_config(false);
    start_watching();  // store directories come and go
    refresh("change");
  }

  void on_hup() {
    log(LOG_INFO, "SIGHUP: reloading the configuration");
    load_config(false);
    start_watching();
    refresh("SIGHUP");
  }

  // Rebuilds the report, brings consumers in step, logs alert transitions, re-arms the timer.
  void refresh(const char* why) {
    fold_dead_counters();
    std::int64_t now = std::time(nullptr);
    // Both collects of a refresh share decoded certificates (the memo dies with the refresh:
    // keeping 10,000 decoded certificates between refreshes would double the daemon's RSS).
    Context ctx = ctx_;
    ctx.memo = std::make_shared<TrustMemo>();
    // The memo keeps no decoded certificates (status::Options::verdicts): a refresh decodes
    // only the certificates it has not seen decode before, one at a time.
    // The previous report and its metrics page go first (at 10,000 certificates ~10 MiB that
    // would otherwise sit beside the new report at the refresh's peak). The daemon is single-
    // threaded: no request is answered in between.
    report_ = status::Report{};
    std::string().swap(metrics_);
    report_ = status::collect(ctx, hc_, now, {.folded = &folded_, .verdicts = verdicts_});
    if (keep_consumers_in_step(ctx)) {
      report_ = status::Report{};
      report_ = status::collect(ctx, hc_, now, {.folded = &folded_, .verdicts = verdicts_});
    }
    ctx.memo.reset();
    verdicts_->retain_used();  // forget certificates no longer stored
    save_verdicts();
    metrics_ = status::metrics(report_, false);
    log_transitions(why);
    arm_timer();
    // A refresh at 10,000 certificates allocates (and frees) tens of MiB; give it back to
    // the system rather than keep the peak for the daemon's lifetime.
    malloc_trim(0);
  }

  json::value handle(std::string_view method, const json::object& params) {
    // "fresh": true (what `ptrust status` asks without --socket): answer from a report that
    // includes every change inotify reported before this request was read, refreshing now
    // rather than after the debounce.
    if (auto* f = params.if_contains("fresh"); f && f->is_bool() && f->as_bool() && (method == "status" || method == "alerts"))
      loop_.flush_changes();
    if (method == "status") {
      status::Report r;
      if (auto* p = params.if_contains("purpose")) {
        if (!p->is_string()) throw Error(Code::kUsage, "purpose must be a string");
        std::string purpose(p->as_string());
        if (purpose != kGeneral && !ctx_.config.declares(purpose))
          throw unknown_purpose(ctx_.config, purpose, ctx_.root);
        r = status::collect(ctx_, hc_, std::time(nullptr), {.purpose = purpose, .folded = &folded_, .verdicts = verdicts_});
      } else {
        fold_dead_counters();
        status::add_verdicts(report_, &folded_);
        r = report_;
      }
      json::object out = status::to_json(r);
      out["config_sha256"] = x509::sha256_hex(ctx_.config.text);  // `ptrust status` checks it is its own
      if (follower_) out["fleet"] = fleet::to_json(follower_->state());
      if (auto* t = params.if_contains("text"); t && t->is_bool() && t->as_bool())
        out["text"] = status::text(r) + (follower_ ? fleet::text(follower_->state()) : std::string());
      return out;
    }
    if (method == "alerts") {
      json::array a;
      for (const auto& x : status::alerts(report_, hc_.alerts)) a.emplace_back(status::to_json(x));
      // What `ptrust alerts` checks before it takes the answer as its own.
      return json::object{{"alerts", std::move(a)}, {"root", report_.root}, {"generation", report_.generation},
                          {"config_sha256", x509::sha256_hex(ctx_.config.text)}};
    }
    if (method == "resolve") {
      auto* p = params.if_contains("purpose");
      if (!p || !p->is_string()) throw Error(Code::kUsage, "resolve needs params {\"purpose\": NAME}");
      auto t = build_trust(ctx_, std::string(p->as_string()), TrustStamp{});
      if (!t) throw std::bad_alloc();
      return json::object{{"purpose", t->purpose},
                          {"mode", std::string(to_string(t->mode))},
                          {"bundle", t->bundle.empty() ? json::value(nullptr) : json::value(t->bundle)},
                          {"failure", t->failure ? json::value(std::string(code_name(*t->failure)) + ": " + t->failure_message)
                                                 : json::value(nullptr)},
                          {"certificates", t->certs.size()},
                          {"crls", t->crls.size()}};
    }
    if (method == "sync-check") {
      auto drift = Store(ctx_).sync(false);
      json::array a;
      for (const auto& d : drift)
        a.emplace_back(json::object{{"kind", std::string(to_string(d.kind))}, {"path", d.path}, {"detail", d.detail}});
      return json::object{{"clean", drift.empty()}, {"drift", std::move(a)}};
    }
    if (method == "reload-consumers") {
      refresh("request");
      json::array a;
      for (const auto& c : report_.consumers)
        a.emplace_back(json::object{{"name", c.name}, {"kind", c.kind}, {"state", c.state}, {"detail", c.detail}});
      return json::object{{"consumers", std::move(a)}};
    }
    throw Error(Code::kUsage, "unknown method '" + std::string(method) +
                                  "' (status, alerts, resolve, sync-check, reload-consumers)");
  }

  std::string metrics() {
    fold_dead_counters();
    status::add_verdicts(report_, &folded_);
    return metrics_ + status::verdict_metrics(report_) + (follower_ ? fleet::metrics(follower_->state()) : std::string());
  }

  // `--follow`: the fleet's desired document, applied as one exact-replace store change.
  void follow(const fleet::Endpoint& ep, const std::string& name, const std::string& host, bool allow_mode_change,
              bool require_signature) {
    follower_ = std::make_unique<fleet::Follower>(
        loop_.context(), ep, name, host,
        [this, allow_mode_change](const std::string& doc, std::int64_t revision) { return apply_desired(doc, revision, allow_mode_change); },
        [] {});
    if (require_signature)
      follower_->require_signature(
          [this](const std::string& doc, const std::string& sig) { return fleet::verify_with_pins(ctx_, doc, sig); }, ctx_.root);
    // The trust it needs to keep following: a document without it is refused (FLEET_DOCUMENT_CUTS_OFF).
    std::vector<std::string> keep;
    if (ep.tls) keep.push_back(ep.purpose);
    if (require_signature) keep.emplace_back(fleet::kSignaturePurpose);
    follower_->check_before_apply([this, keep](const std::string& doc) { fleet::refuse_cut_off(ctx_, keep, doc); });
    follower_->start();
  }

 private:
  fleet::Follower::Outcome apply_desired(const std::string& doc, std::int64_t revision, bool allow_mode_change) {
    fleet::Follower::Outcome o;
    try {
      Store store(ctx_);
      store.allow_mode_change(allow_mode_change);
      ImportPlan plan = store.replace_document(doc);
      fs::Fd root = fs::open_root(ctx_.root);
      fs::Fd state = fs::open_dir(root.get(), layout::kStateDir, false);
      o.generation = state ? read_generation(state.get()) : 0;
      o.ok = true;
      log(LOG_NOTICE, "fleet: applied desired revision " + std::to_string(revision) + " (" + std::to_string(plan.added.size()) +
                          " added, " + std::to_string(plan.removed.size()) + " removed, " +
                          std::to_string(plan.unchanged.size()) + " unchanged; generation " + std::to_string(o.generation) + ")",
          {{"PTRUST_FLEET_REVISION", std::to_string(revision)}});
      if (!plan.added.empty() || !plan.removed.empty()) refresh("fleet");
    } catch (const Error& e) {
      o.error = std::string(code_name(e.code())) + ": " + e.what();
    } catch (const std::exception& e) {
      o.error = std::string("INTERNAL_ERROR: ") + e.what();
    }
    return o;
  }

  // Keeps the verdicts on disk for `ptrust status --local` and the next start (status.h); only
  // a cache: a failure is logged once and otherwise ignored.
  void save_verdicts() {
    try {
      if (status::save_verdict_cache(ctx_, *verdicts_)) verdict_cache_error_ = false;
    } catch (const Error& e) {
      if (!verdict_cache_error_)
        log(LOG_WARNING, std::string("decode verdicts not kept on disk: ") + std::string(code_name(e.code())) + ": " + e.what());
      verdict_cache_error_ = true;
    }
  }

  // Counter files of exited processes: their counts are kept here and the files removed.
  void fold_dead_counters() {
    for (const auto& p : counters::read_counters(ctx_.root)) {
      if (p.alive) continue;
      if (!counters::remove_dead(ctx_.root, p)) continue;
      for (const auto& [purpose, counts] : p.purposes) {
        auto& v = folded_[purpose];
        v.resize(std::max(v.size(), counts.size()));
        for (size_t i = 0; i < counts.size(); ++i) v[i] += counts[i];
      }
    }
  }

  void record_applied(const std::string& name, const std::string& want) {
    Store(ctx_).with_state_lock([&](int state) {
      fs::Fd dir = fs::open_dir(state, "consumers", true);
      fs::write_atomic(dir.get(), name + ".applied", want, 0600);
    });
  }

  // Returns whether anything was done (the report is then collected again).
  bool keep_consumers_in_step(const Context& ctx) {
    bool acted = false;
    std::vector<StunnelInstance> instances;
    try {
      instances = parse_stunnel_config(ctx_.config);
    } catch (const Error&) {
    }
    for (const auto& c : report_.consumers) {
      if (c.state == "ok") continue;
      acted = true;
      try {
        if (c.kind == "stunnel") {
          for (const auto& in : instances) {
            if (in.name != c.name) continue;
            Store store(ctx);  // with the refresh's memo
            stunnel::InstanceReport rep = stunnel::sync_instance(store, in);
            log(rep.reload == "failed" ? LOG_ERR : LOG_NOTICE,
                "stunnel " + in.name + ": " + (rep.written ? "configuration rewritten" : "configuration unchanged") +
                    ", reload " + rep.reload + (rep.reload_detail.empty() ? "" : " (" + rep.reload_detail + ")"),
                {{"PTRUST_CONSUMER", in.name}, {"PTRUST_RELOAD", rep.reload}});
          }
          continue;
        }
        const ConsumerDecl* d = nullptr;
        for (const auto& x : hc_.consumers)
          if (x.name == c.name) d = &x;
        if (!d) continue;
        if (!d->caches_trust) {  // follows changes by itself
          record_applied(d->name, c.want);
          continue;
        }
        std::string detail;
        bool ok = !d->command.empty() ? run_command(d->command, detail) : send_reload_signal(*d->pidfile, d->signal, detail);
        log(ok ? LOG_NOTICE : LOG_ERR, "consumer " + d->name + ": reload " + (ok ? "done" : "failed") + ": " + detail,
            {{"PTRUST_CONSUMER", d->name}, {"PTRUST_RELOAD", ok ? "done" : "failed"}});
        if (ok) record_applied(d->name, c.want);
      } catch (const Error& e) {
        log(LOG_ERR, "consumer " + c.name + ": " + std::string(code_name(e.code())) + ": " + e.what(), {{"PTRUST_CONSUMER", c.name}});
      }
    }
    return acted;
  }

  // One log line per alert raised, changed or cleared (journald fields for forwarding).
  void log_transitions(const char* why) {
    std::map<std::string, status::Alert> now;
    for (auto& a : status::alerts(report_, hc_.alerts)) now[a.cls + " " + a.object] = std::move(a);
    for (const auto& [key, a] : now) {
      auto it = alerts_.find(key);
      if (it != alerts_.end() && it->second.name == a.name && it->second.message == a.message) continue;
      log(a.priority == 1 ? LOG_ERR : LOG_WARNING, "alert " + a.name + " (priority " + std::to_string(a.priority) + ") " + a.object + ": " + a.message,
          {{"PTRUST_ALERT", a.name}, {"PTRUST_ALERT_PRIORITY", std::to_string(a.priority)}, {"PTRUST_OBJECT", a.object},
           {"PTRUST_TRIGGER", why}});
    }
    for (const auto& [key, a] : alerts_)
      if (!now.count(key))
        log(LOG_INFO, "alert cleared " + a.name + " " + a.object, {{"PTRUST_ALERT_CLEARED", a.name}, {"PTRUST_OBJECT", a.object}});
    alerts_ = std::move(now);
  }

  // The next time an alert can change without any file changing: a certificate entering a
  // window or expiring, a CRL nearing or passing its nextUpdate.
  void arm_timer() {
    const AlertPolicy& p = hc_.alerts;
    std::int64_t next = 0;
    auto consider = [&](double t) {
      auto s = static_cast<std::int64_t>(std::ceil(t));
      if (s > report_.now && (next == 0 || s < next)) next = s;
    };
    for (const auto& c : report_.certs)
      for (double d : {p.expiring_30, p.expiring_14, p.expiring_07, 0.0}) consider(c.not_after - d * 86400);
    for (const auto& c : report_.crls)
      if (c.next_update) {
        consider(c.next_update - p.crl_next_update * 86400);
        consider(c.next_update + 1);
      }
    if (!next) {
      loop_.cancel_timer();
      return;
    }
    loop_.at(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(next)), [this] { refresh("timer"); });
  }

  const Common& common_;
  serve::EventLoop& loop_;
  Context ctx_;
  HostConfig hc_;
  status::Report report_;
  std::string metrics_;  // everything but the verdicts, rendered once per refresh
  status::Folded folded_;
  std::map<std::string, status::Alert> alerts_;
  std::shared_ptr<DecodeVerdicts> verdicts_ = std::make_shared<DecodeVerdicts>();
  bool verdict_cache_error_ = false;
  std::unique_ptr<fleet::Follower> follower_;
};

int serve_cmd(const Common& c, const po::variables_map& vm) {
  // A refresh at 10,000 certificates reads a 10 MB database and 6 MB bundles. glibc would
  // raise its mmap threshold after the first such buffer is freed and serve the next ones
  // from the heap, where what they leave behind fragments it and adds to the daemon's peak;
  // a fixed threshold keeps every large buffer mapped and returned to the system when freed.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Options of --follow alone: without it they would be silently ignored (a host believing it
  // requires signed documents when it follows nothing).
  if (!vm.count("follow") && (vm["require-signature"].as<bool>() || vm.count("host-uuid")))
    throw Error(Code::kUsage, "--require-signature and --host-uuid need --follow");
  serve::EventLoop loop;
  Daemon d(c, loop);
  std::optional<serve::Endpoint> metrics_at;
  if (vm.count("metrics")) metrics_at = serve::parse_loopback_endpoint(vm["metrics"].as<std::string>());
  counters::ensure_counters_dir(d.context().root);
  auto handler = [&d](std::string_view method, const json::object& params) { return d.handle(method, params); };
  std::string where;
  if (vm.count("socket")) {
    where = vm["socket"].as<std::string>();
    loop.listen_unix(where, handler);
  } else if (loop.listen_systemd(handler)) {
    where = "the socket passed by systemd";
  } else {
    std::string root = d.context().root == "/" ? "" : d.context().root;
    where = root + "/run/ptrust/ptrust.sock";
    loop.listen_unix(where, handler);
  }
  if (metrics_at) {
    serve::Endpoint bound = loop.listen_metrics(*metrics_at, [&d] { return d.metrics(); });
    std::string addr = bound.address.is_v6() ? "[" + bound.address.to_string() + "]" : bound.address.to_string();
    where += ", metrics on http://" + addr + ":" + std::to_string(bound.port) + "/metrics";
  }
  loop.handle_signals([&d] { d.on_hup(); });
  d.start_watching();
  d.refresh("start");
  if (vm.count("follow")) {
    std::string name;
    fleet::Endpoint ep = fleet::parse_follow_spec(vm["follow"].as<std::string>(), name);
    apply_etcd_tls_options(ep, vm, d.context());
    std::string host = fleet::host_uuid(vm.count("host-uuid") ? vm["host-uuid"].as<std::string>() : "", d.context().root);
    d.follow(ep, name, host, vm["allow-mode-change"].as<bool>(), vm["require-signature"].as<bool>());
    where += ", following fleet " + name + " as host " + host;
  }
  log(LOG_INFO, "serving " + where + " (root " + d.context().root + ")");
  serve::notify_ready();
  loop.run();
  serve::notify_stopping();
  log(LOG_INFO, "stopped");
  return 0;
}

}  // namespace

void add_serve_commands(std::vector<Command>& out) {
  out.push_back({"serve", "[--socket PATH] [--metrics 127.0.0.1:PORT] [--follow etcd://HOST:PORT/FLEET [--host-uuid UUID]]",
                 "run the daemon: status and alerts on a Unix socket, metrics on loopback, consumers kept in step",
                 false,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("socket", po::value<std::string>(),
                                   "Unix socket to serve (default: the one systemd passes, else <root>/run/ptrust/ptrust.sock)")(
                       "metrics", po::value<std::string>(),
                       "serve Prometheus metrics at http://HOST:PORT/metrics; HOST must be loopback (127.0.0.1, [::1])")(
                       "follow", po::value<std::string>(),
                       "converge to the fleet's desired document in etcd (etcd://HOST:PORT/FLEET, HOST loopback, or "
                       "etcds://HOST:PORT/FLEET with --etcd-purpose; "
                       "see `ptrust fleet publish`): exactly its objects, validated as import does, one store change "
                       "per revision; report to etcd under /ptrust/fleets/FLEET/hosts/UUID")(
                       "host-uuid", po::value<std::string>(),
                       "with --follow: this host's UUID (default: INSTALLATION_UUID in etc/xensource-inventory)")(
                       "require-signature", po::bool_switch(),
                       "with --follow: apply only documents with a detached CMS signature (fleet publish --signature) by "
                       "a certificate pinned here for purpose fleet, signed no earlier than the last one applied; "
                       "else reported rejected (FLEET_SIGNATURE_INVALID, FLEET_SIGNATURE_STALE)");
                   add_etcd_tls_options(d);
                   add_mode_change_option(d);
                 },
                 serve_cmd});
}

}  // namespace ptrust::cli
