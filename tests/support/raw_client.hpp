// A tiny blocking ASCII-protocol client over a socket, independent of libmemcached, to
// look at what the server really holds (stats, raw items).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace cacheaside_test {

class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("RawClient: connect failed");
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  /// Sends bytes as they are.
  void send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::write(fd_, bytes.data() + off, bytes.size() - off);
      if (n <= 0) throw std::runtime_error("RawClient: write failed");
      off += static_cast<size_t>(n);
    }
  }
  /// Reads one line without CRLF.
  std::string line() {
    while (true) {
      auto pos = buf_.find("\r\n");
      if (pos != std::string::npos) {
        std::string l = buf_.substr(0, pos);
        buf_.erase(0, pos + 2);
        return l;
      }
      fill();
    }
  }
  std::string bytes(size_t n) {
    while (buf_.size() < n) fill();
    std::string b = buf_.substr(0, n);
    buf_.erase(0, n);
    return b;
  }

  /// `stats` as a map.
  std::map<std::string, std::string> stats() {
    send("stats\r\n");
    std::map<std::string, std::string> out;
    for (std::string l = line(); l != "END"; l = line()) {
      std::istringstream in(l);
      std::string stat, name, value;
      in >> stat >> name >> value;
      out[name] = value;
    }
    return out;
  }

  struct Item {
    std::string value;
    unsigned flags = 0;
  };
  /// `get key`: the raw item, if present.
  std::optional<Item> get(const std::string& key) {
    send("get " + key + "\r\n");
    std::optional<Item> out;
    for (std::string l = line(); l != "END"; l = line()) {
      std::istringstream in(l);
      std::string word, k;
      size_t len = 0;
      Item it;
      in >> word >> k >> it.flags >> len;
      if (word != "VALUE") throw std::runtime_error("RawClient: unexpected " + l);
      it.value = bytes(len);
      bytes(2);
      out = it;
    }
    return out;
  }
  /// `set key flags exptime` with raw bytes; true on STORED.
  bool set(const std::string& key, const std::string& value, unsigned flags = 0,
           unsigned exptime = 0) {
    send("set " + key + " " + std::to_string(flags) + " " + std::to_string(exptime) + " " +
         std::to_string(value.size()) + "\r\n" + value + "\r\n");
    return line() == "STORED";
  }

 private:
  void fill() {
    char tmp[4096];
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) throw std::runtime_error("RawClient: read failed or timed out");
    buf_.append(tmp, static_cast<size_t>(n));
  }
  int fd_ = -1;
  std::string buf_;
};

}  // namespace cacheaside_test
