#include "tests/stunnel/fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace ptrust::testing {

namespace {

using Clock = std::chrono::steady_clock;

CertSpec leaf_spec(const char* cn) {
  CertSpec s;
  s.cn = cn;
  s.dns = {cn};
  s.ips = {"127.0.0.1"};
  return s;
}

CertSpec ca_spec(const char* cn) {
  CertSpec s;
  s.cn = cn;
  s.ca = true;
  return s;
}

StunnelPki make_pki() {
  StunnelPki p;
  p.root = self_signed(ca_spec("ptrust stunnel test root"));
  p.leaf = issue(leaf_spec("leaf.test"), p.root);
  p.revoked = issue(leaf_spec("leaf.test"), p.root);
  p.other_ca = self_signed(ca_spec("ptrust stunnel other root"));
  p.other_leaf = issue(leaf_spec("leaf.test"), p.other_ca);
  p.general_ca = self_signed(ca_spec("ptrust stunnel general root"));
  p.general_leaf = issue(leaf_spec("general.test"), p.general_ca);
  p.pinned = self_signed(leaf_spec("peer.test"));
  p.impostor = self_signed(leaf_spec("peer.test"));
  p.inter = issue(ca_spec("ptrust stunnel intermediate"), p.root);
  p.inter_leaf = issue(leaf_spec("leaf.test"), p.inter);
  p.crl = make_crl(p.root, {p.revoked.cert.get(), p.inter.cert.get()});
  p.inter_crl = make_crl(p.inter, {});
  p.other_crl = make_crl(p.other_ca, {});
  p.general_crl = make_crl(p.general_ca, {});
  CertSpec cn_only;
  cn_only.cn = "leaf.test";
  p.cn_only = issue(cn_only, p.root);
  EVP_PKEY_up_ref(p.pinned.key.get());
  p.pinned_reissued = issue_with_key(leaf_spec("peer.test"), p.pinned, ossl::PkeyPtr(p.pinned.key.get()));
  EVP_PKEY_up_ref(p.pinned.key.get());
  p.pinned_renamed = issue_with_key(leaf_spec("renamed.test"), p.pinned, ossl::PkeyPtr(p.pinned.key.get()));
  EVP_PKEY_up_ref(p.leaf.key.get());
  p.leaf_reissued = issue_with_key(leaf_spec("leaf.test"), p.root, ossl::PkeyPtr(p.leaf.key.get()));
  return p;
}

// environ without ptrust/OpenSSL settings, plus `extra`.
std::vector<std::string> clean_env(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    if (s.rfind("PTRUST_", 0) == 0 || s.rfind("OPENSSL_", 0) == 0) continue;
    out.push_back(s);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& out_file) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) ++n;
  return n;
}

std::string slurp(const std::string& path) {
  try {
    return read_file(path);
  } catch (...) {
    return "";
  }
}

}  // namespace

const StunnelPki& StunnelPki::get() {
  static const StunnelPki pki = make_pki();
  return pki;
}

Env::Env() : root_(dir_.path() + "/root") {
  std::filesystem::create_directories(root_ + "/etc/ptrust");
  std::filesystem::create_directories(dir_.path() + "/pki");
  write_config("");
  const StunnelPki& p = StunnelPki::get();
  const std::pair<const char*, const Issued*> files[] = {
      {"root", &p.root},         {"leaf", &p.leaf},         {"revoked", &p.revoked},
      {"other_ca", &p.other_ca}, {"other_leaf", &p.other_leaf}, {"general_ca", &p.general_ca},
      {"general_leaf", &p.general_leaf}, {"pinned", &p.pinned}, {"impostor", &p.impostor},
      {"inter", &p.inter},       {"inter_leaf", &p.inter_leaf}, {"cn_only", &p.cn_only},
      {"pinned_reissued", &p.pinned_reissued}, {"pinned_renamed", &p.pinned_renamed},
      {"leaf_reissued", &p.leaf_reissued},
  };
  for (const auto& [name, c] : files) {
    write_file(pem(name), c->pem());
    write_file(key(name), c->key_pem());
  }
  write_file(path("pki/root.crl"), crl_pem(p.crl.get()));
  write_file(path("pki/inter.crl"), crl_pem(p.inter_crl.get()));
  write_file(path("pki/other_ca.crl"), crl_pem(p.other_crl.get()));
  write_file(path("pki/general_ca.crl"), crl_pem(p.general_crl.get()));
}

void Env::write_config(const std::string& extra) const {
  write_file(config_file(), "purposes:\n  licensing: {}\n  ldaps: {}\n  peer: {}\n" + extra);
}

