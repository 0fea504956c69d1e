// cacheaside: TLS for MetaStore and AsyncMetaStore over OpenSSL 3 (Debian:
// libssl-dev); link cacheaside::tls. Including this header is what lets a
// configuration ask for TLS (`--TLS --TLS-CA=ca.pem`, or ServerOptions::tls);
// without it such a configuration is refused with an Error.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstddef>
#include <memory>
#include <string>

#include "detail/meta/tls_session.hpp"
#include "error.hpp"
#include "server_options.hpp"

namespace cacheaside {
namespace detail {

/// The oldest queued OpenSSL error in words (the queue is emptied).
inline std::string openssl_error(const char* fallback) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

/// One connection's TLS over memory BIOs: the connection moves the bytes.
class OpenSslSession final : public TlsSession {
 public:
  OpenSslSession(SSL_CTX* ctx, const std::string& name, bool verify) : ssl_(SSL_new(ctx)) {
    if (!ssl_) throw Error("cacheaside: TLS: " + openssl_error("SSL_new failed"));
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_, -1);  // empty: "more to come", not the end
    BIO_set_mem_eof_return(out_, -1);
    SSL_set_bio(ssl_, in_, out_);  // the session owns both
    SSL_set_connect_state(ssl_);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) {  // not an address: a name
      ERR_clear_error();
      // Either refused (a name SNI cannot carry, no memory) fails the session before it
      // starts: without the name set, the handshake would check the chain but not whom.
      if (SSL_set_tlsext_host_name(ssl_, name.c_str()) != 1 ||
          (verify && SSL_set1_host(ssl_, name.c_str()) != 1))
        refused_ = "the server name '" + name +
                   "' cannot be checked: " + openssl_error("OpenSSL refused it");
    }
  }
  ~OpenSslSession() override { SSL_free(ssl_); }
  OpenSslSession(const OpenSslSession&) = delete;
  OpenSslSession& operator=(const OpenSslSession&) = delete;

  void feed(const char* data, std::size_t n) override {
    while (n > 0) {
      int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
      int put = BIO_write(in_, data, chunk);
      if (put <= 0) return;
      data += put;
      n -= static_cast<std::size_t>(put);
    }
  }

  Progress handshake() override {
    if (!refused_.empty()) {
      error_ = refused_;
      return Progress::failed;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) return Progress::done;
    int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Progress::more;
    long verify = SSL_get_verify_result(ssl_);
    error_ = verify != X509_V_OK ? std::string("server certificate refused: ") +
                                       X509_verify_cert_error_string(verify)
                                 : openssl_error("the handshake failed");
    ERR_clear_error();
    return Progress::failed;
  }

  long read(char* dst, std::size_t room) override {
    ERR_clear_error();
    int rc = SSL_read(ssl_, dst, room > INT_MAX ? INT_MAX : static_cast<int>(room));
    if (rc > 0) return rc;
    int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    closed_in_order_ = e == SSL_ERROR_ZERO_RETURN;
    error_ = closed_in_order_ ? "the server closed the TLS session"
                              : openssl_error(
                                    "the server ended the TLS session (an alert or a "
                                    "record that does not verify)");
    return -1;
  }

  bool write(const char* data, std::size_t n) override {
    while (n > 0) {  // a memory BIO takes everything
      ERR_clear_error();
      int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
      int rc = SSL_write(ssl_, data, chunk);
      if (rc <= 0) {
        error_ = openssl_error("SSL_write failed");
        return false;
      }
      data += rc;
      n -= static_cast<std::size_t>(rc);
    }
    return true;
  }

  void drain(std::string& wire) override {
    std::size_t pending = BIO_ctrl_pending(out_);
    if (pending == 0) return;
    std::size_t old = wire.size();
    wire.resize(old + pending);
    int got = BIO_read(out_, &wire[old], static_cast<int>(pending));
    wire.resize(old + (got > 0 ? static_cast<std::size_t>(got) : 0));
  }

  const std::string& error() const override { return error_; }
  bool closed_in_order() const override { return closed_in_order_; }

 private:
  SSL* ssl_;
  bool closed_in_order_ = false;
  BIO* in_ = nullptr;   // from the server
  BIO* out_ = nullptr;  // to the server
  std::string error_;
  std::string refused_;  // set-up failed: no handshake
};

/// The sessions of one store: its CA, client certificate and verification.
class OpenSslConnector final : public TlsConnector {
 public:
  explicit OpenSslConnector(const TlsOptions& o)
      : options_(o), ctx_(SSL_CTX_new(TLS_client_method())) {
    if (!ctx_) throw Error("cacheaside: TLS: " + openssl_error("SSL_CTX_new failed"));
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    if (o.insecure_no_verify) {
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    } else {
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
      bool loaded = o.ca_file.empty()
                        ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                        : SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr) == 1;
      if (!loaded) fail("cannot load the CA file '" + o.ca_file + "'");
    }
    if (!o.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx_, o.cert_file.c_str()) != 1)
        fail("cannot load the client certificate '" + o.cert_file + "'");
      if (SSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        fail("cannot load the client key '" + o.key_file + "'");
      if (SSL_CTX_check_private_key(ctx_) != 1)
        fail("the client key does not match its certificate");
    }
  }
  ~OpenSslConnector() override { SSL_CTX_free(ctx_); }
  OpenSslConnector(const OpenSslConnector&) = delete;
  OpenSslConnector& operator=(const OpenSslConnector&) = delete;

  std::unique_ptr<TlsSession> session(const std::string& host) override {
    const std::string& name = options_.server_name.empty() ? host : options_.server_name;
    return std::make_unique<OpenSslSession>(ctx_, name, !options_.insecure_no_verify);
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    std::string why = openssl_error("");
    SSL_CTX_free(ctx_);
    throw Error("cacheaside: TLS: " + what + (why.empty() ? "" : ": " + why));
  }

  TlsOptions options_;
  SSL_CTX* ctx_;
};

inline std::shared_ptr<TlsConnector> make_openssl_connector(const TlsOptions& o) {
  return std::make_shared<OpenSslConnector>(o);
}

/// Including this header makes TLS available to every store of the program.
inline const bool tls_available = (tls_connector_maker().store(&make_openssl_connector), true);

}  // namespace detail
}  // namespace cacheaside
