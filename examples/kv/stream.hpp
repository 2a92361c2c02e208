// A client-protocol connection of tenure-kv: plain TCP, or mutual TLS over it (the server's
// client port, tenure-kv-cli, tenure-kv-bench, BlockingClient). TLS needs a build with
// TENURE_WITH_TLS (CMake: tenure::tls); without it asking for TLS throws.
#pragma once

#include <raft/asio/tls.hpp>

#include <boost/asio.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace tenure::kv {

/// The OpenSSL context for `files`, made once per set of files and shared (loading certificates
/// is slow, and a client may open many connections). Throws std::system_error (invalid_config,
/// naming the file) when a file cannot be used, std::runtime_error in a build without TLS.
#if defined(TENURE_WITH_TLS)
inline std::shared_ptr<::boost::asio::ssl::context> tls_context(const raft::asio::TlsFiles& files) {
  static std::mutex mutex;
  static std::map<std::tuple<std::string, std::string, std::string>,
                  std::shared_ptr<::boost::asio::ssl::context>>
      cache;
  std::lock_guard lock(mutex);
  auto& slot = cache[{files.certificate, files.private_key, files.ca}];
  if (!slot) {
    slot = std::make_shared<::boost::asio::ssl::context>(raft::asio::make_tls_context(files));
  }
  return slot;
}
#endif

/// One connection: a socket, and with TLS the TLS stream over it. Reads and writes go through
/// whichever applies; handshake() is the first operation after connect or accept, with TLS only.
class Stream {
 public:
  using tcp = ::boost::asio::ip::tcp;

  /// A stream over an accepted socket.
  explicit Stream(tcp::socket socket) : socket_(std::move(socket)) {}
  /// A stream to connect (socket().async_connect), its socket made in place.
  explicit Stream(::boost::asio::io_context& io) : socket_(io) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  tcp::socket& socket() noexcept { return socket_; }
  bool tls() const noexcept {
#if defined(TENURE_WITH_TLS)
    return tls_ != nullptr;
#else
    return false;
#endif
  }

  /// Puts TLS (with `files`) over the socket, for the next handshake. Throws as tls_context().
  void use_tls(const raft::asio::TlsFiles& files) {
#if defined(TENURE_WITH_TLS)
    context_ = tls_context(files);
    tls_ = std::make_unique<TlsStream>(socket_, *context_);
#else
    (void)files;
    throw std::runtime_error("TLS asked for, but this build has no TLS (TENURE_WITH_TLS)");
#endif
  }

  /// With TLS, the handshake as `server` or client; without, `handler(success)` at once (posted).
  template <class Handler>
  void async_handshake(bool server, Handler&& handler) {
#if defined(TENURE_WITH_TLS)
    if (tls_) {
      tls_->async_handshake(server ? ::boost::asio::ssl::stream_base::server
                                   : ::boost::asio::ssl::stream_base::client,
                            std::forward<Handler>(handler));
      return;
    }
#endif
    (void)server;
    ::boost::asio::post(socket_.get_executor(), [h = std::forward<Handler>(handler)]() mutable {
      h(::boost::system::error_code{});
    });
  }

  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
#if defined(TENURE_WITH_TLS)
    if (tls_) {
      ::boost::asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
      return;
    }
#endif
    ::boost::asio::async_write(socket_, buffers, std::forward<Handler>(handler));
  }

  template <class DynamicBuffer, class Handler>
  void async_read_until(DynamicBuffer&& buffer, char delimiter, Handler&& handler) {
#if defined(TENURE_WITH_TLS)
    if (tls_) {
      ::boost::asio::async_read_until(*tls_, std::forward<DynamicBuffer>(buffer), delimiter,
                                      std::forward<Handler>(handler));
      return;
    }
#endif
    ::boost::asio::async_read_until(socket_, std::forward<DynamicBuffer>(buffer), delimiter,
                                    std::forward<Handler>(handler));
  }

  /// Closes the socket (no TLS close_notify: the protocol's own framing ends every exchange). A
  /// closed stream is done: make a new one to connect again.
  void close() {
    ::boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  tcp::socket socket_;
#if defined(TENURE_WITH_TLS)
  using TlsStream = ::boost::asio::ssl::stream<tcp::socket&>;
  std::shared_ptr<::boost::asio::ssl::context> context_;
  std::unique_ptr<TlsStream> tls_;  // after socket_: destroyed first
#endif
};

}  // namespace tenure::kv
