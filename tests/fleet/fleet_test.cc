// Fleets end to end: a real etcd on 127.0.0.1, `ptrust fleet publish/status`, and three hosts
// (three roots, three `ptrust serve --follow` processes) converging to the desired document.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/fleet/etcd.h"
#include "tests/serve/util.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr long kDay = 24 * 3600;
constexpr const char* kFleet = "f1";

long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

void configure(const std::string& root) {
  std::filesystem::create_directories(root + "/etc/ptrust");
  write_file(root + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n");
}

// A root's etc/ snapshot; a tree a daemon is writing at that instant (a file gone mid-walk)
// is not converged yet: it reads as a tree of its own.
Tree tree_of(const std::string& root) {
  try {
    return snapshot(root + "/etc");
  } catch (const std::exception& e) {
    return Tree{{"<being written>", Node{'?', 0, e.what()}}};
  }
}

struct Host {
  explicit Host(int i) : uuid("0000000" + std::to_string(i) + "-1111-2222-3333-444444444444") { configure(root.path()); }
  TempDir root, logs;
  std::string uuid;
  std::string sock = root / "run/ptrust/ptrust.sock";
  int port = 0;
  std::string extra;  // more `serve` options
  std::unique_ptr<DaemonProcess> d;
  bool up = false;
};

class Fleet : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd.start()) << "etcd did not start";
    configure(src.path());
  }

  void start_hosts(int n = 3) {
    for (int i = 1; i <= n; ++i) {
      hosts.push_back(std::make_unique<Host>(i));
      start(*hosts.back());
    }
  }
  void start(Host& h) {
    if (!h.port) h.port = free_port();
    h.d = std::make_unique<DaemonProcess>(
        h.logs, std::string(PTRUST_BIN) + " --root " + h.root.path() + " serve --socket " + h.sock + " --metrics 127.0.0.1:" +
                    std::to_string(h.port) + " --follow etcd://127.0.0.1:" + std::to_string(etcd.port()) + "/" + kFleet +
                    " --host-uuid " + h.uuid + h.extra);
    ASSERT_TRUE(eventually([&] { return h.d->err().find("serving ") != std::string::npos; }, 10s)) << h.d->err();
    h.up = true;
  }
  void kill(Host& h) {
    ::kill(h.d->pid(), SIGKILL);
    h.d->wait();
    h.up = false;
  }

  // The source of every document: a root where certificates are installed and exported.
  std::string install(const std::string& pem, std::vector<std::string> args) {
    std::string f = src / ("in" + std::to_string(++n_) + ".pem");
    write_file(f, pem);
    args.insert(args.begin(), {"install", f});
    RunResult r = ptrust(src.path(), args);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.substr(0, 36);
  }
  std::string ca(const std::string& cn, const std::string& purpose) {
    return install(self_signed({.cn = cn, .ca = true, .not_after = 400 * kDay}).pem(), {"--ca", "--purpose", purpose});
  }
  std::string exported() { return ptrust(src.path(), {"export", "-"}).out; }

  RunResult publish(const std::string& doc, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{PTRUST_BIN, "--root", src.path(), "fleet", "publish", "--etcd", etcd.url(), "--fleet", kFleet, "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("-");
    return run(argv, doc);
  }
  // Publishes and returns the revision; fails the test when refused.
  std::int64_t published(const std::string& doc) {
    RunResult r = publish(doc);
    EXPECT_EQ(r.status, 0) << r.err;
    if (r.status != 0) return -1;
    return json::parse(r.out).at("revision").as_int64();
  }
  json::object status() {
    RunResult r = run({PTRUST_BIN, "fleet", "status", "--etcd", etcd.url(), "--fleet", kFleet, "--json"});
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? json::parse(r.out).as_object() : json::object{};
  }
  // Each host's report in etcd, by UUID.
  std::map<std::string, json::object> reports() {
    std::map<std::string, json::object> out;
    json::object s = status();
    if (auto* hs = s.if_contains("hosts"))
      for (const auto& h : hs->as_array()) out[std::string(h.at("host").as_string())] = h.as_object();
    return out;
  }
  bool all_report(const std::function<bool(const json::object&)>& ok) {
    auto r = reports();
    for (const auto& h : hosts)
      if (h->up && (!r.count(h->uuid) || !ok(r[h->uuid]))) return false;
    return true;
  }
  static Tree store(const std::string& root) { return tree_of(root); }
  // Every running host's stores byte-identical to the source's.
  bool converged() {
    Tree want = store(src.path());
    for (const auto& h : hosts)
      if (h->up && store(h->root.path()) != want) return false;
    return true;
  }
  std::string why_not_converged() {
    std::string out;
    for (const auto& h : hosts) out += h->uuid + ":\n" + diff(store(src.path()), store(h->root.path())) + h->d->err();
    return out;
  }
  json::object daemon_status(Host& h) {
    Client c = Client::at_path(h.sock);
    return c.call(R"({"id":1,"method":"status","params":{"text":true}})");
  }

  TempDir dir, src;
  Etcd etcd{dir};
  std::vector<std::unique_ptr<Host>> hosts;
  int n_ = 0;
};

