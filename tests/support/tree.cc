#include "tests/support/tree.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/stat.h>

namespace ptrust::testing {

namespace fs = std::filesystem;

Tree snapshot(const std::string& root) {
  Tree t;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none);
       it != fs::recursive_directory_iterator(); ++it) {
    const auto& p = it->path();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    Node n{'?', static_cast<unsigned>(st.st_mode & 07777), ""};
    if (S_ISREG(st.st_mode)) {
      n.type = 'f';
      std::ifstream f(p, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      n.content = ss.str();
    } else if (S_ISDIR(st.st_mode)) {
      n.type = 'd';
    } else if (S_ISLNK(st.st_mode)) {
      n.type = 'l';
      n.content = fs::read_symlink(p).string();
    }
    t[fs::relative(p, root).string()] = n;
  }
  return t;
}

std::string diff(const Tree& a, const Tree& b) {
  std::ostringstream os;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) os << "removed " << k << "\n";
    else if (!(it->second == v)) os << "changed " << k << "\n";
  }
  for (const auto& [k, v] : b)
    if (!a.count(k)) os << "added " << k << "\n";
  return os.str();
}

}  // namespace ptrust::testing