RunResult Env::ptrust(const std::vector<std::string>& args) const { return testing::ptrust(root_, args); }

std::string Env::install(const std::string& name, const std::string& type, const std::string& purposes) const {
  std::vector<std::string> args{"install", pem(name), "--" + type};
  if (!purposes.empty()) args.insert(args.end(), {"--purpose", purposes});
  RunResult r = ptrust(args);
  if (r.status != 0) throw std::runtime_error("ptrust install " + name + ": " + r.err);
  return r.out.substr(0, r.out.find('\n'));
}

void Env::uninstall(const std::string& uuid) const {
  RunResult r = ptrust({"uninstall", uuid});
  if (r.status != 0) throw std::runtime_error("ptrust uninstall: " + r.err);
}

void Env::install_crl(const std::string& name, const std::string& purposes) const {
  std::vector<std::string> args{"crl", "install", path("pki/" + name + ".crl"), "--name", name + ".crl"};
  if (!purposes.empty()) args.insert(args.end(), {"--purpose", purposes});
  RunResult r = ptrust(args);
  if (r.status != 0) throw std::runtime_error("ptrust crl install: " + r.err);
}

namespace {

std::vector<std::string> tls_server_args(const Env& env, const std::string& name, const std::string& chain) {
  // -www answers "HTTP/1.0 200 ok" and never reads stdin.
  std::vector<std::string> args{"-cert", env.pem(name), "-key", env.key(name), "-www"};
  if (!chain.empty()) args.insert(args.end(), {"-cert_chain", env.pem(chain)});
  return args;
}

std::string tls_server_log(const Env& env, const std::string& name) {
  static int seq = 0;
  return env.path("s_server-" + name + "-" + std::to_string(++seq) + ".log");
}

}  // namespace

TlsServer::TlsServer(const Env& env, const std::string& name, const std::string& chain)
    : server_(tls_server_args(env, name, chain), tls_server_log(env, name)) {}

std::string stunnel_globals(const std::string& log, const std::string& pidfile) {
  return "foreground = yes\ndebug = 7\noutput = " + log + "\npid = " + pidfile + "\n";
}

Stunnel::Stunnel(const std::string& conf, const std::string& log, const std::vector<std::string>& env)
    : log_(log) {
  pid_ = spawn({"stunnel", conf}, clean_env(env), log + ".stderr");
}

Stunnel::~Stunnel() {
  if (status_ < 0) kill_and_reap(pid_);
}

std::string Stunnel::log() const { return slurp(log_) + slurp(log_ + ".stderr"); }

bool Stunnel::wait_configured(int n, int services) {
  constexpr std::string_view kDone = "Configuration successful";
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    std::string l = slurp(log_);
    size_t pos = std::string::npos;
    for (int i = 0; i < n; ++i) {
      pos = l.find(kDone, pos == std::string::npos ? 0 : pos + 1);
      if (pos == std::string::npos) break;
    }
    if (pos != std::string::npos) {
      // Listening sockets are bound after the configuration is loaded (again on reload).
      std::string after = l.substr(pos);
      if (n == 1 ? after.find("Accepting new connections") != std::string::npos
                 : count(after, " bound to ") >= static_cast<size_t>(services))
        return true;
    }
    int st = 0;
    if (status_ < 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int Stunnel::wait_exit() {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (status_ < 0 && Clock::now() < deadline) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kEstablished: return "established";
    case Outcome::kRefused: return "refused";
    case Outcome::kOther: return "other";
  }
  return "?";
}

namespace {

std::string exchange(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    return "<connect failed>";
  }
  const char req[] = "GET / HTTP/1.0\r\n\r\n";
  (void)!::send(s, req, sizeof req - 1, MSG_NOSIGNAL);
  std::string got;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n <= 0) break;  // EOF or reset
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(s);
  return got;
}

}  // namespace

Outcome through(int port, const Stunnel& st) {
  constexpr const char* kRejected = "Rejected by CERT";
  size_t before = count(st.log(), kRejected);
  std::string got = exchange(port);
  if (got.rfind("HTTP/1.0 200 ok", 0) == 0) return Outcome::kEstablished;
  if (!got.empty()) return Outcome::kOther;
  auto deadline = Clock::now() + std::chrono::seconds(3);
  while (Clock::now() < deadline) {
    if (count(st.log(), kRejected) > before) return Outcome::kRefused;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Outcome::kOther;
}

}  // namespace ptrust::testing
