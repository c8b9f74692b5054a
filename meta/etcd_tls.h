// TLS towards etcd (OpenSSL through Boost.Asio), for meta/etcd_http: the client context made
// from PEM files, the per-connection checks (the server's certificate must chain to the CA and
// name the host or IP address dialled), and what a failed handshake means in words.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <string>

#include "common/status.h"
#include "meta/etcd_tls_files.h"

namespace mrl::meta::etcd_tls {

// A client context: TLS 1.2 or newer, the server's certificate verified, the CA and the client
// certificate loaded now. InvalidArgument naming the file that does not load (or a key that does
// not match its certificate).
Result<std::shared_ptr<boost::asio::ssl::context>> MakeClientContext(const TlsFiles& files);

// Prepares the SSL object of a new connection to `host`: SNI when host is a name, and the name
// (DNS SAN) or IP address (IP SAN) the server's certificate must carry. Internal on failure.
Status PrepareConnection(SSL* ssl, const std::string& host);

// "TLS handshake failed: certificate verify failed: unable to get local issuer certificate",
// from the handshake's error and the connection's verify result.
std::string HandshakeError(const boost::system::error_code& ec, SSL* ssl);

// An error of an established connection in words: with TLS 1.3 the server refuses our client
// certificate (or its absence) only after the handshake, with an alert at the first read.
std::string StreamError(const boost::system::error_code& ec);

}  // namespace mrl::meta::etcd_tls
