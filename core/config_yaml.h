// How ptrust.yaml is read, for every section parser: core's `root:` and `purposes:`, and the
// helper's `stunnel:` (helper/stunnel_config.h), so all refuse alike with file:line:column.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "core/config.h"

namespace ptrust::config_yaml {

// CONFIG_INVALID "source:line:column: what" (without the position when the mark is null).
[[noreturn]] void error(const std::string& source, const YAML::Mark& mark, const std::string& what);

// The whole document of `cfg.text`, parsed again; CONFIG_INVALID on a syntax error.
YAML::Node document(const Config& cfg);
// The value of a top-level key, if the document has it.
std::optional<YAML::Node> section(const Config& cfg, std::string_view key);

std::string scalar(const YAML::Node& n, const std::string& src, const std::string& key);
bool boolean(const YAML::Node& n, const std::string& src, const std::string& key);  // true|yes|false|no
// A non-empty value that ends up on one line of a stunnel or OpenSSL configuration file.
std::string one_line(const YAML::Node& n, const std::string& src, const std::string& key);
// one_line, absolute and safe_config_path.
std::string abs_path(const YAML::Node& n, const std::string& src, const std::string& key);

}  // namespace ptrust::config_yaml
