// Mixed writers for the crash and concurrency tests: every command that writes a store
// (install, uninstall, crl install / uninstall, legacy install / uninstall, pool add / remove,
// import, eject), picked at random, with a ledger of what each acknowledged command means.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "tests/support/run.h"
#include "tests/support/testpki.h"

namespace ptrust::testing::mixed {

// What one root holds, as `list` / `crl list` / `legacy list` / `pool list` report it.
struct Holdings {
  std::set<std::string> trusted, crls, legacy, pool;
};

inline std::set<std::string> json_names(const std::string& root, const std::vector<std::string>& args, const char* array,
                                 const char* key) {
  std::vector<std::string> a = args;
  a.push_back("--json");
  RunResult r = ptrust(root, a);
  EXPECT_EQ(r.status, 0) << r.err;
  std::set<std::string> out;
  if (r.status != 0) return out;
  boost::json::value doc = boost::json::parse(r.out);
  for (const auto& o : doc.at(array).as_array())
    out.insert(std::string(o.at(key).as_string()));
  return out;
}

inline Holdings holdings(const std::string& root) {
  return {json_names(root, {"list"}, "certificates", "uuid"), json_names(root, {"crl", "list"}, "crls", "name"),
          json_names(root, {"legacy", "list"}, "legacy", "name"), json_names(root, {"pool", "list"}, "pool", "host")};
}

enum class Known { kPresent, kAbsent, kUnknown };

// Objects of one kind: name -> what was acknowledged.
struct Ledger {
  std::map<std::string, Known> state;
  void set(const std::string& k, Known v) { state[k] = v; }
  std::vector<std::string> present() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : state)
      if (v == Known::kPresent) out.push_back(k);
    return out;
  }
  void all(Known v) {
    for (auto& [k, s] : state) s = v;
  }
  // Compares with what the root holds; returns the number of violations and takes the
  // unknown ones as found.
  int settle(const std::set<std::string>& found, const char* kind) {
    int bad = 0;
    for (auto& [k, v] : state) {
      if (v == Known::kPresent && !found.count(k)) {
        ADD_FAILURE() << kind << " " << k << " was acknowledged but is gone";
        ++bad;
      }
      if (v == Known::kAbsent && found.count(k)) {
        ADD_FAILURE() << kind << " " << k << " was acknowledged as removed but came back";
        ++bad;
      }
      if (v == Known::kUnknown) v = found.count(k) ? Known::kPresent : Known::kAbsent;
    }
    for (const auto& k : found)
      if (!state.count(k)) state[k] = Known::kPresent;  // a killed install that committed
    return bad;
  }
};

// The inputs of one mixed writer (`tag` names its objects, so concurrent writers never share
// one): CAs to install, CRL issuers of its own, an export document of its own.
struct MixedInputs {
  MixedInputs(const TempDir& in, int cas, const std::string& tag) {
    for (int i = 0; i < cas; ++i) {
      Issued ca = self_signed({.cn = tag + " Mixed CA " + std::to_string(i), .ca = true});
      ca_files.push_back(in / (tag + "-mixed" + std::to_string(i) + ".pem"));
      write_file(ca_files.back(), ca.pem());
      if (i < 4) crl_issuers.push_back(std::move(ca));
    }
    // The document: three CAs, a legacy CA and a CRL of a source host, exported by ptrust.
    TempDir source;
    for (int i = 0; i < 3; ++i) {
      Issued ca = self_signed({.cn = tag + " Imported CA " + std::to_string(i), .ca = true});
      std::string f = in / (tag + "-imp.pem");
      write_file(f, ca.pem());
      RunResult r = ptrust(source.path(), {"install", f, "--ca", "--purpose", i ? "licensing" : "ldaps"});
      if (r.status != 0) throw std::runtime_error(r.err);
      imported.trusted.insert(r.out.substr(0, 36));
      if (i == 0) {
        write_file(in / (tag + "-imp.crl"), crl_pem(make_crl(ca, {}).get()));
        RunResult c = ptrust(source.path(), {"crl", "install", in / (tag + "-imp.crl"), "--name", tag + "-imported.crl"});
        if (c.status != 0) throw std::runtime_error(c.err);
        imported.crls.insert(tag + "-imported.crl");
        RunResult l = ptrust(source.path(), {"legacy", "install", tag + "-imported.pem", f});
        if (l.status != 0) throw std::runtime_error(l.err);
        imported.legacy.insert(tag + "-imported.pem");
      }
    }
    document = in / (tag + "-export.json");
    RunResult e = ptrust(source.path(), {"export", document});
    if (e.status != 0) throw std::runtime_error(e.err);
  }
  std::vector<std::string> ca_files;
  std::vector<Issued> crl_issuers;
  Holdings imported;
  std::string document;
};

// One mixed operation over `root`: the command, and what acknowledging it (exit 0, `out`)
// means for the ledgers; `affected` lists the ledger entries a kill makes unknown.
struct MixedOp {
  std::string kind;
  std::vector<std::string> args;
  std::function<void(const std::string& out)> acknowledged;
  std::function<void()> killed;
};

struct Ledgers {
  Ledger trusted, crls, legacy, pool;
};

