#include "provider/context.h"

#include <sys/stat.h>

namespace ptrust::provider {

FileId file_id(const struct stat& st) noexcept {
  return {st.st_dev, st.st_ino, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          st.st_size};
}

std::optional<FileId> stat_id(const std::string& path, bool follow) noexcept {
  struct stat st;
  int rc = follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st);
  if (rc != 0) return std::nullopt;
  return file_id(st);
}

namespace {

// Mirrors open_context(): an explicit file, else <root>/etc/ptrust/ptrust.yaml.
std::string config_path_for(const std::optional<std::string>& root, const std::optional<std::string>& config) {
  return config ? *config : root.value_or("/") + "/etc/ptrust/ptrust.yaml";
}

}  // namespace

ContextSource::ContextSource(std::optional<std::string> root, std::optional<std::string> config)
    : root_(std::move(root)), config_(std::move(config)), config_path_(config_path_for(root_, config_)) {}

std::shared_ptr<const Context> ContextSource::get() {
  auto id = stat_id(config_path_, true);
  std::lock_guard lock(mu_);
  if (ctx_ && id == ctx_config_id_) return ctx_;
  // Parsing under the lock is fine: it happens once per configuration change.
  ctx_ = std::make_shared<const Context>(open_context(root_, config_));
  ctx_config_id_ = id;
  return ctx_;
}

}  // namespace ptrust::provider
