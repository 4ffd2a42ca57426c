// `ptrust status` and `ptrust alerts`: the host's health for operators and scripts.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>

#include "core/error.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/layout.h"
#include "core/trust.h"
#include "core/x509.h"
#include "helper/cli.h"
#include "helper/host_config.h"
#include "helper/status.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

// --at, as `verify --at` takes it: what the alerts will be at that time.
std::int64_t at_time(const po::variables_map& vm) {
  return vm.count("at") ? parse_time(vm["at"].as<std::string>()) : std::time(nullptr);
}

// One request to a running `ptrust serve` over its Unix socket: the whole reply object.
// Error IO_ERROR when it cannot be reached or does not answer (errno_out: connect's errno).
json::object exchange(const std::string& path, std::string_view method, json::object params, int* errno_out = nullptr) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) throw Error(Code::kUsage, "--socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  fs::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno_out) *errno_out = errno;
    throw Error(Code::kIoError, "cannot connect to " + path + ": " + std::strerror(errno) + " (is `ptrust serve` running?)");
  }
  timeval tv{.tv_sec = 30, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = json::serialize(json::object{{"method", method}, {"params", std::move(params)}, {"id", 1}}) + "\n";
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) throw Error(Code::kIoError, "cannot send to " + path + ": " + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  std::string line;
  char buf[16384];
  while (line.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) throw Error(Code::kIoError, "no answer from " + path + (n < 0 ? std::string(": ") + std::strerror(errno) : ""));
    line.append(buf, static_cast<size_t>(n));
    if (line.size() > (256u << 20)) throw Error(Code::kIoError, "answer from " + path + " too large");
  }
  boost::system::error_code ec;
  json::value v = json::parse(line.substr(0, line.find('\n')), ec);
  if (ec || !v.is_object()) throw Error(Code::kIoError, "answer from " + path + " is not a JSON object");
  return std::move(v.as_object());
}

// The result, or the daemon's refusal printed as ours (exit 1): `--socket PATH`.
std::optional<json::object> ask_daemon(const std::string& path, std::string_view method, json::object params) {
  json::object v = exchange(path, method, std::move(params));
  if (auto* e = v.if_contains("error")) {
    print_refusal(std::string(e->at("code").as_string()), std::string(e->at("message").as_string()));
    return std::nullopt;
  }
  if (auto* r = v.if_contains("result"); r && r->is_object()) return std::move(r->as_object());
  throw Error(Code::kIoError, "answer from " + path + " has no result");
}

// Without --socket, --at or --local: a `ptrust serve` running on this root's socket answers
// from its report (milliseconds; reading 10,000 certificates takes seconds), after taking in
// every change inotify reported before the request ("fresh"). Its answer is used only when it
// is about the same root and configuration and the store generation on disk is the one it
// reports; otherwise (no daemon, a stale socket, no permission, a refusal, a writer half-way)
// nullopt: the caller reads the stores itself, as it does without a daemon. A socket that
// exists but gives no usable answer is said on stderr.
std::optional<json::object> daemon_report(const Context& ctx, std::string_view method, json::object params) {
  const std::string path = (ctx.root == "/" ? "" : ctx.root) + "/run/ptrust/ptrust.sock";
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  params["fresh"] = true;
  int err = 0;
  try {
    json::object v = exchange(path, method, std::move(params), &err);
    auto* r = v.if_contains("result");
    if (!r || !r->is_object()) return std::nullopt;  // a refusal: the local run gives the same one
    json::object& o = r->as_object();
    {
      auto* root = o.if_contains("root");
      auto* cfg = o.if_contains("config_sha256");
      auto* gen = o.if_contains("generation");
      if (!root || *root != json::value(ctx.root) || !cfg || *cfg != json::value(x509::sha256_hex(ctx.config.text)) ||
          !gen || !gen->is_number())
        return std::nullopt;  // another root or configuration (--config), or an older daemon
      fs::Fd rfd = fs::open_root(ctx.root);
      fs::Fd state = fs::open_dir(rfd.get(), layout::kStateDir, false);
      if (gen->to_number<std::uint64_t>() != (state ? read_generation(state.get()) : 0)) return std::nullopt;
      o["source"] = json::object{{"daemon", path}};
    }
    return std::move(o);
  } catch (const std::exception& e) {
    if (err != ENOENT && err != ECONNREFUSED && err != EACCES)  // none there, a stale socket, not ours
      std::cerr << "ptrust: note: " << e.what() << "; reading the stores directly\n";
    return std::nullopt;
  }
}

void add_at(po::options_description& d) {
  d.add_options()("socket", po::value<std::string>(), "ask a running `ptrust serve` on this Unix socket")(
      "local", "read the stores directly even when `ptrust serve` runs on <root>/run/ptrust/ptrust.sock "
               "(without --socket, --at or --local, a running daemon answers); certificates the daemon "
               "recorded as decoding (var/lib/ptrust/cache/decode-verdicts, by SHA-256) are not decoded again")("at", po::value<std::string>(), "evaluate as of TIME (YYYY-MM-DD[THH:MM:SS[Z]], @EPOCH, +30d, -2h) instead of now");
}

