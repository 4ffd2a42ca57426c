// ptrust — per-purpose TLS trust stores for OpenSSL 3. See README.md.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <vector>

#include <openssl/err.h>

#include "core/error.h"
#include "helper/cli.h"
#include "helper/host_config.h"
#include "helper/stunnel_config.h"

namespace ptrust::cli {

Context Common::context() const {
  Context ctx = open_context(root, config);
  parse_stunnel_config(ctx.config);
  parse_host_config(ctx.config);
  return ctx;
}

namespace {

// Every refusal is one line: control characters that came from user input (a name with a
// newline, an escape sequence) are printed escaped, never raw.
std::string one_line(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The project version (CMakeLists.txt `project(... VERSION)`), also the provider's and libptrust's.
constexpr const char* kVersion = PTRUST_VERSION;

void print_usage(std::ostream& os) {
  os << "usage: ptrust [--root DIR] [--config FILE] COMMAND [ARGS...]\n\n"
        "Per-purpose TLS trust for OpenSSL 3: installs trusted certificates into the\n"
        "on-disk stores, reconciles them with ptrust's database and reports on them.\n\n"
        "commands:\n";
  for (const auto& c : commands()) {
    std::string head = std::string(c.name) + " " + c.args;
    constexpr size_t kColumn = 34;
    os << "  " << head;
    if (head.size() > kColumn) {
      os << "\n" << std::string(kColumn + 3, ' ');
    } else {
      os << std::string(kColumn + 1 - head.size(), ' ');
    }
    os << c.summary << "\n";
  }
  os << "\nglobal options (accepted before or after COMMAND):\n"
        "  --root DIR      root prefix of the stores (default: $PTRUST_ROOT, config `root:`, /)\n"
        "  --config FILE   purposes and policies (default: $PTRUST_CONFIG, <root>/etc/ptrust/ptrust.yaml,\n"
        "                  else built-in: licensing, ldaps)\n"
        "  --json          machine-readable output (read commands)\n"
        "  -h, --help      this text; `ptrust COMMAND --help` for one command\n"
        "  --version       print the version\n\n"
        "exit status: 0 success, 1 refused or verification failed (stderr names an error code), 2 usage\n";
}

void add_common(po::options_description& d, Common& c, bool reads) {
  d.add_options()
      ("root", po::value<std::string>()->notifier([&c](const std::string& v) { c.root = v; }), "root prefix of the stores")
      ("config", po::value<std::string>()->notifier([&c](const std::string& v) { c.config = v; }), "configuration file")
      ("help,h", "show this help");
  if (reads) d.add_options()("json", po::bool_switch(&c.json), "machine-readable JSON output");
}

// Edit distance, for "did you mean".
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" when one candidate is close to `word`, else "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 3;  // at most 2 edits
  for (const auto& c : candidates) {
    size_t d = distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

// The commands of a group ("crl", "legacy", ...) with their summaries.
bool print_group(std::ostream& os, const std::string& group) {
  bool any = false;
  for (const auto& c : commands()) {
    std::string n = c.name;
    if (n.rfind(group + " ", 0) != 0) continue;
    if (!any) os << "usage: ptrust " << group << " ACTION [ARGS...]\n\nactions:\n";
    any = true;
    os << "  " << n << " " << c.args << "\n      " << c.summary << "\n";
  }
  if (any) os << "\n`ptrust " << group << " ACTION --help` explains one action.\n";
  return any;
}

// Bash's words for a set: safe to put between single quotes (names and options only).
std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// `ptrust completion bash` (hidden; the build installs its output): the bash completion of
// every command, group action and option of the same table `--help` prints, so the two
// cannot disagree. Options taking a value are listed so their value is not taken for the
// command; files are left to bash's own completion (complete -o default).
void print_bash_completion(std::ostream& os) {
  std::vector<std::string> top, valued{"--root", "--config"};
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  std::vector<std::pair<std::string, std::string>> options;  // command -> its options
  auto add_unique = [](std::vector<std::string>& v, const std::string& w) {
    if (std::find(v.begin(), v.end(), w) == v.end()) v.push_back(w);
  };
  for (const auto& c : commands()) {
    std::string n = c.name;
    if (auto sp = n.find(' '); sp != std::string::npos) {
      std::string g = n.substr(0, sp);
      add_unique(top, g);
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == g; });
      if (it == groups.end()) it = groups.insert(groups.end(), {g, {}});
      it->second.push_back(n.substr(sp + 1));
    } else {
      add_unique(top, n);
    }
    Common unused;
    po::options_description d;
    add_common(d, unused, c.reads);
    po::positional_options_description pos;
    c.describe(d, pos);
    std::vector<std::string> positional;
    for (unsigned i = 0; i < pos.max_total_count() && i < 8; ++i) positional.push_back(pos.name_for_position(i));
    std::vector<std::string> opts;
    for (const auto& o : d.options()) {
      if (std::find(positional.begin(), positional.end(), o->long_name()) != positional.end()) continue;
      std::string flag = "--" + o->long_name();
      opts.push_back(flag);
      if (o->semantic()->max_tokens() > 0) add_unique(valued, flag);
    }
    options.emplace_back(n, joined(opts));
  }
  os << "# bash completion for ptrust " << kVersion << ", written by `ptrust completion bash`.\n"
        "_ptrust() {\n"
        "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} i w skip=0\n"
        "  local commands='" << joined(top) << "'\n"
        "  local valued=' " << joined(valued) << " '\n"
        "  local -A actions=(";
  for (const auto& [g, acts] : groups) os << " [" << g << "]='" << joined(acts) << "'";
  os << " )\n  local -A options=(";
  for (const auto& [n, o] : options) os << " ['" << n << "']='" << o << "'";
  os << " )\n"
        "  local words=()\n"
        "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
        "    w=${COMP_WORDS[i]}\n"
        "    if ((skip)); then skip=0; continue; fi\n"
        "    if [[ $w == -* ]]; then [[ $valued == *\" $w \"* ]] && skip=1; continue; fi\n"
        "    words+=(\"$w\")\n"
        "  done\n"
        "  COMPREPLY=()\n"
        "  [[ $valued == *\" $prev \"* ]] && return 0  # an option's value: files (complete -o default)\n"
        "  if ((${#words[@]} == 0)); then\n"
        "    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W '--root --config --help --version' -- \"$cur\"))\n"
        "    else COMPREPLY=($(compgen -W \"$commands\" -- \"$cur\")); fi\n"
        "    return 0\n"
        "  fi\n"
        "  local cmd=${words[0]}\n"
        "  if [[ -n ${actions[$cmd]+x} ]]; then\n"
        "    if ((${#words[@]} == 1)); then\n"
        "      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W '--help' -- \"$cur\"))\n"
        "      else COMPREPLY=($(compgen -W \"${actions[$cmd]}\" -- \"$cur\")); fi\n"
        "      return 0\n"
        "    fi\n"
        "    cmd+=\" ${words[1]}\"\n"
        "  fi\n"
        "  [[ $cur == -* && -n ${options[$cmd]+x} ]] && COMPREPLY=($(compgen -W \"${options[$cmd]}\" -- \"$cur\"))\n"
        "  return 0\n"
        "}\n"
        "complete -o default -F _ptrust ptrust\n";
}

[[noreturn]] void usage_error(const std::string& msg, const char* cmd) {
  std::cerr << "ptrust: USAGE: " << one_line(msg) << " (see `ptrust " << (cmd ? std::string(cmd) + " " : "") << "--help`)\n";
  std::exit(2);
}

int run(int argc, char** argv) {
  // Every option is long (--purpose); program_options would read `-purpose` as -p + "urpose"
  // and what follows as the command. Name the mistake instead.
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") break;
    if (a.size() > 2 && a[0] == '-' && a[1] != '-' && std::isalpha(static_cast<unsigned char>(a[1])) &&
        std::isalpha(static_cast<unsigned char>(a[2])))
      usage_error("unknown option '" + std::string(a) + "' (did you mean '-" + std::string(a) + "'?)", nullptr);
  }
  Common common;
  // Global options may come before the command; everything from the command on is
  // parsed again with the command's own description.
  po::options_description global;
  add_common(global, common, false);
  global.add_options()("version", "print the version")("command", po::value<std::string>())(
      "args", po::value<std::vector<std::string>>());
  po::positional_options_description gpos;
  gpos.add("command", 1).add("args", -1);
  po::variables_map gvm;
  po::parsed_options parsed = po::command_line_parser(argc, argv).options(global).positional(gpos).allow_unregistered().run();
  po::store(parsed, gvm);
  if (gvm.count("version")) {
    std::cout << "ptrust " << kVersion << "\n";
    return 0;
  }
  if (!gvm.count("command")) {
    if (gvm.count("help")) {
      print_usage(std::cout);
      return 0;
    }
    for (const auto& o : parsed.options)
      if (o.unregistered) usage_error("unknown option '" + o.string_key + "'", nullptr);
    print_usage(std::cerr);
    return 2;
  }
  po::notify(gvm);
  std::string name = gvm["command"].as<std::string>();
  if (name == "completion") {  // hidden: not a command of the table, not in --help
    auto args = gvm.count("args") ? gvm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (args != std::vector<std::string>{"bash"}) usage_error("usage: ptrust completion bash", nullptr);
    print_bash_completion(std::cout);
    return 0;
  }
  // Everything but the global options and the command name, in order: options the global
  // parser does not know (`--json`, `--dry-run`, ...) may come before the command name.
  std::vector<std::string> rest;
  bool named = false;
  for (const auto& o : parsed.options) {
    if (o.position_key >= 0 && !named) {
      named = true;  // the command name itself
      continue;
    }
    if (o.unregistered || o.position_key >= 0) rest.insert(rest.end(), o.original_tokens.begin(), o.original_tokens.end());
  }
  // Groups ("crl install", "legacy list", ...): the action is the first word after the group
  // name that is not an option.
  bool group = false;
  for (const auto& c : commands()) group |= std::string(c.name).rfind(name + " ", 0) == 0;
  if (group) {
    auto action = std::find_if(rest.begin(), rest.end(), [](const std::string& a) { return !a.empty() && a[0] != '-'; });
    if (action == rest.end()) {
      if (gvm.count("help") || std::find_if(rest.begin(), rest.end(), [](const std::string& a) {
                                 return a == "--help" || a == "-h";
                               }) != rest.end()) {
        print_group(std::cout, name);
        return 0;
      }
      usage_error("'" + name + "' needs an action", nullptr);
    }
    name += " " + *action;
    rest.erase(action);
  }
  const Command* cmd = nullptr;
  std::vector<std::string> names;
  for (const auto& c : commands()) {
    if (name == c.name) cmd = &c;
    names.push_back(c.name);
    std::string n = c.name;
    if (auto sp = n.find(' '); sp != std::string::npos) names.push_back(n.substr(0, sp));
  }
  if (!cmd) usage_error("unknown command '" + name + "'" + did_you_mean(name, names), nullptr);

