// cacheaside: typed connection options for the memcached stores (standard
// library only).
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "error.hpp"

namespace cacheaside {

/// The stores' defaults, for MemcachedStore and MetaStore alike (a configuration
/// string or ServerOptions field that is not set keeps these).
struct StoreDefaults {
  /// Time to open a connection.
  static constexpr std::chrono::milliseconds connect_timeout{200};
  /// Time to wait for an answer (and for a free pooled connection).
  static constexpr std::chrono::milliseconds poll_timeout{100};
  /// A server skipped after failure_limit failed calls in a row is tried again after this.
  static constexpr std::chrono::seconds retry_timeout{1};
  /// Calls failed in a row after which a server is skipped for retry_timeout.
  static constexpr int failure_limit = 2;
  /// Connections per server: max(16, 2 x cores).
  static std::size_t pool_max() {
    return std::max<std::size_t>(16, 2 * std::max(1u, std::thread::hardware_concurrency()));
  }
};

/// What a store's connections went through before their first request.
struct ConnectionStats {
  std::uint64_t handshakes = 0;     ///< TLS handshakes completed
  std::uint64_t tls_failures = 0;   ///< TLS handshakes refused or broken
  std::uint64_t auth_failures = 0;  ///< credentials refused, or an unexpected answer
  std::string last_error;           ///< why the last set-up failed, in words
};

/// TLS for every connection a MetaStore or AsyncMetaStore opens (the tls
/// component: include <cacheaside/tls.hpp>, link cacheaside::tls). The server's
/// certificate and name are verified unless insecure_no_verify says otherwise.
struct TlsOptions {
  /// Speak TLS (any field below set implies it).
  bool enabled = false;
  /// PEM file of the CA(s) the server's certificate must chain to; empty: the
  /// system's trust store.
  std::string ca_file;
  /// Client certificate (PEM, chain allowed), for mutual TLS.
  std::string cert_file;
  /// The client certificate's private key (PEM).
  std::string key_file;
  /// Name the certificate must carry (DNS name or IP address); empty: the server's host.
  std::string server_name;
  /// Accept any certificate and name: encryption without authentication of the
  /// server. For tests only.
  bool insecure_no_verify = false;

  /// Whether TLS is asked for at all.
  bool on() const {
    return enabled || !ca_file.empty() || !cert_file.empty() || !key_file.empty() ||
           !server_name.empty() || insecure_no_verify;
  }
};

namespace detail {

/// A configuration string's words (split at whitespace, as both parsers do).
inline std::vector<std::string> config_words(std::string_view text) {
  std::vector<std::string> words;
  std::string w;
  for (char ch : text) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      if (!w.empty()) words.push_back(std::move(w));
      w.clear();
    } else {
      w += ch;
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  return words;
}

/// Whether words[i] is, or may be part of, a password: a `--PASSWORD=` word, and each
/// word after it that is no option (a password with whitespace splits into words).
inline bool secret_word(const std::vector<std::string>& words, std::size_t i) {
  auto password = [](const std::string& w) {
    if (w.size() < 10) return false;
    for (std::size_t k = 0; k < 10; ++k)
      if (std::toupper(static_cast<unsigned char>(w[k])) != "--PASSWORD"[k]) return false;
    return w.size() == 10 || w[10] == '=';
  };
  for (std::size_t k = i + 1; k-- > 0;) {
    if (password(words[k])) return true;
    if (words[k].rfind("--", 0) == 0) return false;
  }
  return false;
}

/// text with every occurrence of each secret word of config replaced by `***`: for
/// messages that quote what a library said about the configuration.
inline std::string scrub(std::string text, std::string_view config) {
  std::vector<std::string> words = config_words(config);
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (!secret_word(words, i)) continue;
    std::string_view w = words[i];
    if (auto eq = w.find('='); eq != std::string_view::npos && w.rfind("--", 0) == 0)
      w.remove_prefix(eq + 1);
    if (w.empty()) continue;
    for (std::size_t at = text.find(w); at != std::string::npos; at = text.find(w, at + 3))
      text.replace(at, w.size(), "***");
  }
  return text;
}

}  // namespace detail

