// MetaStore's configuration string: the subset of libmemcached's syntax it
// implements, parsed strictly (internal).
#pragma once

#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "../../server_options.hpp"

namespace cacheaside::detail {

struct MetaServerAddress {
  std::string host;
  std::uint16_t port = 11211;
  std::string spec;  ///< as written: ketama hashes the name, not the address
  std::string name() const { return host + ":" + std::to_string(port); }
};

struct MetaConfig {
  std::vector<MetaServerAddress> servers;
  std::size_t pool_max = 0;  ///< per server; 0: the default
  std::size_t pool_min = 0;  ///< per server, opened by the constructor
  std::chrono::milliseconds connect_timeout = StoreDefaults::connect_timeout;
  std::chrono::milliseconds poll_timeout = StoreDefaults::poll_timeout;
  std::chrono::seconds retry_timeout = StoreDefaults::retry_timeout;
  int failure_limit = StoreDefaults::failure_limit;
  std::string username;  ///< memcached -Y credentials; empty: none
  std::string password;
  TlsOptions tls;

  bool authenticates() const { return !username.empty(); }

  /// Parses "--SERVER=host:port --POOL-MAX=n ..." or a bare "host:port".
  /// Throws Error naming what it does not support.
  static MetaConfig parse(const std::string& text) {
    MetaConfig c;
    const std::vector<std::string> tokens = config_words(text);
    if (tokens.empty()) throw Error("cacheaside: empty MetaStore configuration");
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      if (t.rfind("--", 0) != 0) {
        if (secret_word(tokens, i))  // never quoted: it may be the rest of a password
          throw Error(
              "cacheaside: MetaStore configuration: a word after --PASSWORD is not an option "
              "(whitespace in a password? use --AUTH-FILE)");
        if (tokens.size() != 1)
          throw Error("cacheaside: MetaStore configuration: '" + t + "' is not an option");
        c.servers.push_back(address(t));  // "host:port" alone
        continue;
      }
      std::string name = t, value;
      bool has_value = false;
      if (auto eq = t.find('='); eq != std::string::npos) {
        name = t.substr(0, eq);
        value = t.substr(eq + 1);
        has_value = true;
      }
      for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      auto need = [&]() -> const std::string& {
        if (!has_value || value.empty())
          throw Error("cacheaside: MetaStore configuration: " + name + " needs a value");
        return value;
      };
      if (name == "--SERVER") {
        c.servers.push_back(address(need()));
      } else if (name == "--POOL-MAX") {
        c.pool_max = static_cast<std::size_t>(number(name, need(), 1, 100000));
      } else if (name == "--POOL-MIN") {
        c.pool_min = static_cast<std::size_t>(number(name, need(), 0, 100000));
      } else if (name == "--CONNECT-TIMEOUT") {
        c.connect_timeout = std::chrono::milliseconds(number(name, need(), 1, 3600000));
      } else if (name == "--POLL-TIMEOUT") {
        c.poll_timeout = std::chrono::milliseconds(number(name, need(), 1, 3600000));
      } else if (name == "--RETRY-TIMEOUT") {
        c.retry_timeout = std::chrono::seconds(number(name, need(), 0, 86400));
      } else if (name == "--SERVER-FAILURE-LIMIT") {
        c.failure_limit = static_cast<int>(number(name, need(), 1, 1000));
      } else if (name == "--USERNAME") {
        c.username = need();
      } else if (name == "--PASSWORD") {
        c.password = need();
      } else if (name == "--AUTH-FILE") {
        read_auth_file(need(), c);
      } else if (name == "--TLS") {
        c.tls.enabled = true;
      } else if (name == "--TLS-CA") {
        c.tls.ca_file = need();
      } else if (name == "--TLS-CERT") {
        c.tls.cert_file = need();
      } else if (name == "--TLS-KEY") {
        c.tls.key_file = need();
      } else if (name == "--TLS-SERVER-NAME") {
        c.tls.server_name = need();
      } else if (name == "--TLS-INSECURE-NO-VERIFY") {
        c.tls.insecure_no_verify = true;
      } else if (name == "--TCP-NODELAY") {
        // always on
      } else if (name == "--DISTRIBUTION") {
        std::string v = need();
        for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (v != "consistent")
          throw Error("cacheaside: MetaStore distributes keys with ketama only (--DISTRIBUTION=" +
                      value + ")");
      } else {
        throw Error(
            "cacheaside: MetaStore does not support " +
            (i > 0 && secret_word(tokens, i - 1) ? "an option after --PASSWORD" : name) +
            " (supported: --SERVER, --POOL-MIN, --POOL-MAX, --CONNECT-TIMEOUT, --POLL-TIMEOUT, "
            "--RETRY-TIMEOUT, --SERVER-FAILURE-LIMIT, --TCP-NODELAY, "
            "--DISTRIBUTION=consistent, --USERNAME, --PASSWORD, --AUTH-FILE, --TLS, --TLS-CA, "
            "--TLS-CERT, --TLS-KEY, --TLS-SERVER-NAME, --TLS-INSECURE-NO-VERIFY)");
      }
    }
    if (c.servers.empty())
      throw Error("cacheaside: no server in configuration '" + redact_config(text) + "'");
    check_credential("username", c.username);
    check_credential("password", c.password);
    if (c.username.empty() != c.password.empty())
      throw Error("cacheaside: MetaStore configuration: --USERNAME and --PASSWORD go together");
    if (c.tls.cert_file.empty() != c.tls.key_file.empty())
      throw Error("cacheaside: MetaStore configuration: --TLS-CERT and --TLS-KEY go together");
    if (c.tls.insecure_no_verify) {
      // Verification off beside what only verification uses: a contradiction, refused
      // rather than one of the two silently winning.
      for (const char* o : {c.tls.ca_file.empty() ? nullptr : "--TLS-CA",
                            c.tls.server_name.empty() ? nullptr : "--TLS-SERVER-NAME",
                            c.tls.cert_file.empty() ? nullptr : "--TLS-CERT"})
        if (o)
          throw Error(std::string("cacheaside: MetaStore configuration: --TLS-INSECURE-NO-VERIFY "
                                  "contradicts ") +
                      o + " (verification off ignores it)");
      if (c.authenticates())
        throw Error(
            "cacheaside: MetaStore configuration: credentials are not sent over TLS that does "
            "not verify the server (--TLS-INSECURE-NO-VERIFY): anyone in the path could take "
            "them");
    }
    if (c.tls.on()) c.tls.enabled = true;
    return c;
  }