  po::options_description desc(std::string("usage: ptrust ") + cmd->name + " " + cmd->args + "\n\n" + cmd->summary +
                               "\n\noptions");
  add_common(desc, common, cmd->reads);
  po::positional_options_description pos;
  cmd->describe(desc, pos);
  // Positional arguments are options inside program_options; users see them by their
  // synopsis names (SELECTOR, FILE), never as --selector.
  std::vector<std::string> positional;
  for (unsigned i = 0; i < pos.max_total_count() && i < 8; ++i) positional.push_back(pos.name_for_position(i));
  auto is_positional = [&](const std::string& o) { return std::find(positional.begin(), positional.end(), o) != positional.end(); };
  auto shown = [](const std::string& o) {
    std::string u;
    for (char ch : o) u += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return u;
  };
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(rest).options(desc).positional(pos).run(), vm);
  } catch (const po::unknown_option& e) {
    std::vector<std::string> opts;
    for (const auto& o : desc.options())
      if (!is_positional(o->long_name())) opts.push_back("--" + o->long_name());
    usage_error(std::string(e.what()) + did_you_mean(e.get_option_name(), opts), cmd->name);
  } catch (const po::too_many_positional_options_error&) {
    usage_error("too many arguments: `ptrust " + std::string(cmd->name) + " " + cmd->args + "`", cmd->name);
  }
  if (vm.count("help") || gvm.count("help")) {
    po::options_description visible(std::string("usage: ptrust ") + cmd->name + " " + cmd->args + "\n\n" + cmd->summary +
                                    "\n\noptions");
    std::string args;
    for (const auto& o : desc.options()) {
      if (is_positional(o->long_name())) args += "  " + shown(o->long_name()) + "  " + o->description() + "\n";
      else visible.add(o);
    }
    if (!args.empty()) std::cout << "usage: ptrust " << cmd->name << " " << cmd->args << "\n\n" << cmd->summary
                                 << "\n\narguments:\n" << args << "\n" << "options:\n";
    if (args.empty()) std::cout << visible << "\n";
    else {
      po::options_description plain;
      for (const auto& o : visible.options()) plain.add(o);
      std::cout << plain << "\n";
    }
    return 0;
  }
  try {
    po::notify(vm);
  } catch (const po::required_option& e) {
    std::string o = e.get_option_name();
    while (!o.empty() && o[0] == '-') o.erase(0, 1);
    usage_error(is_positional(o) ? "missing " + shown(o) + ": `ptrust " + std::string(cmd->name) + " " + cmd->args + "`"
                                 : std::string(e.what()),
                cmd->name);
  } catch (const po::error& e) {
    usage_error(e.what(), cmd->name);
  }
  return cmd->run(common, vm);
}

}  // namespace

// The one place a refusal is printed: `ptrust: CODE: message`, one line.
void print_refusal(std::string_view code, std::string_view message) {
  std::cerr << "ptrust: " << code << ": " << one_line(message) << "\n";
}

}  // namespace ptrust::cli

int main(int argc, char** argv) {
  using namespace ptrust;
  try {
    return cli::run(argc, argv);
  } catch (const boost::program_options::error& e) {
    cli::print_refusal("USAGE", std::string(e.what()) + " (see `ptrust --help`)");
    return 2;
  } catch (const Error& e) {
    cli::print_refusal(code_name(e.code()), e.what());
    return exit_status(e.code());
  } catch (const std::exception& e) {
    cli::print_refusal("INTERNAL_ERROR", e.what());
    return 1;
  }
}
