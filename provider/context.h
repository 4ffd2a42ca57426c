// Where the provider looks: the root prefix and the purposes configuration, decided once
// when the provider is loaded (config section `root = ...` / `config = ...`, overridden by
// $PTRUST_ROOT / $PTRUST_CONFIG). The parsed configuration is kept and re-read only when
// its file changes, so an open() costs a stat, not a YAML parse.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/selection.h"

namespace ptrust::provider {

FileId file_id(const struct stat& st) noexcept;

// stat() of `path` as a FileId; nullopt when it does not exist (or cannot be stat'ed).
std::optional<FileId> stat_id(const std::string& path, bool follow) noexcept;

class ContextSource {
 public:
  ContextSource(std::optional<std::string> root, std::optional<std::string> config);

  // The current Context. Throws ptrust::Error (CONFIG_INVALID, ...).
  std::shared_ptr<const Context> get();

 private:
  const std::optional<std::string> root_;
  const std::optional<std::string> config_;
  const std::string config_path_;  // the file open_context() would read, if it exists

  std::mutex mu_;
  std::shared_ptr<const Context> ctx_;
  std::optional<FileId> ctx_config_id_;  // of config_path_ when ctx_ was built
};

}  // namespace ptrust::provider