  /// memcached's -Y file format: the first non-empty line is "user:password".
  static void read_auth_file(const std::string& path, MetaConfig& c) {
    std::ifstream f(path);
    if (!f) throw Error("cacheaside: cannot read the auth file " + path);
    std::string line;
    while (std::getline(f, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty()) break;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == line.size())
      throw Error("cacheaside: the auth file " + path +
                  " does not start with a user:password line");
    c.username = line.substr(0, colon);
    c.password = line.substr(colon + 1);
  }

 private:
  // memcached splits the credentials at the first space and ends them at "\r\n".
  static void check_credential(const char* what, const std::string& v) {
    for (char ch : v)
      if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
        throw Error(std::string("cacheaside: MetaStore configuration: the ") + what +
                    " has whitespace or a control character");
  }

  static std::int64_t number(const std::string& name, const std::string& v, std::int64_t lo,
                             std::int64_t hi) {
    std::int64_t n = 0;
    for (char ch : v) {
      if (ch < '0' || ch > '9' || n > hi)
        throw Error("cacheaside: MetaStore configuration: " + name + "=" + v +
                    " is not a number from " + std::to_string(lo) + " to " + std::to_string(hi));
      n = n * 10 + (ch - '0');
    }
    if (n < lo || n > hi)
      throw Error("cacheaside: MetaStore configuration: " + name + "=" + v + " is out of range (" +
                  std::to_string(lo) + " to " + std::to_string(hi) + ")");
    return n;
  }

  static MetaServerAddress address(const std::string& v) {
    if (v.find('/') != std::string::npos || v.find('?') != std::string::npos)
      throw Error("cacheaside: MetaStore takes host:port servers only (no sockets, no weights): '" +
                  v + "'");
    MetaServerAddress a;
    a.spec = v;
    std::string port;
    if (!v.empty() && v[0] == '[') {  // [v6]:port
      auto close = v.find(']');
      if (close == std::string::npos) throw Error("cacheaside: bad server address '" + v + "'");
      a.host = v.substr(1, close - 1);
      if (close + 1 < v.size()) {
        if (v[close + 1] != ':') throw Error("cacheaside: bad server address '" + v + "'");
        port = v.substr(close + 2);
      }
    } else {
      auto colon = v.rfind(':');
      a.host = v.substr(0, colon);
      if (colon != std::string::npos) port = v.substr(colon + 1);
    }
    if (a.host.empty()) throw Error("cacheaside: bad server address '" + v + "'");
    if (!port.empty()) a.port = static_cast<std::uint16_t>(number("port", port, 1, 65535));
    return a;
  }
};

}  // namespace cacheaside::detail
