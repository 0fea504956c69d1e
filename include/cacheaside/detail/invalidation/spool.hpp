// A file that keeps pending invalidations across a crash (internal; POSIX).
//
// One record per line: "d <key>" (delete) or "g <key>" (bump a group counter).
// Keys are memcached keys, so they hold no spaces or line breaks. Records are
// only appended while something is pending, and the file is emptied once
// nothing is; a torn last line (a crash mid-write) is ignored on replay.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../error.hpp"

namespace cacheaside::detail {

class Spool {
 public:
  struct Record {
    char op;  // 'd' or 'g'
    std::string key;
  };

  Spool() = default;
  /// Opens (creating) path and locks it for this process. Throws `Error` when
  /// it cannot be opened or another process holds it.
  explicit Spool(std::string path) : path_(std::move(path)) { fd_ = open_locked(path_); }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;
  ~Spool() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool enabled() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  /// The records left by a previous owner.
  std::vector<Record> read_all() {
    std::vector<Record> out;
    if (fd_ < 0) return out;
    std::string text;
    char buf[4096];
    off_t at = 0;
    for (;;) {
      ssize_t n = ::pread(fd_, buf, sizeof buf, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    std::size_t pos = 0;
    for (;;) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // a torn last line: never confirmed
      std::string_view line(text.data() + pos, nl - pos);
      pos = nl + 1;
      if (line.size() >= 3 && (line[0] == 'd' || line[0] == 'g') && line[1] == ' ')
        out.push_back({line[0], std::string(line.substr(2))});
    }
    records_ = out.size() + (pos < text.size() ? 1 : 0);  // a torn line is emptied too
    return out;
  }

  /// Appends records with one write, then waits for the disk once. False when
  /// the write failed.
  bool append_all(const std::vector<Record>& records) {
    if (fd_ < 0) return false;
    bool ok = write_all(fd_, text_of(records)) && ::fdatasync(fd_) == 0;
    if (ok) records_ += records.size();
    return ok;
  }

  /// Records written since the file was last emptied or rewritten.
  std::size_t records() const { return records_; }

  /// Nothing pending: empties the file.
  void clear() {
    if (fd_ < 0 || records_ == 0) return;
    if (::ftruncate(fd_, 0) == 0) {
      ::fdatasync(fd_);
      records_ = 0;
    }
  }

  /// Replaces the file's content with exactly these records (compaction):
  /// written aside, then renamed over, so a crash leaves the old or the new file.
  bool rewrite(const std::vector<Record>& records) {
    if (fd_ < 0) return false;
    std::string tmp = path_ + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || !write_all(fd, text_of(records)) ||
        ::fdatasync(fd) != 0 || ::rename(tmp.c_str(), path_.c_str()) != 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    ::close(fd_);
    fd_ = fd;
    records_ = records.size();
    return true;
  }

  /// Closes the file; removes it first when it holds nothing.
  void close_and_remove_if_empty() {
    if (fd_ < 0) return;
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && st.st_size == 0) ::unlink(path_.c_str());
    ::close(fd_);
    fd_ = -1;
  }

 private:
  static std::string text_of(const std::vector<Record>& records) {
    std::string text;
    for (const Record& r : records) text.append(1, r.op).append(" ").append(r.key).append("\n");
    return text;
  }

  static int open_locked(const std::string& path) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0)
        throw Error("cacheaside: cannot open spool " + path + ": " + std::strerror(errno));
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        throw Error("cacheaside: spool " + path + " is in use by another cache");
      }
      // The owner may have renamed a rewritten file over this one meanwhile.
      struct stat by_fd {
      }, by_path{};
      if (::fstat(fd, &by_fd) == 0 && ::stat(path.c_str(), &by_path) == 0 &&
          by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev)
        return fd;
      ::close(fd);
    }
    throw Error("cacheaside: spool " + path + " keeps changing under us");
  }

  static bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::write(fd, s.data(), s.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  std::string path_;
  int fd_ = -1;
  std::size_t records_ = 0;
};

}  // namespace cacheaside::detail
