// The PEM files of a TLS connection to etcd (meta/etcd_tls.h makes the context from them). A
// header of its own so that the etcd client's interface does not pull in Boost.Asio's SSL.
#pragma once

#include <string>

namespace mrl::meta::etcd_tls {

struct TlsFiles {
  std::string ca_file;    // PEM CA certificate(s) the server's must chain to ("": the system's)
  std::string cert_file;  // PEM client certificate for etcd's --client-cert-auth ("": none)
  std::string key_file;   // its PEM private key (REQUIRES: given exactly when cert_file is)
};

}  // namespace mrl::meta::etcd_tls
