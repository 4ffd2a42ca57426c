#include <gtest/gtest.h>

#include "core/config.h"
#include "core/error.h"

namespace ptrust {
namespace {

TEST(Config, DefaultDeclaresLicensingAndLdaps) {
  Config c = default_config();
  EXPECT_TRUE(c.declares("licensing"));
  EXPECT_TRUE(c.declares("ldaps"));
  EXPECT_FALSE(c.declares("general"));
  EXPECT_EQ(c.purposes.size(), 2u);
}

TEST(Config, ParsesPoliciesPerPurpose) {
  Config c = parse_config(
      "root: /srv/x\n"
      "purposes:\n"
      "  licensing:\n"
      "    crl-policy: require\n"
      "    crl-scope: leaf\n"
      "    report-only: true\n"
      "    verify-cache-seconds: 0\n"
      "  wlb: {}\n"
      "  ldaps:\n",
      "t.yaml");
  ASSERT_TRUE(c.root);
  EXPECT_EQ(*c.root, "/srv/x");
  EXPECT_EQ(c.purposes.at("licensing").crl_policy, CrlPolicy::kRequire);
  EXPECT_EQ(c.purposes.at("licensing").crl_scope, CrlScope::kLeaf);
  EXPECT_TRUE(c.purposes.at("licensing").report_only);
  EXPECT_EQ(c.purposes.at("wlb").crl_policy, CrlPolicy::kIfPresent);
  EXPECT_FALSE(c.purposes.at("ldaps").report_only);
  EXPECT_EQ(c.purposes.at("licensing").verify_cache_seconds, 0u);
  EXPECT_EQ(c.purposes.at("wlb").verify_cache_seconds, 300u) << "default: 5 minutes";
  EXPECT_EQ(parse_config("purposes:\n  a: { verify-cache-seconds: 86400 }\n", "t.yaml").purposes.at("a").verify_cache_seconds,
            86400u);
}

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* where;  // "file:line:col" prefix expected in the message
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class ConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrors, NameFileLineAndColumn) {
  try {
    parse_config(GetParam().yaml, "bad.yaml");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kConfigInvalid);
    EXPECT_EQ(std::string(e.what()).rfind(GetParam().where, 0), 0u) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigErrors,
    ::testing::Values(BadConfig{"unknown_key", "purposes: {}\nbogus: 1\n", "bad.yaml:2:1"},
                      BadConfig{"bad_policy", "purposes:\n  licensing:\n    crl-policy: maybe\n", "bad.yaml:3:17"},
                      BadConfig{"reserved_general", "purposes:\n  general: {}\n", "bad.yaml:2:3"},
                      BadConfig{"bad_name", "purposes:\n  Licensing: {}\n", "bad.yaml:2:3"},
                      BadConfig{"syntax", "purposes: [\n", "bad.yaml:"},
                      BadConfig{"no_purposes", "root: /x\n", "bad.yaml"},
                      BadConfig{"relative_root", "root: x\npurposes: {}\n", "bad.yaml:1:7"},
                      BadConfig{"cache_negative", "purposes:\n  a:\n    verify-cache-seconds: -1\n", "bad.yaml:3:27"},
                      BadConfig{"cache_too_long", "purposes:\n  a:\n    verify-cache-seconds: 86401\n", "bad.yaml:3:27"},
                      BadConfig{"cache_not_number", "purposes:\n  a:\n    verify-cache-seconds: 5m\n", "bad.yaml:3:27"},
                      BadConfig{"unknown_setting", "purposes:\n  ldaps:\n    pinning: yes\n", "bad.yaml:3:5"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Config, PurposeNames) {
  EXPECT_TRUE(valid_purpose_name("licensing"));
  EXPECT_TRUE(valid_purpose_name("a"));
  EXPECT_TRUE(valid_purpose_name("0a_b-c"));
  EXPECT_TRUE(valid_purpose_name(std::string(32, 'a')));
  EXPECT_FALSE(valid_purpose_name(std::string(33, 'a')));
  EXPECT_FALSE(valid_purpose_name(""));
  EXPECT_FALSE(valid_purpose_name("LICENSING"));
  EXPECT_FALSE(valid_purpose_name("../x"));
  EXPECT_FALSE(valid_purpose_name("-x"));
  EXPECT_FALSE(valid_purpose_name("a b"));
}

TEST(Config, PurposeListRefusals) {
  Config c = default_config();
  EXPECT_EQ(parse_purpose_list("licensing,ldaps", c), (std::vector<std::string>{"licensing", "ldaps"}));
  for (const char* bad : {"", "general", "licensing,general", "LICENSING", "../x", "licensing,", ",ldaps",
                          "licensing,licensing", "wlb"}) {
    try {
      parse_purpose_list(bad, c);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::kUnknownPurpose) << bad;
    }
  }
}

}  // namespace
}  // namespace ptrust
