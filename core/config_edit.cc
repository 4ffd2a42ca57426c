#include "core/config_edit.h"

#include <sstream>

#include "core/error.h"

namespace ptrust {

std::string policy_yaml(const PurposePolicy& p) {
  const PurposePolicy d;
  std::vector<std::string> kv;
  if (p.crl_policy != d.crl_policy) kv.push_back("crl-policy: " + std::string(to_string(p.crl_policy)));
  if (p.crl_scope != d.crl_scope) kv.push_back("crl-scope: " + std::string(to_string(p.crl_scope)));
  if (p.allow_expired_crl != d.allow_expired_crl) kv.push_back(std::string("allow-expired-crl: ") + (p.allow_expired_crl ? "true" : "false"));
  if (p.pin_match != d.pin_match) kv.push_back("pin-match: " + std::string(to_string(p.pin_match)));
  if (p.enforce_pin_validity != d.enforce_pin_validity)
    kv.push_back(std::string("enforce-pin-validity: ") + (p.enforce_pin_validity ? "true" : "false"));
  if (p.report_only != d.report_only) kv.push_back(std::string("report-only: ") + (p.report_only ? "true" : "false"));
  if (kv.empty()) return "{}";
  std::string out = "{ ";
  for (size_t i = 0; i < kv.size(); ++i) out += (i ? ", " : "") + kv[i];
  return out + " }";
}

std::vector<std::string> declaration_lines(const std::map<std::string, PurposePolicy>& purposes) {
  std::vector<std::string> out;
  for (const auto& [name, policy] : purposes) out.push_back("  " + name + ": " + policy_yaml(policy));
  return out;
}

namespace {

bool blank_or_comment(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  return i == std::string::npos || line[i] == '#';
}

// The value after "purposes:" on its own line, without a trailing comment.
std::string inline_value(const std::string& line) {
  std::string v = line.substr(std::string("purposes:").size());
  if (size_t hash = v.find(" #"); hash != std::string::npos) v.resize(hash);
  if (v.starts_with("#")) v.clear();
  size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : v.substr(b, e - b + 1);
}

}  // namespace

std::string declare_purposes(const std::string& text, const std::string& source,
                             const std::map<std::string, PurposePolicy>& purposes) {
  const Config before = text.empty() ? Config{} : parse_config(text, source);
  std::vector<std::string> lines;
  {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  std::vector<std::string> add = declaration_lines(purposes);
  auto hand = [&] {
    std::string all;
    for (const auto& l : add) all += (all.empty() ? "" : ", ") + ("`" + l + "`");
    return all;
  };
  size_t key = lines.size();
  for (size_t i = 0; i < lines.size(); ++i)
    if (lines[i].starts_with("purposes:")) key = i;
  if (key == lines.size()) {
    lines.push_back("purposes:");
    key = lines.size() - 1;
  } else if (std::string v = inline_value(lines[key]); !v.empty()) {
    if (v != "{}")
      throw Error(Code::kConfigInvalid, source + ": `purposes:` is a flow mapping that ptrust cannot extend in place; "
                                                 "add under it by hand: " + hand());
    lines[key] = "purposes:";  // an empty flow mapping becomes the block the new entries go into
  }
  // The block: the indented lines after the key (blank lines and comments inside it too).
  size_t last = key, indent = 2;
  bool seen_entry = false;
  for (size_t i = key + 1; i < lines.size(); ++i) {
    if (blank_or_comment(lines[i])) continue;
    if (lines[i][0] != ' ') break;
    if (!seen_entry) indent = lines[i].find_first_not_of(' ');
    seen_entry = true;
    last = i;
  }
  std::string pad(indent, ' ');
  std::vector<std::string> entries;
  for (const auto& l : add) entries.push_back(pad + l.substr(2));
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(last + 1), entries.begin(), entries.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  // Parsed again: the edit must keep the file valid and mean exactly "these purposes more".
  Config after = parse_config(out, source);
  for (const auto& [name, policy] : before.purposes)
    if (!after.declares(name) || !(after.purposes.at(name) == policy))
      throw Error(Code::kConfigInvalid, source + ": adding purposes would change '" + name + "'; add by hand: " + hand());
  for (const auto& [name, policy] : purposes)
    if (!after.declares(name) || !(after.purposes.at(name) == policy))
      throw Error(Code::kConfigInvalid, source + ": cannot add purpose '" + name + "' in place; add by hand: " + hand());
  if (after.purposes.size() != before.purposes.size() + purposes.size())
    throw Error(Code::kConfigInvalid, source + ": adding purposes changed others; add by hand: " + hand());
  return out;
}

}  // namespace ptrust
