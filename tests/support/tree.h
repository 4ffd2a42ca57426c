// A snapshot of a directory tree (names, types, modes, contents, link targets) so a test
// can assert that a refused command left a root byte-identical.
#pragma once

#include <map>
#include <string>

namespace ptrust::testing {

struct Node {
  char type;  // 'f' file, 'd' dir, 'l' symlink, '?' other
  unsigned mode;
  std::string content;  // file content or link target
  bool operator==(const Node&) const = default;
};

using Tree = std::map<std::string, Node>;

Tree snapshot(const std::string& root);

// Human-readable differences ("" when equal).
std::string diff(const Tree& before, const Tree& after);

}  // namespace ptrust::testing
