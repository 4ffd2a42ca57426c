// `ptrust fleet publish` and `ptrust fleet status`: the desired document of a fleet in etcd,
// written with a compare-and-swap, and what every host reports about it.
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/exchange.h"
#include "core/fs.h"
#include "core/x509.h"
#include "helper/cli.h"
#include "helper/fleet_etcd.h"
#include "helper/fleet_http.h"
#include "helper/fleet_sign.h"

namespace ptrust::cli {

namespace json = boost::json;

namespace {

std::string fleet_opt(const po::variables_map& vm) {
  std::string f = vm["fleet"].as<std::string>();
  if (!fleet::valid_fleet_name(f))
    throw Error(Code::kUsage, "--fleet '" + fleet::printable(f) + "': a name of [a-z0-9._-], starting with a letter or digit, at most 63");
  return f;
}

std::string read_document(const std::string& path) {
  if (path != "-") return fs::read_input(path, fleet::kMaxDocument);
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  if (ss.str().size() > fleet::kMaxDocument)
    throw Error(Code::kInputUnreadable, "standard input is larger than " + std::to_string(fleet::kMaxDocument >> 20) + " MiB");
  return ss.str();
}

// The validation every host runs before applying (parse_export), with this host's purposes
// and those the document declares: a document no host could apply is never published.
void validate(const Context& ctx, const std::string& doc) {
  DocumentPurposes dp = document_purposes(doc);
  Config cfg = ctx.config;
  for (const auto& [name, policy] : dp.declared) cfg.purposes.emplace(name, policy);
  parse_export(doc, cfg);
}

std::int64_t current_revision(const fleet::Endpoint& ep, const std::string& key) {
  auto r = fleet::parse_range(fleet::post(ep, "/v3/kv/range", fleet::range_request(key)), key, false, 1);
  return r.kvs.empty() ? 0 : r.kvs.front().mod_revision;
}

int publish_cmd(const Common& c, const po::variables_map& vm) {
  fleet::Endpoint ep = fleet::parse_etcd_url(vm["etcd"].as<std::string>());
  apply_etcd_tls_options(ep, vm, c.context());
  std::string name = fleet_opt(vm);
  std::string doc = read_document(vm["file"].as<std::string>());
  // The signature first (hosts that require one check it before anything else): a document
  // changed after signing, or a signer not pinned here for purpose fleet, is never published.
  std::optional<std::string> sig;
  fleet::Signed signed_by;
  if (vm.count("signature")) {
    sig = fs::read_input(vm["signature"].as<std::string>(), fleet::kMaxSignature);
    signed_by = fleet::verify_with_pins(c.context(), doc, *sig);
  }
  validate(c.context(), doc);
  std::string key = fleet::desired_key(name);
  std::int64_t expected = vm.count("expect-revision") ? vm["expect-revision"].as<std::int64_t>() : current_revision(ep, key);
  if (expected < 0) throw Error(Code::kUsage, "--expect-revision must be 0 (no document yet) or a revision");
  auto t = fleet::parse_txn(fleet::post(ep, "/v3/kv/txn", fleet::cas_put_request(key, doc, expected, fleet::signature_key(name), sig ? &*sig : nullptr)));
  if (!t.succeeded) {
    std::int64_t now = current_revision(ep, key);
    throw Error(Code::kFleetConflict, "the desired document of fleet " + name + " is at revision " + std::to_string(now) +
                                          ", not " + std::to_string(expected) +
                                          " (another publisher wrote it): nothing was written; read it again and publish");
  }
  if (c.json) {
    print_json(json::object{{"fleet", name},
                            {"revision", t.revision},
                            {"previous_revision", expected},
                            {"bytes", doc.size()},
                            {"signed_at", sig ? json::value(signed_by.signed_at) : json::value(nullptr)},
                            {"signer", sig ? json::value(signed_by.signer) : json::value(nullptr)}});
  } else {
    std::cout << "published fleet " << name << " revision " << t.revision << " (" << doc.size() << " bytes"
              << (sig ? ", signed by " + signed_by.signer : std::string(", unsigned")) << ")\n";
  }
  return 0;
}

int status_cmd(const Common& c, const po::variables_map& vm) {
  fleet::Endpoint ep = fleet::parse_etcd_url(vm["etcd"].as<std::string>());
  apply_etcd_tls_options(ep, vm, c.context());
  std::string name = fleet_opt(vm);
  std::string key = fleet::desired_key(name), prefix = fleet::hosts_prefix(name);
  std::int64_t desired = current_revision(ep, key);
  auto hosts = fleet::parse_range(
      fleet::post(ep, "/v3/kv/range", fleet::range_request(prefix, fleet::prefix_end(prefix)), std::chrono::seconds(30)),
      prefix, true, fleet::kMaxHosts);
  json::array out;
  size_t converged = 0;
  std::ostringstream text;
  text << "fleet " << name << ": "
       << (desired ? "desired revision " + std::to_string(desired) : std::string("no desired document")) << "\n";
  for (const auto& kv : hosts.kvs) {
    std::string uuid = kv.key.substr(prefix.size());
    try {
      fleet::HostStatus s = fleet::parse_host_status(kv.value);
      if (s.host != uuid) throw Error(Code::kFleetSourceInvalid, "host report under another host's key");
      bool at_desired = desired && s.applied_revision == desired && s.health == "ok";
      converged += at_desired;
      json::object row = fleet::host_status_object(s);
      row["converged"] = at_desired;
      row["report_revision"] = kv.mod_revision;
      out.emplace_back(std::move(row));
      text << "  " << s.host << "  applied "
           << (s.applied_revision ? std::to_string(s.applied_revision) + " at " + x509::format_time(s.applied_at)
                                  : std::string("nothing yet"))
           << ", generation " << s.generation << ", " << s.health << (s.error.empty() ? "" : ": " + s.error)
           << (at_desired ? "" : "  (not converged)") << "\n";
    } catch (const Error& e) {
      out.emplace_back(json::object{{"host", fleet::printable(uuid)}, {"health", "unreadable"}, {"error", e.what()},
                                    {"converged", false}});
      text << "  " << fleet::printable(uuid) << "  unreadable report: " << e.what() << "\n";
    }
  }
  text << "converged: " << converged << " of " << hosts.kvs.size() << " hosts\n";
  if (c.json) {
    print_json(json::object{{"fleet", name},
                            {"desired_revision", desired},
                            {"hosts", std::move(out)},
                            {"converged", converged},
                            {"revision", hosts.revision}});
  } else {
    std::cout << text.str();
  }
  return 0;
}

void fleet_options(po::options_description& d) {
  d.add_options()("etcd", po::value<std::string>()->required(),
                  "etcd's client URL, http://HOST:PORT (loopback only) or https://HOST:PORT; HOST is an IP address")(
      "fleet", po::value<std::string>()->required(), "the fleet's name: its keys are under /ptrust/fleets/NAME/");
  add_etcd_tls_options(d);
}

}  // namespace

void add_etcd_tls_options(po::options_description& d) {
  d.add_options()("etcd-purpose", po::value<std::string>(),
                  "with https:// (etcds://): the ptrust purpose whose trust verifies etcd's certificate (through "
                  "libptrust: its chain, and for ca/general modes the IP address)")(
      "etcd-cert", po::value<std::string>(), "with https://: a client certificate (PEM chain) for etcd; with --etcd-key")(
      "etcd-key", po::value<std::string>(), "with https://: the client certificate's private key (PEM)");
}

void apply_etcd_tls_options(fleet::Endpoint& ep, const po::variables_map& vm, const Context& ctx) {
  bool any = vm.count("etcd-purpose") || vm.count("etcd-cert") || vm.count("etcd-key");
  if (!ep.tls) {
    if (any) throw Error(Code::kUsage, "--etcd-purpose, --etcd-cert and --etcd-key are for TLS (https://, etcds://)");
    return;
  }
  if (!vm.count("etcd-purpose"))
    throw Error(Code::kUsage, "TLS to etcd needs --etcd-purpose P: the ptrust purpose whose trust verifies etcd");
  ep.purpose = vm["etcd-purpose"].as<std::string>();
  if (!ctx.config.declares(ep.purpose)) throw unknown_purpose(ctx.config, ep.purpose, ctx.root);
  ep.root = ctx.root;
  if (!ctx.config.source.empty() && ctx.config.source[0] == '/') ep.config = ctx.config.source;
  if (vm.count("etcd-cert")) ep.client_cert = vm["etcd-cert"].as<std::string>();
  if (vm.count("etcd-key")) ep.client_key = vm["etcd-key"].as<std::string>();
}

void add_fleet_commands(std::vector<Command>& out) {
  out.push_back({"fleet publish", "--etcd URL --fleet NAME [FILE|-] [--expect-revision N] [--signature FILE]",
                 "validate an export document as import does and make it the fleet's desired trust (compare-and-swap)",
                 true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   fleet_options(d);
                   d.add_options()("file", po::value<std::string>()->default_value("-"), "export document, or - for standard input")(
                       "expect-revision", po::value<std::int64_t>(),
                       "write only if the desired document is still at this revision (as `fleet status` showed it; 0: "
                       "there is none yet); default: the revision read just before writing. Else FLEET_CONFLICT")(
                       "signature", po::value<std::string>(),
                       "a detached CMS signature (DER) of the document, made offline with `openssl cms -sign -binary "
                       "-nocerts -outform DER` (detached); checked against this root's pins for purpose fleet "
                       "(FLEET_SIGNATURE_INVALID) and written with the document in one transaction. Without it the "
                       "document is published unsigned (any previous signature removed)");
                   p.add("file", 1);
                 },
                 publish_cmd});
  out.push_back({"fleet status", "--etcd URL --fleet NAME",
                 "the fleet's desired revision and, per host, the revision it applied, when, and its health", true,
                 [](po::options_description& d, po::positional_options_description&) { fleet_options(d); }, status_cmd});
}

}  // namespace ptrust::cli
