// `ptrust status` and `ptrust alerts`: the host's health for operators and scripts.
#include <ctime>
#include <iostream>

#include "core/error.h"
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

void add_at(po::options_description& d) {
  d.add_options()("at", po::value<std::string>(), "evaluate as of TIME (YYYY-MM-DD[THH:MM:SSZ] or @EPOCH) instead of now");
}

int status_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  status::Options opt;
  if (vm.count("purpose")) {
    opt.purpose = vm["purpose"].as<std::string>();
    if (*opt.purpose != kGeneral && !ctx.config.declares(*opt.purpose))
      throw Error(Code::kUnknownPurpose, "purpose '" + *opt.purpose + "' is not declared in " + ctx.config.source);
  }
  status::Report r = status::collect(ctx, parse_host_config(ctx.config), at_time(vm), opt);
  if (c.json) print_json(status::to_json(r));
  else std::cout << status::text(r);
  return status::exit_status(r.health);
}

int alerts_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  HostConfig hc = parse_host_config(ctx.config);
  status::Report r = status::collect(ctx, hc, at_time(vm));
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
  out.push_back({"status", "[--purpose P]",
                 "the host's trust health: ok, warning or error, then per purpose (exit 0 ok, 3 warning, 1 error)", true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>(), "report on this purpose only");
                   add_at(d);
                 },
                 status_cmd});
  out.push_back({"alerts", "", "the alerts a management stack raises (xapi's names and priorities), most urgent first",
                 true, [](po::options_description& d, po::positional_options_description&) { add_at(d); }, alerts_cmd});
}

}  // namespace ptrust::cli
