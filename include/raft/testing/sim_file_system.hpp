// SimFileSystem: an in-memory FileSystem that models what survives a crash, for FileStorage
// tests and the simulator: unsynced writes lost or torn at sector boundaries, directory
// operations lost until the directory is synced, bit flips, and fsync errors.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <raft/file_system.hpp>

namespace tenure::raft::testing {

/// What a crash keeps of the writes that were not synced.
struct CrashPlan {
  /// Per file (by path): how many of its unsynced appended bytes reach the disk (a prefix of
  /// them, as a device that writes sectors in order would leave); missing files keep none.
  std::map<std::string, std::uint64_t> kept_bytes;
  /// Per file: after the kept bytes, how many zero bytes the file is extended by (the size
  /// reached the disk but the data did not).
  std::map<std::string, std::uint64_t> zero_bytes;
  /// How many of the unsynced directory operations (create, rename, remove), in order, reach
  /// the disk.
  std::size_t kept_directory_ops = 0;
};

/// A flat, in-memory file system (paths are compared as strings; directories are implicit).
/// Each file has a durable content (what a crash keeps) and a current content (what reads see);
/// the directory likewise has durable and current name tables.
///
/// Thread-safety: none; one thread (a simulation, or a test). Allocation: as files grow.
class SimFileSystem {
 public:
  using handle = std::size_t;

  // --- the FileSystem policy -------------------------------------------------------------------
  std::error_code open_append(const std::string& path, handle& h) {
    auto it = names_.find(path);
    if (it == names_.end()) {
      const std::size_t id = files_.size();
      files_.push_back(std::make_unique<File>());
      it = names_.emplace(path, id).first;
      dir_ops_.push_back(DirOp{DirOp::Kind::create, path, {}, id});
    }
    h = it->second;
    return {};
  }

  std::error_code append(handle h, std::span<const std::byte> data) {
    if (fail_appends_) {
      return std::error_code(EIO, std::generic_category());
    }
    File& f = *files_[h];
    f.data.insert(f.data.end(), data.begin(), data.end());
    return {};
  }

  std::error_code sync(handle h) {
    ++syncs_;
    if (fail_next_sync_) {
      fail_next_sync_ = false;
      return std::error_code(EIO, std::generic_category());
    }
    File& f = *files_[h];
    f.durable = f.data;
    return {};
  }

  std::error_code truncate(handle h, std::uint64_t size) {
    File& f = *files_[h];
    f.data.resize(size);
    return {};
  }

  void close(handle) {}

  std::error_code read_all(const std::string& path, std::vector<std::byte>& bytes) {
    const auto it = names_.find(path);
    if (it == names_.end()) {
      return std::error_code(ENOENT, std::generic_category());
    }
    bytes = files_[it->second]->data;
    return {};
  }

