// TLS for the Asio runtime: the files a node or client presents, the OpenSSL context made from
// them, and the identity a peer's certificate names. Optional: define TENURE_WITH_TLS and link
// OpenSSL (CMake: the tenure::tls target does both) to use it; without the macro only TlsFiles
// and the names exist, and asking for TLS is refused at run time with errc::invalid_config.
#pragma once

#include <optional>
#include <string>
#include <system_error>

#include <raft/errc.hpp>
#include <raft/types.hpp>

#if defined(TENURE_WITH_TLS)
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/ssl.hpp>
#endif

namespace tenure::raft::asio {

/// Whether this build has TLS (TENURE_WITH_TLS).
#if defined(TENURE_WITH_TLS)
inline constexpr bool kHasTls = true;
#else
inline constexpr bool kHasTls = false;
#endif

/// PEM files: the certificate chain and private key this side presents, and the CA every peer's
/// certificate must chain to. With mutual TLS both sides present one and verify the other's.
struct TlsFiles {
  std::string certificate;
  std::string private_key;
  std::string ca;
};

/// The certificate subject common name (CN) that identifies node `id`: "node-<id>". A peer's
/// certificate must name exactly the node its hello claims.
inline std::string tls_node_name(NodeId id) {
  return "node-" + std::to_string(id);
}

#if defined(TENURE_WITH_TLS)

/// An OpenSSL context for mutual TLS 1.2 or later: presents `files.certificate` (with
/// `files.private_key`), trusts `files.ca` only, and requires the other side's certificate.
/// Throws std::system_error with errc::invalid_config and a message naming the file that could
/// not be used.
inline ::boost::asio::ssl::context make_tls_context(const TlsFiles& files) {
  namespace ssl = ::boost::asio::ssl;
  ssl::context ctx(ssl::context::tls);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  const auto use = [](const std::string& what, const std::string& file, auto&& load) {
    ::boost::system::error_code ec;
    load(ec);
    if (ec) {
      throw std::system_error(make_error_code(errc::invalid_config),
                              "TLS " + what + " '" + file + "': " + ec.message());
    }
  };
  use("certificate", files.certificate,
      [&](auto& ec) { ctx.use_certificate_chain_file(files.certificate, ec); });
  use("private key", files.private_key,
      [&](auto& ec) { ctx.use_private_key_file(files.private_key, ssl::context::pem, ec); });
  use("CA", files.ca, [&](auto& ec) { ctx.load_verify_file(files.ca, ec); });
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

/// The subject common name of the certificate the other side presented (verified against the CA
/// during the handshake), or nullopt when there is none.
inline std::optional<std::string> tls_peer_name(SSL* ssl) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509* cert = SSL_get1_peer_certificate(ssl);
#else
  X509* cert = SSL_get_peer_certificate(ssl);
#endif
  if (cert == nullptr) {
    return std::nullopt;
  }
  std::optional<std::string> name;
  char buffer[256];
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer,
                                          static_cast<int>(sizeof buffer));
  if (n > 0 && static_cast<std::size_t>(n) < sizeof buffer) {
    name.emplace(buffer, static_cast<std::size_t>(n));
  }
  X509_free(cert);
  return name;
}

#endif

}  // namespace tenure::raft::asio
