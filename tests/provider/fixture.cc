#include "tests/provider/fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>

extern char** environ;

namespace ptrust::testing {

namespace {

CertSpec spec(const char* cn, bool ca) {
  CertSpec s;
  s.cn = cn;
  s.ca = ca;
  if (!ca) s.dns = {"localhost"}, s.ips = {"127.0.0.1"};
  return s;
}

Pki make_pki() {
  Pki p;
  p.root = self_signed(spec("ptrust test root", true));
  p.inter = issue(spec("ptrust test intermediate", true), p.root);
  p.leaf = issue(spec("leaf.test", false), p.inter);
  p.revoked = issue(spec("revoked.test", false), p.inter);
  p.other_ca = self_signed(spec("ptrust other root", true));
  p.other_leaf = issue(spec("leaf.test", false), p.other_ca);
  p.general_ca = self_signed(spec("ptrust general root", true));
  p.general_leaf = issue(spec("general.test", false), p.general_ca);
  p.pinned = self_signed(spec("peer.test", false));
  p.impostor = self_signed(spec("peer.test", false));
  p.crl = make_crl(p.inter, {p.revoked.cert.get()});
  return p;
}

std::string der_of(X509* x) {
  unsigned char* buf = nullptr;
  int n = i2d_X509(x, &buf);
  std::string s(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
  OPENSSL_free(buf);
  return s;
}

}  // namespace

const Pki& Pki::get() {
  static const Pki pki = make_pki();
  return pki;
}

Obj cert_obj(const Issued& c) { return {'C', der_of(c.cert.get())}; }
Obj crl_obj(X509_CRL* c) { return {'R', crl_der(c)}; }

StoreRoot::StoreRoot() : root_(dir_.path() + "/root") {
  std::filesystem::create_directories(root_ + "/etc/ptrust");
  std::filesystem::create_directories(dir_.path() + "/pki");
  write_file(root_ + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  peer: {}\n");
  const Pki& p = Pki::get();
  const std::pair<const char*, const Issued*> files[] = {
      {"root", &p.root},         {"inter", &p.inter},           {"leaf", &p.leaf},
      {"revoked", &p.revoked},   {"other_ca", &p.other_ca},     {"other_leaf", &p.other_leaf},
      {"general_ca", &p.general_ca}, {"general_leaf", &p.general_leaf}, {"pinned", &p.pinned},
      {"impostor", &p.impostor},
  };
  for (const auto& [name, c] : files) {
    write_file(pki(std::string(name) + ".pem"), c->pem());
    write_file(pki(std::string(name) + ".key"), c->key_pem());
  }
}

std::string StoreRoot::install(const std::string& pem_name, const std::string& type, const std::string& purposes) {
  std::vector<std::string> args{"install", pki(pem_name + ".pem"), "--" + type};
  if (!purposes.empty()) args.insert(args.end(), {"--purpose", purposes});
  RunResult r = ptrust(root_, args);
  if (r.status != 0) throw std::runtime_error("ptrust install " + pem_name + ": " + r.err);
  return r.out.substr(0, r.out.find('\n'));
}

void StoreRoot::uninstall(const std::string& uuid) {
  // The provider tests move purposes between modes on purpose (a CA removed: general serves).
  RunResult r = ptrust(root_, {"uninstall", uuid, "--allow-mode-change"});
  if (r.status != 0) throw std::runtime_error("ptrust uninstall " + uuid + ": " + r.err);
}

void StoreRoot::add_crl(const std::string& name, X509_CRL* crl) {
  std::filesystem::create_directories(crl_dir());
  write_file(crl_dir() + "/" + name, crl_pem(crl));
}

void StoreRoot::populate() {
  root_uuid = install("root", "ca", "licensing");
  general_uuid = install("general_ca", "ca");
  pinned_uuid = install("pinned", "pinned", "peer");
  peer_ca_uuid = install("root", "ca", "peer");
  add_crl("inter.crl", Pki::get().crl.get());
}

std::vector<std::string> provider_args() {
  return {"-provider-path", PTRUST_PROVIDER_DIR, "-provider", "ptrust", "-provider", "default"};
}

RunResult openssl(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& cwd) {
  std::vector<std::string> argv{"env", "-u", "PTRUST_ROOT", "-u", "PTRUST_CONFIG", "-u", "OPENSSL_CONF",
                                "-u", "OPENSSL_MODULES"};
  if (!cwd.empty()) argv.insert(argv.end(), {"-C", cwd});
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back("openssl");
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::vector<Obj> parse_storeutl(const std::string& out) {
  std::vector<Obj> objs;
  ossl::BioPtr bio(BIO_new_mem_buf(out.data(), static_cast<int>(out.size())));
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) break;
    std::string n(name);
    char type = n == "CERTIFICATE" ? 'C' : n == "X509 CRL" ? 'R' : '?';
    objs.emplace_back(type, std::string(reinterpret_cast<char*>(data), static_cast<size_t>(len)));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
  }
  ERR_clear_error();
  return objs;
}

namespace {

std::vector<std::string> server_args(const std::string& cert, const std::string& key, const std::string& chain) {
  std::vector<std::string> args{"-cert", cert, "-key", key};
  if (!chain.empty()) args.insert(args.end(), {"-cert_chain", chain});
  args.insert(args.end(), {"-naccept", "1", "-www"});  // -www: never reads stdin
  return args;
}

std::string log_path() {
  static int seq = 0;
  return std::filesystem::temp_directory_path().string() + "/ptrust-s_server-" + std::to_string(::getpid()) + "-" +
         std::to_string(++seq) + ".log";
}

}  // namespace

Server::Server(const std::string& cert, const std::string& key, const std::string& chain)
    : log_(log_path()), server_(server_args(cert, key, chain), log_) {}

Server::~Server() { ::unlink(log_.c_str()); }

}  // namespace ptrust::testing
