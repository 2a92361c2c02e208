// The FileSystem policy of FileStorage, and PosixFileSystem, the real one.
#pragma once

#include <algorithm>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tenure::raft {

/// The few file operations FileStorage needs, as a policy, so that the simulator can run
/// FileStorage over a file system that loses unsynced writes, tears writes and flips bits.
///
/// Semantics the compiler cannot check:
/// - `append` writes all of `data` at the end of the file (or fails); nothing is durable until
///   `sync` returns success;
/// - `sync` is fdatasync: the file's data written so far, and its size, are durable when it
///   returns success. A failure is final for that file (tenure never retries: fail-stop);
/// - creating, renaming or removing a file is durable only after `sync_dir` of its directory;
/// - `read_all` reads a whole file; `read_at` up to `out.size()` bytes from `offset` (`n` says
///   how many: fewer only at the end of the file); `list` names the entries of a directory (not "."
///   or "..");
/// - calls on one file handle come from one thread at a time.
template <class F>
concept FileSystem = requires(F& fs, const std::string& path, std::span<const std::byte> data,
                              std::uint64_t size, typename F::handle h,
                              std::vector<std::byte>& bytes, std::vector<std::string>& names,
                              std::span<std::byte> out, std::size_t& n) {
  typename F::handle;
  { fs.open_append(path, h) } -> std::same_as<std::error_code>;
  { fs.append(h, data) } -> std::same_as<std::error_code>;
  { fs.sync(h) } -> std::same_as<std::error_code>;
  { fs.truncate(h, size) } -> std::same_as<std::error_code>;
  { fs.close(h) } -> std::same_as<void>;
  { fs.read_all(path, bytes) } -> std::same_as<std::error_code>;
  { fs.read_at(path, size, out, n) } -> std::same_as<std::error_code>;
  { fs.list(path, names) } -> std::same_as<std::error_code>;
  { fs.rename(path, path) } -> std::same_as<std::error_code>;
  { fs.remove(path) } -> std::same_as<std::error_code>;
  { fs.sync_dir(path) } -> std::same_as<std::error_code>;
  { fs.make_dir(path) } -> std::same_as<std::error_code>;
};

/// POSIX files: open(O_APPEND), write, fdatasync, ftruncate, rename, unlink, fsync on the
/// directory. Errors are the errno values in std::generic_category.
///
/// Thread-safety: stateless; the handles are file descriptors. Allocation: read_all and list
/// fill the caller's vectors.
class PosixFileSystem {
 public:
  using handle = int;

  std::error_code open_append(const std::string& path, handle& h) {
    do {
      h = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    } while (h < 0 && errno == EINTR);
    return h < 0 ? last_error() : std::error_code{};
  }

  std::error_code append(handle h, std::span<const std::byte> data) {
    while (!data.empty()) {
      const ssize_t n = ::write(h, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return last_error();
      }
      data = data.subspan(static_cast<std::size_t>(n));
    }
    return {};
  }

  std::error_code sync(handle h) {
    // One attempt: after a failed fdatasync the kernel may have dropped the dirty pages, so a
    // retry that "succeeds" proves nothing (the fsyncgate lesson). The caller fails stop.
    return ::fdatasync(h) != 0 ? last_error() : std::error_code{};
  }

  std::error_code truncate(handle h, std::uint64_t size) {
    return ::ftruncate(h, static_cast<off_t>(size)) != 0 ? last_error() : std::error_code{};
  }

  void close(handle h) { ::close(h); }

  std::error_code read_all(const std::string& path, std::vector<std::byte>& bytes) {
    bytes.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    std::byte buffer[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        const auto ec = last_error();
        ::close(fd);
        return ec;
      }
      if (n == 0) {
        break;
      }
      bytes.insert(bytes.end(), buffer, buffer + n);
    }
    ::close(fd);
    return {};
  }

  std::error_code read_at(const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                          std::size_t& n) {
    n = 0;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    std::error_code ec;
    while (n < out.size()) {
      const ssize_t r = ::pread(fd, out.data() + n, out.size() - n, static_cast<off_t>(offset + n));
      if (r < 0) {
        if (errno == EINTR) {
          continue;
        }
        ec = last_error();
        break;
      }
      if (r == 0) {
        break;
      }
      n += static_cast<std::size_t>(r);
    }
    ::close(fd);
    return ec;
  }

  std::error_code list(const std::string& dir, std::vector<std::string>& names) {
    names.clear();
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      return last_error();
    }
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") {
        names.push_back(name);
      }
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return {};
  }

  std::error_code rename(const std::string& from, const std::string& to) {
    return ::rename(from.c_str(), to.c_str()) != 0 ? last_error() : std::error_code{};
  }

  std::error_code remove(const std::string& path) {
    return ::unlink(path.c_str()) != 0 ? last_error() : std::error_code{};
  }

  std::error_code sync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    const int rc = ::fsync(fd);
    const auto ec = rc != 0 ? last_error() : std::error_code{};
    ::close(fd);
    return ec;
  }

  std::error_code make_dir(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return last_error();
    }
    return {};
  }

 private:
  static std::error_code last_error() noexcept { return {errno, std::generic_category()}; }
};

static_assert(FileSystem<PosixFileSystem>);

}  // namespace tenure::raft
