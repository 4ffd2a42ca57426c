// The `stunnel:` section of ptrust.yaml: parsed by the helper alone. Consumers (provider,
// verify hook) never read it; every `ptrust` command still refuses a broken one.
#include <gtest/gtest.h>

#include "core/config.h"
#include "core/error.h"
#include "helper/stunnel_config.h"
#include "tests/stunnel/fixture.h"

namespace ptrust::testing {
namespace {

constexpr const char* kPurposes = "purposes:\n  licensing: {}\n";

std::string instance(const std::string& extra_instance, const std::string& service) {
  return std::string(kPurposes) +
         "stunnel:\n  - name: t\n    config: /x/stunnel.conf\n    pidfile: /x/stunnel.pid\n" + extra_instance +
         "    services:\n      - name: s\n        purpose: licensing\n        accept: 127.0.0.1:1\n"
         "        connect: h:2\n" +
         service;
}

std::string config_error(const std::string& text) {
  try {
    parse_stunnel_config(parse_config(text, "t.yaml"));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kConfigInvalid);
    return e.what();
  }
  return "";
}

TEST(StunnelConfigTest, ParsesInstancesAndServices) {
  auto stunnel = parse_stunnel_config(parse_config(
      instance("    via: provider\n    openssl-conf: /x/o.cnf\n    global:\n      - debug = 5\n",
               "        check-host: leaf.test\n"),
      "t.yaml"));
  ASSERT_EQ(stunnel.size(), 1u);
  EXPECT_EQ(stunnel[0].via, StunnelVia::kProvider);
  EXPECT_EQ(stunnel[0].global, std::vector<std::string>{"debug = 5"});
  ASSERT_EQ(stunnel[0].services.size(), 1u);
  EXPECT_EQ(stunnel[0].services[0].check_host, "leaf.test");
  EXPECT_EQ(stunnel[0].services[0].purpose, "licensing");
}

TEST(StunnelConfigTest, RefusesUnknownKeysWithFileLineColumn) {
  EXPECT_NE(config_error(instance("", "        check-host: a\n        chek-ip: 1.2.3.4\n"))
                .find("t.yaml:13:9: unknown stunnel service setting 'chek-ip'"),
            std::string::npos);
  EXPECT_NE(config_error(instance("    colour: blue\n", "        check-host: a\n")).find("t.yaml:7:5: unknown stunnel instance setting"),
            std::string::npos);
}

// Found by fuzz/config_fuzz: a repeated `services:` key. yaml-cpp keeps both pairs; the
// second list's undeclared purpose was looked up by index in the first and yaml-cpp's
// InvalidNode escaped (`ptrust`: INTERNAL_ERROR). Any repeated key, in any section, is
// CONFIG_INVALID at the second one.
TEST(StunnelConfigTest, RefusesARepeatedKeyWithFileLineColumn) {
  std::string twice = instance("", "        check-host: a\n") +
                      "    services:\n      - {name: b, purpose: nope, accept: 2, connect: x:1, check-host: x}\n";
  EXPECT_EQ(config_error(twice), "t.yaml:13:5: 'services' given twice");
  EXPECT_EQ(config_error(instance("", "        check-host: a\n        check-host: b\n")),
            "t.yaml:13:9: 'check-host' given twice");
  EXPECT_EQ(config_error(std::string(kPurposes) + "purposes:\n  ldaps: {}\n"), "t.yaml:3:1: 'purposes' given twice");
  EXPECT_EQ(config_error(std::string(kPurposes) + "alerts: {crl-next-update-days: 3, crl-next-update-days: 4}\n"),
            "t.yaml:3:35: 'crl-next-update-days' given twice");
  EXPECT_EQ(config_error(std::string(kPurposes) + "stunnel: [{? [a]: b}]\n"), "t.yaml:3:14: a mapping key must be a scalar");
}

TEST(StunnelConfigTest, RefusesServicesWithoutExactlyOneSubjectCheck) {
  EXPECT_NE(config_error(instance("", "")).find("needs exactly one of check-host"), std::string::npos);
  EXPECT_NE(config_error(instance("", "        check-host: a\n        check-ip: 1.2.3.4\n")).find("exactly one"),
            std::string::npos);
  EXPECT_EQ(config_error(instance("", "        no-subject-check: true\n")), "");
}

TEST(StunnelConfigTest, RefusesUndeclaredPurposeRelativePathsAndProviderWithoutOpensslConf) {
  std::string t = instance("", "        check-host: a\n");
  std::string undeclared = t;
  undeclared.replace(undeclared.find("purpose: licensing"), 18, "purpose: nosuch");
  EXPECT_NE(config_error(undeclared).find("not declared"), std::string::npos);
  std::string rel = t;
  rel.replace(rel.find("/x/stunnel.conf"), 15, "stunnel.conf");
  EXPECT_NE(config_error(rel).find("absolute path"), std::string::npos);
  EXPECT_NE(config_error(instance("    via: provider\n", "        check-host: a\n")).find("openssl-conf"),
            std::string::npos);
  EXPECT_NE(config_error(instance("    global: [\"a\\nb\"]\n", "        check-host: a\n")).find("single line"),
            std::string::npos);
}

// A broken stunnel section is the helper's business: the Context the provider and the verify
// hook open still loads, while every ptrust command refuses naming the file, line and column.
TEST(StunnelConfigTest, BrokenSectionBreaksCommandsNotConsumers) {
  Env env;
  env.write_config("stunnel:\n  - name: t\n    colour: blue\n");
  Context ctx = open_context(env.root(), std::nullopt);
  EXPECT_EQ(ctx.config.source, env.config_file());
  EXPECT_TRUE(ctx.config.declares("licensing"));
  for (std::vector<std::string> cmd : {std::vector<std::string>{"list"}, {"resolve", "licensing"}, {"stunnel", "sync"}}) {
    RunResult r = env.ptrust(cmd);
    EXPECT_EQ(r.status, 1) << cmd[0];
    EXPECT_EQ(r.err, "ptrust: CONFIG_INVALID: " + env.config_file() + ":7:5: unknown stunnel instance setting 'colour'\n")
        << cmd[0];
  }
}

TEST(StunnelConfigTest, NoSectionMeansNoInstances) {
  EXPECT_TRUE(parse_stunnel_config(parse_config(kPurposes, "t.yaml")).empty());
  EXPECT_TRUE(parse_stunnel_config(default_config()).empty());
}

}  // namespace
}  // namespace ptrust::testing
