// Certificates the TLS tests make for themselves with the openssl command: a CA,
// a server certificate for localhost and 127.0.0.1, the same key with an expired
// certificate and with a certificate for another name, a client certificate, and
// a second CA nobody trusts. Made once per test process in a fresh directory.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/memcached_process.hpp"

namespace cacheaside_test {

#ifndef CACHEASIDE_OPENSSL_BIN
#define CACHEASIDE_OPENSSL_BIN "/usr/bin/openssl"
#endif

class TlsFiles {
 public:
  static const TlsFiles& get() {
    static TlsFiles files;
    return files;
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string ca() const { return path("ca.pem"); }
  std::string other_ca() const { return path("other_ca.pem"); }

  /// memcached arguments for TLS with `cert` (server.pem, expired.pem, wrong_name.pem);
  /// require_client: mutual TLS against ca.pem.
  std::vector<std::string> server_args(const std::string& cert = "server.pem",
                                       bool require_client = false) const {
    std::string o = "ssl_chain_cert=" + path(cert) + ",ssl_key=" + path("server.key");
    if (require_client) o += ",ssl_verify_mode=2,ssl_ca_cert=" + ca();
    return {"-Z", "-o", o};
  }

  ~TlsFiles() { std::system(("rm -rf '" + dir_ + "'").c_str()); }

 private:
  TlsFiles() {
    char tmpl[] = "/tmp/cacheaside_tls_XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);  // memcached may read them as nobody
    std::ofstream(path("server.ext")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::ofstream(path("other.ext")) << "subjectAltName=DNS:elsewhere.example\n";
    std::ofstream(path("client.ext")) << "extendedKeyUsage=clientAuth\n";
    ca_pair("ca");
    ca_pair("other_ca");
    key("server");
    key("client");
    sign("server", "server.pem", "server.ext", "2");
    sign("server", "expired.pem", "server.ext", "-1");
    sign("server", "wrong_name.pem", "other.ext", "2");
    sign("client", "client.pem", "client.ext", "2");
    std::system(("chmod 0644 '" + dir_ + "'/*").c_str());
  }

  void run(const std::string& args) const {
    std::string cmd = std::string(CACHEASIDE_OPENSSL_BIN) + " " + args + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  }
  void ca_pair(const std::string& name) const {
    run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=" + name +
        "' -keyout " + path(name + ".key") + " -out " + path(name + ".pem"));
  }
  void key(const std::string& name) const {
    run("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=" + name + "' -keyout " +
        path(name + ".key") + " -out " + path(name + ".csr"));
  }
  void sign(const std::string& name, const std::string& out, const std::string& ext,
            const std::string& days) const {
    run("x509 -req -in " + path(name + ".csr") + " -CA " + ca() + " -CAkey " + path("ca.key") +
        " -CAcreateserial -days " + days + " -extfile " + path(ext) + " -out " + path(out));
  }

  std::string dir_;
};

}  // namespace cacheaside_test