/// A configuration string as it may be shown (in errors, logs, `config()`): every
/// password, and any word that may be part of one, replaced by `***`.
inline std::string redact_config(std::string_view config) {
  std::vector<std::string> words = detail::config_words(config);
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (!out.empty()) out += ' ';
    if (!detail::secret_word(words, i)) {
      out += words[i];
    } else if (words[i].rfind("--", 0) == 0) {
      out += words[i].substr(0, words[i].find('=')) + "=***";
    } else {
      out += "***";
    }
  }
  return out;
}

/// Where the servers are and how long to wait for them: the typed form of the
/// configuration string (`--SERVER=host:port --POOL-MAX=16 ...`). Unset fields
/// keep StoreDefaults.
struct ServerOptions {
  /// "host:port" (or "host", port 11211), one per server. At least one.
  std::vector<std::string> servers;
  /// Connections in the pool; 0: the default. Have at least one per thread that
  /// uses the store at once.
  std::size_t pool_max = 0;
  /// 0: the default.
  std::chrono::milliseconds connect_timeout{0};
  /// Time to wait for an answer; 0: the default.
  std::chrono::milliseconds poll_timeout{0};
  /// Time before a failed server is tried again; 0: the default.
  std::chrono::seconds retry_timeout{0};
  /// memcached's ASCII authentication (`memcached -Y`): a file whose first line
  /// is `user:password` (the format of memcached's own file). Preferred to the
  /// two fields below, which end up in the configuration string.
  std::string auth_file;
  /// Credentials given directly (no whitespace in either): the user name...
  std::string username;
  /// ...and its password.
  std::string password;
  /// TLS for every connection.
  TlsOptions tls;
  /// More options in the configuration string syntax, appended as given.
  std::string extra;

  /// The configuration string these options stand for. Throws Error for a
  /// field with whitespace (it would split into two options: `servers` too), or a
  /// server that starts like an option.
  std::string to_config() const {
    auto check = [](const std::string& f, bool secret) {
      for (char ch : f)
        if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
          throw Error("cacheaside: ServerOptions: '" + (secret ? std::string("***") : f) +
                      "' has whitespace or a control character");
    };
    for (const std::string& s : servers) {
      check(s, false);
      if (s.empty() || s[0] == '-')
        throw Error("cacheaside: ServerOptions: '" + s + "' is not a host:port");
    }
    for (const std::string* f :
         {&auth_file, &username, &tls.ca_file, &tls.cert_file, &tls.key_file, &tls.server_name})
      check(*f, false);
    check(password, true);
    std::string c;
    for (const auto& s : servers) c += "--SERVER=" + s + " ";
    if (pool_max) c += "--POOL-MAX=" + std::to_string(pool_max) + " ";
    if (connect_timeout.count() > 0)
      c += "--CONNECT-TIMEOUT=" + std::to_string(connect_timeout.count()) + " ";
    if (poll_timeout.count() > 0)
      c += "--POLL-TIMEOUT=" + std::to_string(poll_timeout.count()) + " ";
    if (retry_timeout.count() > 0)
      c += "--RETRY-TIMEOUT=" + std::to_string(retry_timeout.count()) + " ";
    if (!auth_file.empty()) c += "--AUTH-FILE=" + auth_file + " ";
    if (!username.empty()) c += "--USERNAME=" + username + " ";
    if (!password.empty()) c += "--PASSWORD=" + password + " ";
    if (tls.on()) c += "--TLS ";
    if (!tls.ca_file.empty()) c += "--TLS-CA=" + tls.ca_file + " ";
    if (!tls.cert_file.empty()) c += "--TLS-CERT=" + tls.cert_file + " ";
    if (!tls.key_file.empty()) c += "--TLS-KEY=" + tls.key_file + " ";
    if (!tls.server_name.empty()) c += "--TLS-SERVER-NAME=" + tls.server_name + " ";
    if (tls.insecure_no_verify) c += "--TLS-INSECURE-NO-VERIFY ";
    c += extra;
    while (!c.empty() && c.back() == ' ') c.pop_back();
    return c;
  }
};

}  // namespace cacheaside
