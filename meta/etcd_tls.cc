#include "meta/etcd_tls.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstring>

namespace mrl::meta::etcd_tls {

namespace ssl = boost::asio::ssl;

namespace {

// Why a PEM file did not load: a missing or unreadable file in the OS's words, else OpenSSL's.
std::string LoadError(const std::string& path, const boost::system::error_code& ec) {
  if (::access(path.c_str(), R_OK) != 0) return std::strerror(errno);
  return ec.message();
}

// What the server's alert most likely means, for the alerts a client certificate draws.
std::string AlertHint(const boost::system::error_code& ec) {
  const std::string m = ec.message();
  for (const char* alert : {"alert bad certificate", "alert certificate required",
                            "alert unknown ca", "alert certificate unknown"}) {
    if (m.find(alert) != std::string::npos) {
      return " (etcd refused our client certificate: none given, or not signed by a CA etcd "
             "trusts; see cert= and key=)";
    }
  }
  return "";
}

}  // namespace

Result<std::shared_ptr<ssl::context>> MakeClientContext(const TlsFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return Status::InvalidArgument("etcd TLS: a client certificate needs both cert and key");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  if (files.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return Status::InvalidArgument("etcd TLS: the system's CA store: " + ec.message());
  } else {
    ctx->load_verify_file(files.ca_file, ec);
    if (ec) {
      return Status::InvalidArgument("etcd TLS: cannot load CA file '" + files.ca_file +
                                     "': " + LoadError(files.ca_file, ec));
    }
  }
  if (!files.cert_file.empty()) {
    ctx->use_certificate_chain_file(files.cert_file, ec);
    if (ec) {
      return Status::InvalidArgument("etcd TLS: cannot load client certificate '" +
                                     files.cert_file + "': " + LoadError(files.cert_file, ec));
    }
    ctx->use_private_key_file(files.key_file, ssl::context::pem, ec);
    if (ec) {
      return Status::InvalidArgument("etcd TLS: cannot load client key '" + files.key_file +
                                     "': " + LoadError(files.key_file, ec));
    }
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      ERR_clear_error();
      return Status::InvalidArgument("etcd TLS: client key '" + files.key_file +
                                     "' does not match certificate '" + files.cert_file + "'");
    }
  }
  return ctx;
}

Status PrepareConnection(SSL* ssl, const std::string& host) {
  boost::system::error_code not_ip;
  boost::asio::ip::make_address(host, not_ip);
  if (!not_ip) {
    // An IP address: no SNI (RFC 6066 allows names only); the certificate needs an IP SAN.
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      return Status::Internal("etcd TLS: cannot check IP address " + host);
    }
    return Status::Ok();
  }
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
    return Status::Internal("etcd TLS: cannot check host name " + host);
  }
  return Status::Ok();
}

std::string HandshakeError(const boost::system::error_code& ec, SSL* ssl) {
  std::string why = "TLS handshake failed: ";
  const long verify = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (verify != X509_V_OK) {
    return why + "certificate verify failed: " + X509_verify_cert_error_string(verify);
  }
  why += ec.message();
  if (ec.message().find("wrong version number") != std::string::npos) {
    why += " (does the endpoint serve plain http?)";
  }
  return why + AlertHint(ec);
}

std::string StreamError(const boost::system::error_code& ec) {
  if (ec.category() != boost::asio::error::get_ssl_category()) return ec.message();
  return "TLS: " + ec.message() + AlertHint(ec);
}

}  // namespace mrl::meta::etcd_tls
