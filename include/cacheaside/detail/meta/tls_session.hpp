// TLS as the connections see it (internal): a session that turns plaintext into
// bytes for the wire and back, memory to memory, so the blocking and the async
// connection share it and neither knows the library behind it. The tls
// component (<cacheaside/tls.hpp>) provides it over OpenSSL; without it a
// configuration that asks for TLS is refused.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../../error.hpp"
#include "../../server_options.hpp"

namespace cacheaside::detail {

/// One connection's TLS state.
class TlsSession {
 public:
  enum class Progress { done, more, failed };

  virtual ~TlsSession() = default;
  /// Bytes that arrived from the server.
  virtual void feed(const char* data, std::size_t n) = 0;
  /// Advances the handshake with what was fed: done, more (send drain()'s bytes
  /// and feed the answer), or failed (error() says why).
  virtual Progress handshake() = 0;
  /// Plaintext decrypted from what was fed, at most room bytes: > 0 bytes, 0
  /// none yet, -1 the server closed the session or it broke (error()).
  virtual long read(char* dst, std::size_t room) = 0;
  /// Encrypts plaintext for drain(). False: the session broke.
  virtual bool write(const char* data, std::size_t n) = 0;
  /// Appends what must go on the wire (handshake or records) to `wire`.
  virtual void drain(std::string& wire) = 0;
  /// Why it failed, in words.
  virtual const std::string& error() const = 0;
  /// The server ended the session in order (close_notify), as opposed to an
  /// alert or a record that did not verify.
  virtual bool closed_in_order() const = 0;
};

/// Makes the sessions of one store (one configuration: CA, certificates).
class TlsConnector {
 public:
  virtual ~TlsConnector() = default;
  /// A client session for `host` (verified against options.server_name, or host).
  virtual std::unique_ptr<TlsSession> session(const std::string& host) = 0;
};

using TlsConnectorMaker = std::shared_ptr<TlsConnector> (*)(const TlsOptions&);

/// Set by <cacheaside/tls.hpp> when it is included.
inline std::atomic<TlsConnectorMaker>& tls_connector_maker() {
  static std::atomic<TlsConnectorMaker> maker{nullptr};
  return maker;
}

/// The connector for `options`, or nullptr without TLS. Throws Error when TLS is
/// asked for without the tls component, or its files do not load.
inline std::shared_ptr<TlsConnector> make_tls_connector(const TlsOptions& options) {
  if (!options.on()) return nullptr;
  TlsConnectorMaker maker = tls_connector_maker().load();
  if (!maker)
    throw Error(
        "cacheaside: --TLS needs the tls component: include <cacheaside/tls.hpp> and link "
        "cacheaside::tls");
  return maker(options);
}

}  // namespace cacheaside::detail
