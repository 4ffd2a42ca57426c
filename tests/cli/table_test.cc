// The `ptrust` command as a table of cases: tests/cli/cases.tsv lists argument lists with the
// exit code and what stdout and stderr must show. The same table is the reference for the
// man page and the shell completion: what a user types and what they get back.
//
// Each case runs in a fresh root (unless it names its own --root) with a fixed configuration (purposes licensing, ldaps and
// wlb with crl-policy require) and inputs made in the run under {in}: ca.pem (a CA),
// leaf.pem (issued by it: DNS leaf.test, IP 127.0.0.1), key.pem (the leaf's private key),
// crl1.pem / crl2.pem (the CA's CRLs with crlNumber 1 and 2), other.pem (another CA).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/run.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {
namespace {

struct Case {
  int line = 0;
  std::string name, setup, args;
  int exit = 0;
  std::string out, err;  // regex searched in the output; "-" = must be empty; "*" = anything
};

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<Case> load() {
  std::vector<Case> cases;
  std::ifstream in(PTRUST_CLI_CASES);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string col; std::getline(ss, col, '\t');) f.push_back(col);
    if (f.size() != 6) throw std::runtime_error("cases.tsv:" + std::to_string(n) + ": expected 6 tab-separated columns");
    cases.push_back({n, f[0], f[1], f[2], std::stoi(f[3]), f[4], f[5]});
  }
  return cases;
}

struct Inputs {
  TempDir dir;
  Inputs() {
    Issued ca = self_signed({.cn = "Table Root", .ca = true});
    Issued leaf = issue({.cn = "leaf.test", .dns = {"leaf.test"}, .ips = {"127.0.0.1"}}, ca);
    Issued other = self_signed({.cn = "Other Root", .ca = true});
    write_file(dir / "ca.pem", ca.pem());
    write_file(dir / "leaf.pem", leaf.pem());
    write_file(dir / "key.pem", leaf.key_pem());
    write_file(dir / "other.pem", other.pem());
    write_file(dir / "crl1.pem", crl_pem(make_crl_spec(ca, {}, {.number = 1}).get()));
    write_file(dir / "crl2.pem", crl_pem(make_crl_spec(ca, {leaf.cert.get()}, {.number = 2}).get()));
    write_file(dir / "cfg.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  wlb: { crl-policy: require }\n");
  }
};

const Inputs& inputs() {
  static Inputs i;
  return i;
}

std::string expand(std::string s, const std::string& root) {
  for (auto [key, value] : {std::pair<std::string, std::string>{"{in}", inputs().dir.path()}, {"{root}", root}})
    for (size_t at; (at = s.find(key)) != std::string::npos;) s.replace(at, key.size(), value);
  return s;
}

RunResult pt(const std::string& root, const std::string& args) {
  std::vector<std::string> argv{PTRUST_BIN, "--config", inputs().dir / "cfg.yaml"};
  std::vector<std::string> given = words(expand(args, root));
  if (std::find(given.begin(), given.end(), "--root") == given.end()) argv.insert(argv.end(), {"--root", root});
  argv.insert(argv.end(), given.begin(), given.end());
  return run(argv);
}

void expect_shows(const std::string& what, const std::string& pattern, const std::string& text, const Case& c) {
  if (pattern == "*") return;
  if (pattern == "-") {
    EXPECT_EQ("", text) << "cases.tsv:" << c.line << " " << c.name << ": " << what << " must be empty";
    return;
  }
  EXPECT_TRUE(std::regex_search(text, std::regex(pattern)))
      << "cases.tsv:" << c.line << " " << c.name << ": " << what << " does not show /" << pattern << "/:\n" << text;
}

// gtest prints a failing parameter: its name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << "cases.tsv:" << c.line << " " << c.name; }

class CliTable : public ::testing::TestWithParam<Case> {};

TEST_P(CliTable, ExitCodeAndOutputs) {
  const Case& c = GetParam();
  TempDir root;
  if (c.setup != "-") {
    std::stringstream ss(c.setup);
    for (std::string step; std::getline(ss, step, ';');) {
      RunResult r = pt(root.path(), step);
      ASSERT_EQ(0, r.status) << "cases.tsv:" << c.line << " setup `" << step << "` failed: " << r.err;
    }
  }
  RunResult r = pt(root.path(), c.args);
  EXPECT_EQ(c.exit, r.status) << "cases.tsv:" << c.line << " " << c.name << "\nstdout: " << r.out << "\nstderr: " << r.err;
  expect_shows("stdout", c.out, r.out, c);
  expect_shows("stderr", c.err, r.err, c);
  // A refusal is one line on stderr naming a code (a failed verification says so on stdout).
  if (r.status == 1 && !r.err.empty()) {
    EXPECT_TRUE(std::regex_search(r.err, std::regex("^ptrust: [A-Z_]+: [^\n]*\n$"))) << c.name << ": " << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CliTable, ::testing::ValuesIn(load()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace ptrust::testing