  std::error_code read_at(const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                          std::size_t& n) {
    n = 0;
    const auto it = names_.find(path);
    if (it == names_.end()) {
      return std::error_code(ENOENT, std::generic_category());
    }
    const std::vector<std::byte>& data = files_[it->second]->data;
    if (offset < data.size()) {
      n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), data.size() - offset));
      std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(offset), n, out.begin());
    }
    return {};
  }

  std::error_code list(const std::string& dir, std::vector<std::string>& names) {
    names.clear();
    const std::string prefix = dir + "/";
    for (const auto& [path, id] : names_) {
      if (path.compare(0, prefix.size(), prefix) == 0 &&
          path.find('/', prefix.size()) == std::string::npos) {
        names.push_back(path.substr(prefix.size()));
      }
    }
    return {};
  }

  std::error_code rename(const std::string& from, const std::string& to) {
    const auto it = names_.find(from);
    if (it == names_.end()) {
      return std::error_code(ENOENT, std::generic_category());
    }
    const std::size_t id = it->second;
    names_.erase(it);
    names_[to] = id;
    dir_ops_.push_back(DirOp{DirOp::Kind::rename, from, to, id});
    return {};
  }

  std::error_code remove(const std::string& path) {
    const auto it = names_.find(path);
    if (it == names_.end()) {
      return std::error_code(ENOENT, std::generic_category());
    }
    dir_ops_.push_back(DirOp{DirOp::Kind::remove, path, {}, it->second});
    names_.erase(it);
    return {};
  }

  std::error_code sync_dir(const std::string&) {
    durable_names_ = names_;
    dir_ops_.clear();
    return {};
  }

  std::error_code make_dir(const std::string&) { return {}; }

  // --- faults ----------------------------------------------------------------------------------

  /// Loses power: every file returns to its durable content plus what `plan` keeps, and the
  /// directory to its durable names plus the kept directory operations.
  void crash(const CrashPlan& plan = {}) {
    // Directory: durable names, then the kept prefix of unsynced operations.
    std::map<std::string, std::size_t> names = durable_names_;
    for (std::size_t i = 0; i < dir_ops_.size() && i < plan.kept_directory_ops; ++i) {
      const DirOp& op = dir_ops_[i];
      switch (op.kind) {
        case DirOp::Kind::create:
          names[op.path] = op.file;
          break;
        case DirOp::Kind::rename:
          names.erase(op.path);
          names[op.to] = op.file;
          break;
        case DirOp::Kind::remove:
          names.erase(op.path);
          break;
      }
    }
    // Files: durable content, then a prefix of the unsynced appended bytes, then zeros.
    for (const auto& [path, id] : names) {
      File& f = *files_[id];
      std::vector<std::byte> content = f.durable;
      if (f.data.size() > f.durable.size() &&
          std::equal(f.durable.begin(), f.durable.end(), f.data.begin())) {
        const auto kept = plan.kept_bytes.find(path);
        const std::uint64_t n =
            kept == plan.kept_bytes.end()
                ? 0
                : std::min<std::uint64_t>(kept->second, f.data.size() - f.durable.size());
        content.insert(content.end(),
                       f.data.begin() + static_cast<std::ptrdiff_t>(f.durable.size()),
                       f.data.begin() + static_cast<std::ptrdiff_t>(f.durable.size() + n));
      }
      if (const auto zeros = plan.zero_bytes.find(path); zeros != plan.zero_bytes.end()) {
        content.resize(content.size() + zeros->second, std::byte{0});
      }
      f.data = content;
      f.durable = content;
    }
    names_ = names;
    durable_names_ = names;
    dir_ops_.clear();
    fail_next_sync_ = false;
    fail_appends_ = false;
  }

  /// Unsynced appended bytes of `path` (what a crash may lose or tear).
  std::uint64_t unsynced_bytes(const std::string& path) const {
    const auto it = names_.find(path);
    if (it == names_.end()) {
      return 0;
    }
    const File& f = *files_[it->second];
    return f.data.size() > f.durable.size() ? f.data.size() - f.durable.size() : 0;
  }

  std::size_t unsynced_directory_ops() const noexcept { return dir_ops_.size(); }

  /// Flips bit `bit` of byte `offset` of `path`, in both its durable and its current content
  /// (media corruption). Returns false when the file is shorter.
  bool flip_bit(const std::string& path, std::uint64_t offset, unsigned bit) {
    const auto it = names_.find(path);
    if (it == names_.end()) {
      return false;
    }
    File& f = *files_[it->second];
    bool flipped = false;
    for (auto* content : {&f.durable, &f.data}) {
      if (offset < content->size()) {
        (*content)[offset] ^= static_cast<std::byte>(1u << (bit % 8));
        flipped = true;
      }
    }
    return flipped;
  }

  /// The next sync fails with EIO (and makes nothing durable).
  void fail_next_sync() noexcept { fail_next_sync_ = true; }
  /// Every append fails with EIO until the next crash (a full or dying disk).
  void fail_appends() noexcept { fail_appends_ = true; }

  std::uint64_t syncs() const noexcept { return syncs_; }
  /// The current size of `path`, or 0.
  std::uint64_t size(const std::string& path) const {
    const auto it = names_.find(path);
    return it == names_.end() ? 0 : files_[it->second]->data.size();
  }
  /// Every path, current names.
  std::vector<std::string> paths() const {
    std::vector<std::string> out;
    for (const auto& [path, id] : names_) {
      out.push_back(path);
    }
    return out;
  }

 private:
  struct File {
    std::vector<std::byte> durable;
    std::vector<std::byte> data;
  };
  struct DirOp {
    enum class Kind { create, rename, remove };
    Kind kind;
    std::string path;
    std::string to;
    std::size_t file;
  };

  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, std::size_t> names_;
  std::map<std::string, std::size_t> durable_names_;
  std::vector<DirOp> dir_ops_;
  bool fail_next_sync_ = false;
  bool fail_appends_ = false;
  std::uint64_t syncs_ = 0;
};

static_assert(FileSystem<SimFileSystem>);

}  // namespace tenure::raft::testing