// Picks one operation of writer `w` (objects named after the writer, so concurrent writers
// never contend for one object). `with_eject`: eject empties everyone's stores, so only the
// single-writer run uses it.
inline MixedOp pick_op(std::mt19937& rng, const MixedInputs& in, const TempDir& scratch, Ledgers& l, int w,
                std::map<std::string, long>& crl_numbers, bool with_eject) {
  static const std::vector<std::string> kPurposes{"licensing", "ldaps", "licensing,ldaps", ""};
  const std::string tag = "w" + std::to_string(w);
  auto unknown = [](Ledger& led, std::string k) { return [&led, k] { led.set(k, Known::kUnknown); }; };
  unsigned roll = rng() % 100;
  if (roll < 22) {  // install
    std::vector<std::string> a{"install", in.ca_files[rng() % in.ca_files.size()], "--ca", "--allow-mode-change"};
    if (const auto& p = kPurposes[rng() % kPurposes.size()]; !p.empty()) a.insert(a.end(), {"--purpose", p});
    return {"install", a, [&l](const std::string& out) { l.trusted.set(out.substr(0, 36), Known::kPresent); }, [] {}};
  }
  if (roll < 40) {  // uninstall one of this writer's, or of the import
    auto live = l.trusted.present();
    if (!live.empty()) {
      std::string u = live[rng() % live.size()];
      return {"uninstall", {"uninstall", u, "--allow-mode-change"},
              [&l, u](const std::string&) { l.trusted.set(u, Known::kAbsent); }, unknown(l.trusted, u)};
    }
    return pick_op(rng, in, scratch, l, w, crl_numbers, with_eject);
  }
  if (roll < 54) {  // crl install: a newer CRL of one of four lines
    size_t i = rng() % in.crl_issuers.size();
    std::string name = tag + "-crl" + std::to_string(i) + ".crl";
    long n = ++crl_numbers[name];
    std::string file = scratch / (name + "." + std::to_string(n));
    write_file(file, crl_pem(make_crl_spec(in.crl_issuers[i], {}, {.number = n}).get()));
    return {"crl install", {"crl", "install", file, "--name", name},
            [&l, name](const std::string&) { l.crls.set(name, Known::kPresent); }, unknown(l.crls, name)};
  }
  if (roll < 62) {  // crl uninstall
    std::vector<std::string> live;
    for (const auto& n : l.crls.present())
      if (n.rfind(tag + "-", 0) == 0) live.push_back(n);
    if (!live.empty()) {
      std::string name = live[rng() % live.size()];
      return {"crl uninstall", {"crl", "uninstall", name},
              [&l, name](const std::string&) { l.crls.set(name, Known::kAbsent); }, unknown(l.crls, name)};
    }
    return pick_op(rng, in, scratch, l, w, crl_numbers, with_eject);
  }
  if (roll < 72) {  // legacy install / uninstall of one of three names
    std::string name = tag + "-legacy" + std::to_string(rng() % 3) + ".pem";
    if (l.legacy.state.count(name) && l.legacy.state[name] == Known::kPresent)
      return {"legacy uninstall", {"legacy", "uninstall", name},
              [&l, name](const std::string&) { l.legacy.set(name, Known::kAbsent); }, unknown(l.legacy, name)};
    return {"legacy install", {"legacy", "install", name, in.ca_files[rng() % in.ca_files.size()]},
            [&l, name](const std::string&) { l.legacy.set(name, Known::kPresent); }, unknown(l.legacy, name)};
  }
  if (roll < 84) {  // pool add / remove of one of three hosts
    char host[40];
    std::snprintf(host, sizeof host, "%08x-0000-4000-8000-%012x", 0xa0 + w, static_cast<unsigned>(rng() % 3));
    std::string h = host;
    if (l.pool.state.count(h) && l.pool.state[h] == Known::kPresent)
      return {"pool remove", {"pool", "remove", h},
              [&l, h](const std::string&) { l.pool.set(h, Known::kAbsent); }, unknown(l.pool, h)};
    return {"pool add", {"pool", "add", h, in.ca_files[rng() % in.ca_files.size()]},
            [&l, h](const std::string&) { l.pool.set(h, Known::kPresent); }, unknown(l.pool, h)};
  }
  if (roll < 96 || !with_eject) {  // import the document
    auto mark = [&l, &in](Known k) {
      for (const auto& u : in.imported.trusted) l.trusted.set(u, k);
      for (const auto& n : in.imported.crls) l.crls.set(n, k);
      for (const auto& n : in.imported.legacy) l.legacy.set(n, k);
    };
    return {"import", {"import", in.document, "--allow-mode-change"}, [mark](const std::string&) { mark(Known::kPresent); },
            [mark] { mark(Known::kUnknown); }};
  }
  return {"eject", {"eject", "--yes"},
          [&l](const std::string&) {
            l.trusted.all(Known::kAbsent);
            l.crls.all(Known::kAbsent);
            l.legacy.all(Known::kAbsent);
          },
          [&l] {
            l.trusted.all(Known::kUnknown);
            l.crls.all(Known::kUnknown);
            l.legacy.all(Known::kUnknown);
          }};
}

}  // namespace ptrust::testing::mixed