TEST_F(Fleet, ThreeHostsConvergeByteIdenticallyWithinTwoSecondsOfAPublish) {
  start_hosts();
  std::string a = ca("Licensing A", "licensing");
  ca("Ldaps A", "ldaps");
  std::int64_t r1 = published(exported());
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();
  EXPECT_TRUE(eventually([&] { return all_report([&](const json::object& h) { return h.at("applied_revision") == r1; }); }));

  // A change: one more CA, one removed (exactly the desired set: removed on every host too).
  ca("Licensing B", "licensing");
  ASSERT_EQ(ptrust(src.path(), {"uninstall", a}).status, 0);
  std::string doc = exported();
  auto t0 = Clock::now();
  std::int64_t r2 = published(doc);
  ASSERT_TRUE(eventually([&] { return converged(); }, 2s)) << why_not_converged();
  long took = ms_since(t0);
  std::cout << "[ measured ] 3 hosts converged " << took << " ms after a publish returned\n";
  EXPECT_FALSE(std::filesystem::exists(hosts[0]->root / ("etc/trusted-certs/ca-licensing/" + a + ".pem")));

  // What each host says: in etcd (fleet status), on its socket, in its metrics.
  EXPECT_TRUE(eventually([&] {
    return all_report([&](const json::object& h) {
      return h.at("applied_revision") == r2 && h.at("health") == "ok" && h.at("converged") == true;
    });
  })) << json::serialize(status());
  json::object s = status();
  EXPECT_EQ(s.at("desired_revision"), r2);
  EXPECT_EQ(s.at("converged"), 3);
  RunResult text = run({PTRUST_BIN, "fleet", "status", "--etcd", etcd.url(), "--fleet", kFleet});
  EXPECT_NE(text.out.find("converged: 3 of 3 hosts"), std::string::npos) << text.out;
  json::object mine = daemon_status(*hosts[1]).at("result").as_object();
  EXPECT_EQ(mine.at("fleet").at("applied_revision"), r2);
  EXPECT_EQ(mine.at("fleet").at("source_up"), true);
  EXPECT_NE(std::string(mine.at("text").as_string()).find("applied revision " + std::to_string(r2) + ", ok, etcd reachable"),
            std::string::npos);
  std::string m = scrape_metrics(hosts[2]->port);
  EXPECT_NE(m.find("ptrust_fleet_source_up{fleet=\"f1\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("ptrust_fleet_applied_revision{fleet=\"f1\"} " + std::to_string(r2)), std::string::npos) << m;

  // Publishing the same document again moves the revision; hosts report it, nothing else changes.
  Tree before = store(hosts[0]->root.path());
  std::int64_t r3 = published(doc);
  EXPECT_TRUE(eventually([&] { return all_report([&](const json::object& h) { return h.at("applied_revision") == r3; }); }));
  EXPECT_EQ(store(hosts[0]->root.path()), before);
}

TEST_F(Fleet, HostKilledDuringAChangeCatchesUpAfterRestart) {
  start_hosts();
  ca("Licensing A", "licensing");
  published(exported());
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();

  Host& late = *hosts[2];
  for (int i = 0; i < 20; ++i) ca("Ldaps " + std::to_string(i), "ldaps");
  published(exported());
  kill(late);  // while it reads or applies the change (or just after)
  ca("Licensing B", "licensing");
  std::int64_t last = published(exported());  // while it is down
  ASSERT_TRUE(eventually([&] { return converged(); }, 2s)) << why_not_converged();
  EXPECT_NE(store(late.root.path()), store(src.path()));
  auto t0 = Clock::now();
  start(late);
  ASSERT_TRUE(eventually([&] { return converged(); }, 2s)) << why_not_converged();
  std::cout << "[ measured ] a restarted host caught up " << ms_since(t0) << " ms after its start\n";
  EXPECT_TRUE(eventually([&] { return reports()[late.uuid].at("applied_revision") == last; }));
  EXPECT_EQ(ptrust(late.root.path(), {"sync", "--check"}).status, 0) << "the store is consistent after the kill";
}

TEST_F(Fleet, EtcdStoppedAndRestartedMidStream) {
  start_hosts();
  ca("Licensing A", "licensing");
  std::int64_t r1 = published(exported());
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();
  Tree good = store(src.path());

  etcd.kill();
  for (auto& h : hosts) {
    EXPECT_TRUE(eventually([&] { return scrape_metrics(h->port).find("ptrust_fleet_source_up{fleet=\"f1\"} 0") != std::string::npos; }))
        << h->d->err();
    json::object f = daemon_status(*h).at("result").at("fleet").as_object();
    EXPECT_EQ(f.at("source_up"), false);
    EXPECT_EQ(f.at("applied_revision"), r1) << "the last good state is still the one served";
    EXPECT_EQ(store(h->root.path()), good);
  }
  EXPECT_NE(std::string(daemon_status(*hosts[0]).at("result").at("text").as_string()).find("etcd NOT reachable, serving the last good state"),
            std::string::npos);
  RunResult down = run({PTRUST_BIN, "fleet", "status", "--etcd", etcd.url(), "--fleet", kFleet});
  EXPECT_EQ(down.status, 1);
  EXPECT_NE(down.err.find("FLEET_SOURCE_UNAVAILABLE"), std::string::npos) << down.err;

  ASSERT_TRUE(etcd.start());
  for (auto& h : hosts)  // backoff is at most 5 s
    EXPECT_TRUE(eventually([&] { return scrape_metrics(h->port).find("ptrust_fleet_source_up{fleet=\"f1\"} 1") != std::string::npos; }, 10s))
        << h->d->err();
  ca("Licensing B", "licensing");
  auto t0 = Clock::now();
  std::int64_t r2 = published(exported());
  ASSERT_TRUE(eventually([&] { return converged(); }, 2s)) << why_not_converged();
  std::cout << "[ measured ] converged " << ms_since(t0) << " ms after a publish to the restarted etcd\n";
  EXPECT_TRUE(eventually([&] { return all_report([&](const json::object& h) { return h.at("applied_revision") == r2; }); }));
}

// What a writer to etcd alone could plant: refused by every host, reported by every host, and
// refused by `fleet publish` with the code `import` gives for the same document.
TEST_F(Fleet, HostileDocumentIsAppliedNowhereAndEveryHostReportsIt) {
  start_hosts();
  Issued lic = self_signed({.cn = "Licensing A", .ca = true, .not_after = 400 * kDay});
  install(lic.pem(), {"--ca", "--purpose", "licensing"});
  std::string good = exported();
  std::int64_t r1 = published(good);
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();
  Tree before = store(src.path());

  auto edited = [&](const std::function<void(json::object&)>& f) {
    json::object d = json::parse(good).as_object();
    f(d);
    return json::serialize(d);
  };
  auto first_trusted = [](json::object& d) -> json::object& { return d.at("trusted").as_array().at(0).as_object(); };
  struct Case {
    std::string name, doc;
    bool publish_refuses = true;
  };
  std::vector<Case> cases = {
      {"not JSON", "{\"format\": \"ptrust-export\", "},
      {"a private key with the certificate",
       edited([&](json::object& d) { first_trusted(d)["pem"] = lic.pem() + lic.key_pem(); })},
      {"a path for a legacy name",
       edited([&](json::object& d) {
         d["legacy"] = json::array{json::object{{"name", "../../../etc/passwd"}, {"installed_at", 1}, {"pem", lic.pem()}}};
       })},
      {"a path for a UUID", edited([&](json::object& d) { first_trusted(d)["uuid"] = "../../etc/trusted-certs/x"; })},
      {"an undeclared purpose", edited([&](json::object& d) { first_trusted(d)["purposes"] = json::array{"backdoor"}; })},
      // Declared by the document itself: a publisher accepts it, hosts keep to their own ptrust.yaml.
      {"a purpose only the document declares",
       edited([&](json::object& d) {
         first_trusted(d)["purposes"] = json::array{"backdoor"};
         d["purposes"] = json::object{{"backdoor", json::object{}}};
       }),
       false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    // The code `import` gives for this document on a fresh root.
    TempDir scratch;
    configure(scratch.path());
    write_file(scratch / "doc.json", c.doc);
    RunResult imp = ptrust(scratch.path(), {"import", scratch / "doc.json"});
    ASSERT_NE(imp.status, 0);
    std::string code = imp.err.substr(8, imp.err.find(':', 8) - 8);  // "ptrust: CODE: ..."

    std::int64_t desired = status().at("desired_revision").as_int64();
    RunResult pub = publish(c.doc);
    if (c.publish_refuses) {
      EXPECT_NE(pub.status, 0);
      EXPECT_EQ(pub.err.rfind("ptrust: " + code + ":", 0), 0u) << pub.err;
      EXPECT_EQ(status().at("desired_revision"), desired) << "nothing was written";
      ASSERT_TRUE(etcd.put("/ptrust/fleets/f1/desired", c.doc));  // as a writer to etcd alone could
    } else {
      EXPECT_EQ(pub.status, 0) << pub.err;
    }
    std::int64_t bad = status().at("desired_revision").as_int64();
    ASSERT_GT(bad, desired);
    EXPECT_TRUE(eventually([&] {
      return all_report([&](const json::object& h) {
        return h.at("seen_revision") == bad && h.at("applied_revision") == r1 && h.at("health") == "rejected" &&
               std::string(h.at("error").as_string()).rfind(code + ":", 0) == 0;
      });
    })) << json::serialize(status());
    for (auto& h : hosts) {
      EXPECT_EQ(store(h->root.path()), before) << h->uuid;
      EXPECT_NE(scrape_metrics(h->port).find("ptrust_fleet_document_rejected{fleet=\"f1\"} 1"), std::string::npos);
    }
    EXPECT_NE(std::string(daemon_status(*hosts[0]).at("result").at("text").as_string()).find("rejected (" + code + ":"),
              std::string::npos);
  }
  // A good document after the bad ones is applied again.
  std::int64_t r2 = published(good);
  EXPECT_TRUE(eventually([&] {
    return all_report([&](const json::object& h) { return h.at("applied_revision") == r2 && h.at("health") == "ok"; });
  }));
}

// Signed documents: hosts with --require-signature apply only a document signed (offline, with
// stock `openssl cms`) by the key pinned for purpose `fleet`, never an older one than they
// applied (a replay); everything else is refused by every host, reported, and changes nothing.
TEST_F(Fleet, SignedDocumentsAreAppliedOnlyWhenSignedByThePinnedKeyAndNotOlder) {
  Issued signer = self_signed({.cn = "fleet signer", .not_after = 400 * kDay});
  Issued impostor = self_signed({.cn = "fleet signer", .not_after = 400 * kDay});  // same name, other key
  write_file(dir / "signer.pem", signer.pem());
  write_file(dir / "signer.key", signer.key_pem());
  write_file(dir / "impostor.pem", impostor.pem());
  write_file(dir / "impostor.key", impostor.key_pem());
  auto with_fleet_purpose = [&](const std::string& root, bool pin) {
    write_file(root + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  fleet: {}\n");
    if (pin) {
      ASSERT_EQ(ptrust(root, {"install", dir / "signer.pem", "--pinned", "--purpose", "fleet"}).status, 0);
    }
  };
  with_fleet_purpose(src.path(), true);
  for (int i = 1; i <= 3; ++i) {
    hosts.push_back(std::make_unique<Host>(i));
    hosts.back()->extra = " --require-signature";
    with_fleet_purpose(hosts.back()->root.path(), true);
    start(*hosts.back());
  }
  int n = 0;
  auto sign = [&](const std::string& doc, const std::string& who) {
    std::string d = dir / ("doc" + std::to_string(++n)), sig = d + ".sig";
    write_file(d, doc);
    RunResult r = run({"openssl", "cms", "-sign", "-binary", "-nocerts", "-outform", "DER", "-signer", dir / (who + ".pem"),
                       "-inkey", dir / (who + ".key"), "-in", d, "-out", sig});
    EXPECT_EQ(r.status, 0) << r.err;
    return sig;
  };
  auto read = [](const std::string& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };

  // Signed by the pinned key: applied on every host, and the signing time kept.
  ca("Licensing A", "licensing");
  std::string doc1 = exported();
  std::string sig1 = sign(doc1, "signer");
  RunResult pub1 = publish(doc1, {"--signature", sig1});
  ASSERT_EQ(pub1.status, 0) << pub1.err;
  std::int64_t r1 = json::parse(pub1.out).at("revision").as_int64();
  EXPECT_EQ(json::parse(pub1.out).at("signer"), "/CN=fleet signer");
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();
  EXPECT_TRUE(eventually([&] { return all_report([&](const json::object& h) { return h.at("applied_revision") == r1 && h.at("health") == "ok"; }); }));
  json::object f = daemon_status(*hosts[0]).at("result").at("fleet").as_object();
  EXPECT_EQ(f.at("signature_required"), true);
  EXPECT_EQ(f.at("signer"), "/CN=fleet signer");
  EXPECT_GT(f.at("signed_at").as_int64(), 0);
  EXPECT_TRUE(std::filesystem::exists(hosts[0]->root / "var/lib/ptrust/fleet-f1.signed-at"));

  // A host with nothing pinned for purpose fleet applies nothing.
  auto unpinned = std::make_unique<Host>(4);
  unpinned->extra = " --require-signature";
  with_fleet_purpose(unpinned->root.path(), false);
  Tree empty = store(unpinned->root.path());
  start(*unpinned);
  EXPECT_TRUE(eventually([&] {
    auto r = reports();
    return r.count(unpinned->uuid) && r[unpinned->uuid].at("health") == "rejected" &&
           std::string(r[unpinned->uuid].at("error").as_string()).rfind("FLEET_SIGNATURE_INVALID:", 0) == 0;
  })) << json::serialize(status());
  EXPECT_EQ(store(unpinned->root.path()), empty);
  kill(*unpinned);

  Tree good = store(src.path());
  ca("Ldaps B", "ldaps");
  std::string doc2 = exported();
  struct Case {
    std::string name, doc, sig;  // sig: a file ("" = unsigned)
    std::string code, why;  // why: in the message
  };
  std::vector<Case> cases = {
      {"unsigned", doc2, "", "FLEET_SIGNATURE_INVALID", "none (the fleet requires signed documents"},
      {"changed after signing", doc2, sig1, "FLEET_SIGNATURE_INVALID", "does not verify over this document"},
      {"signed by another key", doc2, sign(doc2, "impostor"), "FLEET_SIGNATURE_INVALID", "not made by a key pinned for purpose fleet"},
      {"not a signature", doc2, dir / "signer.pem", "FLEET_SIGNATURE_INVALID", "not one DER CMS structure"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::int64_t desired = status().at("desired_revision").as_int64();
    if (c.sig.empty()) {
      ASSERT_EQ(publish(c.doc).status, 0) << "a publisher need not sign";
    } else {
      RunResult pub = publish(c.doc, {"--signature", c.sig});
      EXPECT_EQ(pub.status, 1);
      EXPECT_EQ(pub.err.rfind("ptrust: " + c.code + ":", 0), 0u) << pub.err;
      EXPECT_NE(pub.err.find(c.why), std::string::npos) << pub.err;
      EXPECT_EQ(status().at("desired_revision"), desired) << "nothing was written";
      // As a writer to etcd alone could: the signature first, then the document.
      ASSERT_TRUE(etcd.put("/ptrust/fleets/f1/desired.sig", read(c.sig)));
      ASSERT_TRUE(etcd.put("/ptrust/fleets/f1/desired", c.doc));
    }
    std::int64_t bad = status().at("desired_revision").as_int64();
    ASSERT_GT(bad, desired);
    EXPECT_TRUE(eventually([&] {
      return all_report([&](const json::object& h) {
        return h.at("seen_revision") == bad && h.at("applied_revision") == r1 && h.at("health") == "rejected" &&
               std::string(h.at("error").as_string()).rfind(c.code + ":", 0) == 0 &&
               std::string(h.at("error").as_string()).find(c.why) != std::string::npos;
      });
    })) << json::serialize(status());
    for (auto& h : hosts) EXPECT_EQ(store(h->root.path()), good) << h->uuid;
  }

  // Validly signed, but without the fleet pin: applying it would leave the hosts unable to
  // verify the next document.
  {
    TempDir unpinned_src;
    configure(unpinned_src.path());
    write_file(unpinned_src / "etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  fleet: {}\n");
    std::string no_pin = ptrust(unpinned_src.path(), {"export", "-"}).out;
    RunResult pub = publish(no_pin, {"--signature", sign(no_pin, "signer")});
    ASSERT_EQ(pub.status, 0) << pub.err;
    std::int64_t rev = json::parse(pub.out).at("revision").as_int64();
    EXPECT_TRUE(eventually([&] {
      return all_report([&](const json::object& h) {
        return h.at("seen_revision") == rev && h.at("applied_revision") == r1 && h.at("health") == "rejected" &&
               std::string(h.at("error").as_string()).rfind("FLEET_DOCUMENT_CUTS_OFF:", 0) == 0;
      });
    })) << json::serialize(status());
    for (auto& h : hosts) EXPECT_EQ(store(h->root.path()), good) << h->uuid;
  }

  // A newer signed document is applied; the older one published again (by anyone: its
  // signature is valid) is not, also by a host restarted in between.
  std::this_thread::sleep_for(1100ms);  // signingTime counts seconds
  std::string sig2 = sign(doc2, "signer");
  RunResult pub2 = publish(doc2, {"--signature", sig2});
  ASSERT_EQ(pub2.status, 0) << pub2.err;
  std::int64_t r2 = json::parse(pub2.out).at("revision").as_int64();
  ASSERT_TRUE(eventually([&] { return converged(); }, 10s)) << why_not_converged();
  EXPECT_TRUE(eventually([&] { return all_report([&](const json::object& h) { return h.at("applied_revision") == r2; }); }));
  Tree newer = store(src.path());
  kill(*hosts[0]);
  start(*hosts[0]);
  RunResult replay = publish(doc1, {"--signature", sig1});
  ASSERT_EQ(replay.status, 0) << replay.err;
  std::int64_t r3 = json::parse(replay.out).at("revision").as_int64();
  EXPECT_TRUE(eventually([&] {
    return all_report([&](const json::object& h) {
      return h.at("seen_revision") == r3 && h.at("applied_revision") == r2 && h.at("health") == "rejected" &&
             std::string(h.at("error").as_string()).rfind("FLEET_SIGNATURE_STALE:", 0) == 0;
    });
  })) << json::serialize(status());
  for (auto& h : hosts) EXPECT_EQ(store(h->root.path()), newer) << h->uuid;
}

TEST_F(Fleet, TwoConcurrentPublishersOneWinsTheOtherGetsTheConflictCode) {
  ca("Licensing A", "licensing");
  std::string doc_a = exported();
  ca("Ldaps B", "ldaps");
  std::string doc_b = exported();
  std::int64_t rev = published(doc_a);
  write_file(dir / "a.json", doc_a);
  write_file(dir / "b.json", doc_b);
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string expect = std::to_string(rev);
    auto args = [&](const std::string& f) {
      return std::vector<std::string>{PTRUST_BIN, "--root", src.path(), "fleet", "publish", "--etcd", etcd.url(), "--fleet",
                                      kFleet, "--expect-revision", expect, f};
    };
    Background one(args(dir / "a.json"), dir.path()), two(args(dir / "b.json"), dir.path());
    RunResult r1 = one.wait(), r2 = two.wait();
    EXPECT_EQ((r1.status == 0) + (r2.status == 0), 1) << r1.err << r2.err;
    const RunResult& loser = r1.status == 0 ? r2 : r1;
    const RunResult& winner = r1.status == 0 ? r1 : r2;
    EXPECT_EQ(loser.status, 1);
    EXPECT_EQ(loser.err.rfind("ptrust: FLEET_CONFLICT:", 0), 0u) << loser.err;
    // etcd holds the winner's document.
    RunResult got = etcd.ctl({"get", "--print-value-only", "/ptrust/fleets/f1/desired"});
    EXPECT_EQ(got.out, (&winner == &r1 ? doc_a : doc_b) + "\n");
    rev = status().at("desired_revision").as_int64();
  }
  // Without --expect-revision, the revision read just before: a stale one is refused.
  RunResult stale = publish(doc_a, {"--expect-revision", std::to_string(rev - 1)});
  EXPECT_EQ(stale.status, 1);
  EXPECT_NE(stale.err.find("FLEET_CONFLICT"), std::string::npos);
  RunResult first = publish(doc_a, {"--expect-revision", "0"});  // "create": the key exists
  EXPECT_NE(first.err.find("FLEET_CONFLICT"), std::string::npos) << first.err;
}

TEST_F(Fleet, ThousandCertificatesConverge) {
  start_hosts();
  // The document written here rather than exported from a source root: installing 1,000
  // certificates there would double the test's time and measure nothing of the fleet.
  auto key = make_key(KeyKind::kP256);
  json::array trusted;
  for (int i = 0; i < 1000; ++i) {
    char uuid[37];
    std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", i, i);
    trusted.emplace_back(json::object{{"uuid", uuid}, {"type", "ca"}, {"purposes", json::array{"ldaps"}},
                                      {"installed_at", 1700000000},
                                      {"pem", ca_with_key_pem("Bulk " + std::to_string(i), 1000 + i, key.get(), 400)}});
  }
  std::string doc = json::serialize(json::object{{"format", "ptrust-export"}, {"version", 1}, {"trusted", std::move(trusted)},
                                                 {"legacy", json::array{}}, {"crls", json::array{}}});
  TempDir local;
  configure(local.path());
  write_file(local / "doc.json", doc);
  auto t_import = Clock::now();
  ASSERT_EQ(ptrust(local.path(), {"import", local / "doc.json"}).status, 0);
  long import_ms = ms_since(t_import);
  Tree want = store(local.path());
  ASSERT_EQ(std::count_if(want.begin(), want.end(), [](const auto& n) { return n.first.find("ca-ldaps/") != std::string::npos && n.first.ends_with(".pem"); }), 1000);

  auto t0 = Clock::now();
  published(doc);
  ASSERT_TRUE(eventually([&] {
    for (const auto& h : hosts)
      if (store(h->root.path()) != want) return false;
    return true;
  }, 45s)) << diff(want, store(hosts[0]->root.path()));
  long took = ms_since(t0);
  std::cout << "[ measured ] 1,000 certificates (" << doc.size() / 1024 << " KiB): 3 hosts converged byte-identically in "
            << took << " ms; a local import of the same document took " << import_ms << " ms (ratio "
            << (import_ms ? static_cast<double>(took) / import_ms : 0.0) << ")\n";
}

// TLS to etcd: its certificate verified by libptrust under a ptrust purpose of the host's own
// root (never OpenSSL's default paths), a client certificate when etcd asks for one.
TEST(FleetTls, PublishAndFollowOverTlsVerifiedByAPtrustPurpose) {
  TempDir dir, src, host, impostor, logs;
  Issued ca = self_signed({.cn = "etcd CA", .ca = true, .not_after = 400 * kDay});
  Issued server = issue({.cn = "etcd", .ips = {"127.0.0.1"}}, ca);
  Issued other_ca = self_signed({.cn = "etcd CA", .ca = true, .not_after = 400 * kDay});  // same name, other key
  Issued client_ca = self_signed({.cn = "fleet clients", .ca = true, .not_after = 400 * kDay});
  Issued client = issue({.cn = "host"}, client_ca);
  for (auto [name, pem] : std::vector<std::pair<std::string, std::string>>{
           {"server.pem", server.pem()}, {"server.key", server.key_pem()}, {"ca.pem", ca.pem()}, {"other.pem", other_ca.pem()},
           {"client-ca.pem", client_ca.pem()}, {"client.pem", client.pem()}, {"client.key", client.key_pem()}})
    write_file(dir / name, pem);
  ::chmod((dir / "server.key").c_str(), 0600);
  // etcd asks for client certificates (--client-cert-auth). Its 3.4 JSON gateway dials etcd's
  // own gRPC server presenting the server's certificate as a client certificate, checked
  // against --trusted-ca-file: that file holds the clients' CA and the server's CA (and the
  // server certificate has the clientAuth usage; testpki gives every leaf both).
  write_file(dir / "client-cas.pem", client_ca.pem() + ca.pem());
  Etcd etcd(dir, EtcdTls{dir / "server.pem", dir / "server.key", dir / "ca.pem", dir / "client-cas.pem", dir / "client.pem",
                         dir / "client.key"});
  ASSERT_TRUE(etcd.start()) << "etcd (TLS) did not start";
  for (const TempDir* r : {&src, &host, &impostor}) {
    std::filesystem::create_directories(r->path() + "/etc/ptrust");
    write_file(r->path() + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  etcd: {}\n");
  }
  // The trust that reaches etcd travels in the document too: a host applies exactly the
  // desired set, so a document without it would cut the host off from etcd.
  ASSERT_EQ(ptrust(src.path(), {"install", dir / "ca.pem", "--ca", "--purpose", "etcd"}).status, 0);
  ASSERT_EQ(ptrust(host.path(), {"install", dir / "ca.pem", "--ca", "--purpose", "etcd"}).status, 0);
  ASSERT_EQ(ptrust(impostor.path(), {"install", dir / "other.pem", "--ca", "--purpose", "etcd"}).status, 0);
  write_file(dir / "lic.pem", self_signed({.cn = "Licensing A", .ca = true, .not_after = 400 * kDay}).pem());
  ASSERT_EQ(ptrust(src.path(), {"install", dir / "lic.pem", "--ca", "--purpose", "licensing"}).status, 0);
  std::string doc = ptrust(src.path(), {"export", "-"}).out;

  auto publish = [&](const std::string& root, std::vector<std::string> extra) {
    std::vector<std::string> argv{PTRUST_BIN, "--root", root, "fleet", "publish", "--etcd", etcd.url(), "--fleet", "f1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("-");
    return run(argv, doc);
  };
  std::vector<std::string> tls = {"--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem", "--etcd-key", dir / "client.key"};
  RunResult no_purpose = publish(src.path(), {});
  EXPECT_EQ(no_purpose.status, 2);
  EXPECT_NE(no_purpose.err.find("USAGE: TLS to etcd needs --etcd-purpose"), std::string::npos) << no_purpose.err;
  RunResult wrong_ca = publish(impostor.path(), tls);
  EXPECT_EQ(wrong_ca.status, 1);
  EXPECT_NE(wrong_ca.err.find("FLEET_SOURCE_UNAVAILABLE: TLS with etcd"), std::string::npos) << wrong_ca.err;
  RunResult half = publish(src.path(), {"--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem"});
  EXPECT_EQ(half.status, 2) << half.err;
  RunResult bad_key = publish(src.path(), {"--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem", "--etcd-key", dir / "ca.pem"});
  EXPECT_EQ(bad_key.status, 1) << bad_key.err;
  RunResult no_client_cert = publish(src.path(), {"--etcd-purpose", "etcd"});
  EXPECT_EQ(no_client_cert.status, 1);
  EXPECT_EQ(no_client_cert.err.rfind("ptrust: FLEET_SOURCE_UNAVAILABLE:", 0), 0u) << no_client_cert.err;
  Issued stranger = issue({.cn = "host"}, other_ca);  // a client certificate etcd does not trust
  write_file(dir / "stranger.pem", stranger.pem());
  write_file(dir / "stranger.key", stranger.key_pem());
  RunResult wrong_client = publish(src.path(), {"--etcd-purpose", "etcd", "--etcd-cert", dir / "stranger.pem", "--etcd-key", dir / "stranger.key"});
  EXPECT_EQ(wrong_client.status, 1);
  EXPECT_EQ(wrong_client.err.rfind("ptrust: FLEET_SOURCE_UNAVAILABLE:", 0), 0u) << wrong_client.err;
  EXPECT_EQ(etcd.ctl({"get", "--print-value-only", "/ptrust/fleets/f1/desired"}).out, "") << "nothing was written";
  RunResult ok = publish(src.path(), tls);
  ASSERT_EQ(ok.status, 0) << ok.err;

  DaemonProcess d(logs, std::string(PTRUST_BIN) + " --root " + host.path() + " serve --socket " + host / "ptrust.sock" +
                            " --follow etcds://127.0.0.1:" + std::to_string(etcd.port()) + "/f1 --host-uuid " +
                            "00000009-1111-2222-3333-444444444444 --etcd-purpose etcd --etcd-cert " + dir / "client.pem" +
                            " --etcd-key " + dir / "client.key");
  EXPECT_TRUE(eventually([&] { return tree_of(host.path()) == tree_of(src.path()); }, 10s))
      << diff(snapshot(src / "etc"), snapshot(host / "etc")) << d.err();
  RunResult st = run({PTRUST_BIN, "--root", host.path(), "fleet", "status", "--etcd", etcd.url(), "--fleet", "f1", "--json",
                      "--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem", "--etcd-key", dir / "client.key"});
  EXPECT_EQ(st.status, 0) << st.err;
  EXPECT_TRUE(eventually([&] {
    RunResult r = run({PTRUST_BIN, "--root", host.path(), "fleet", "status", "--etcd", etcd.url(), "--fleet", "f1",
                       "--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem", "--etcd-key", dir / "client.key"});
    return r.out.find("converged: 1 of 1 hosts") != std::string::npos;
  }));
  // A document without the etcd CA would cut the host off from etcd: refused, reported, and
  // the host keeps its state (and still reaches etcd: it reports).
  Tree before = tree_of(host.path());
  TempDir bare;
  std::filesystem::create_directories(bare.path() + "/etc/ptrust");
  write_file(bare.path() + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n  etcd: {}\n");
  ASSERT_EQ(ptrust(bare.path(), {"install", dir / "lic.pem", "--ca", "--purpose", "licensing"}).status, 0);
  doc = ptrust(bare.path(), {"export", "-"}).out;
  RunResult cut = publish(src.path(), tls);
  ASSERT_EQ(cut.status, 0) << cut.err;
  auto host_report = [&] {
    RunResult r = run({PTRUST_BIN, "--root", host.path(), "fleet", "status", "--etcd", etcd.url(), "--fleet", "f1", "--json",
                       "--etcd-purpose", "etcd", "--etcd-cert", dir / "client.pem", "--etcd-key", dir / "client.key"});
    json::object o = r.status == 0 ? json::parse(r.out).as_object() : json::object{};
    return o.contains("hosts") && !o.at("hosts").as_array().empty() ? o.at("hosts").as_array().at(0).as_object() : json::object{};
  };
  EXPECT_TRUE(eventually([&] {
    json::object h = host_report();
    return h.contains("health") && h.at("health") == "rejected" &&
           std::string(h.at("error").as_string()).rfind("FLEET_DOCUMENT_CUTS_OFF:", 0) == 0;
  })) << json::serialize(host_report()) << d.err();
  EXPECT_EQ(tree_of(host.path()), before);

  // Plain HTTP to the TLS port is no way around it.
  RunResult plain = run({PTRUST_BIN, "fleet", "status", "--etcd", "http://127.0.0.1:" + std::to_string(etcd.port()), "--fleet", "f1"});
  EXPECT_EQ(plain.status, 1);
}

}  // namespace
}  // namespace ptrust::testing