int status_cmd(const Common& c, const po::variables_map& vm) {
  if (vm.count("socket")) {
    if (vm.count("at")) throw Error(Code::kUsage, "--at and --socket exclude each other (the daemon reports now)");
    json::object params{{"text", !c.json}};
    if (vm.count("purpose")) params["purpose"] = vm["purpose"].as<std::string>();
    auto r = ask_daemon(vm["socket"].as<std::string>(), "status", std::move(params));
    if (!r) return 1;
    std::string health(r->at("health").as_string());
    if (c.json) print_json(*r);
    else std::cout << r->at("text").as_string().c_str();
    return health == "ok" ? 0 : health == "warning" ? 3 : 1;
  }
  Context ctx = c.context();
  status::Options opt;
  if (vm.count("purpose")) {
    opt.purpose = vm["purpose"].as<std::string>();
    if (*opt.purpose != kGeneral && !ctx.config.declares(*opt.purpose))
      throw unknown_purpose(ctx.config, *opt.purpose, ctx.root);
  }
  if (!vm.count("at") && !vm.count("local")) {
    json::object params{{"text", !c.json}};
    if (opt.purpose) params["purpose"] = *opt.purpose;
    if (auto r = daemon_report(ctx, "status", std::move(params))) {
      std::string health(r->at("health").as_string());
      auto* text = r->if_contains("text");
      if (c.json) {
        r->erase("text");
        print_json(*r);
      } else if (text && text->is_string()) {
        std::cout << text->as_string().c_str();
      }
      return health == "ok" ? 0 : health == "warning" ? 3 : 1;
    }
  }
  // Verdicts the daemon kept on disk: only certificates not in it are decoded.
  opt.verdicts = std::make_shared<DecodeVerdicts>();
  status::load_verdict_cache(ctx.root, *opt.verdicts);
  status::Report r = status::collect(ctx, parse_host_config(ctx.config), at_time(vm), opt);
  if (c.json) {
    json::object out = status::to_json(r);
    out["source"] = "local";
    print_json(out);
  } else {
    std::cout << status::text(r);
  }
  return status::exit_status(r.health);
}

int alerts_cmd(const Common& c, const po::variables_map& vm) {
  if (vm.count("socket")) {
    if (vm.count("at")) throw Error(Code::kUsage, "--at and --socket exclude each other (the daemon reports now)");
    auto r = ask_daemon(vm["socket"].as<std::string>(), "alerts", {});
    if (!r) return 1;
    if (c.json) {
      print_json(*r);
    } else if (r->at("alerts").as_array().empty()) {
      std::cout << "no alerts\n";
    } else {
      for (const auto& a : r->at("alerts").as_array())
        std::cout << a.at("priority").as_int64() << " " << a.at("name").as_string().c_str() << " "
                  << a.at("object").as_string().c_str() << ": " << a.at("message").as_string().c_str() << "\n";
    }
    return 0;
  }
  Context ctx = c.context();
  HostConfig hc = parse_host_config(ctx.config);
  if (!vm.count("at") && !vm.count("local")) {
    if (auto r = daemon_report(ctx, "alerts", {})) {
      auto* a = r->if_contains("alerts");
      if (a && a->is_array()) {
        if (c.json) {
          print_json(json::object{{"alerts", *a}});
        } else if (a->as_array().empty()) {
          std::cout << "no alerts\n";
        } else {
          for (const auto& x : a->as_array())
            std::cout << x.at("priority").as_int64() << " " << x.at("name").as_string().c_str() << " "
                      << x.at("object").as_string().c_str() << ": " << x.at("message").as_string().c_str() << "\n";
        }
        return 0;
      }
    }
  }
  status::Options opt;
  opt.verdicts = std::make_shared<DecodeVerdicts>();
  status::load_verdict_cache(ctx.root, *opt.verdicts);
  status::Report r = status::collect(ctx, hc, at_time(vm), opt);
  auto list = status::alerts(r, hc.alerts);
  if (c.json) {
    json::array a;
    for (const auto& x : list) a.emplace_back(status::to_json(x));
    print_json(json::object{{"alerts", std::move(a)}});
  } else if (list.empty()) {
    std::cout << "no alerts\n";
  } else {
    for (const auto& x : list) std::cout << x.priority << " " << x.name << " " << x.object << ": " << x.message << "\n";
  }
  return 0;
}

}  // namespace

void add_status_commands(std::vector<Command>& out) {
  out.push_back({"status", "[--purpose P] [--at TIME | --socket PATH]",
                 "the host's trust health: ok, warning or error, then per purpose (exit 0 ok, 3 warning, 1 error)", true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>(), "report on this purpose only");
                   add_at(d);
                 },
                 status_cmd});
  out.push_back({"alerts", "[--at TIME | --socket PATH]", "the alerts a management stack raises (xapi's names and priorities), most urgent first",
                 true, [](po::options_description& d, po::positional_options_description&) { add_at(d); }, alerts_cmd});
}

}  // namespace ptrust::cli
