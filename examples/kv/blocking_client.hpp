// A small blocking client of tenure-kv with a deadline on every call: one request in flight on
// one connection. For the demo and the integration tests (the benchmark pipelines instead).
#pragma once

#include "protocol.hpp"
#include "stream.hpp"

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tenure::kv {

/// What a call returned: the parsed response (its views point into this object's `line`), or
/// no response at all (`transport_error` says why: refused, closed, timed out).
struct CallResult {
  std::string line;
  std::optional<Response> response;
  std::string transport_error;

  bool ok() const noexcept { return response.has_value() && response->kind != ResponseKind::error; }
};

/// One connection to one server. Not thread-safe: one thread per client. With TLS files it
/// speaks mutual TLS (a build with TENURE_WITH_TLS).
class BlockingClient {
 public:
  explicit BlockingClient(std::string address,
                          std::optional<raft::asio::TlsFiles> tls = std::nullopt)
      : address_(std::move(address)), tls_(std::move(tls)) {}

  const std::string& address() const noexcept { return address_; }

  /// Points the client at another server (closing the connection).
  void reconnect_to(std::string address) {
    close();
    address_ = std::move(address);
  }

  void close() {
    if (stream_) {
      stream_->close();
      stream_.reset();
    }
    buffer_.clear();
  }

  /// Sends `request` and waits for its response, at most `timeout` in all (connecting included).
  CallResult call(const Request& request, std::chrono::milliseconds timeout) {
    CallResult out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!stream_ && !connect(deadline, out)) {
      return out;
    }
    std::string line;
    format_request(request, line);
    bool done = false;
    boost::system::error_code error;
    stream_->async_write(::boost::asio::buffer(line),
                         [&](const boost::system::error_code& ec, std::size_t) {
                           error = ec;
                           done = true;
                         });
    if (!run_until(done, deadline) || error) {
      out.transport_error = error ? error.message() : "timed out writing";
      close();
      return out;
    }
    for (;;) {
      done = false;
      std::size_t n = 0;
      stream_->async_read_until(::boost::asio::dynamic_buffer(buffer_), '\n',
                                [&](const boost::system::error_code& ec, std::size_t len) {
                                  error = ec;
                                  n = len;
                                  done = true;
                                });
      if (!run_until(done, deadline) || error) {
        out.transport_error = error ? error.message() : "timed out waiting for the response";
        close();
        return out;
      }
      out.line.assign(buffer_.data(), n - 1);
      buffer_.erase(0, n);
      auto parsed = parse_response(out.line);
      if (!parsed) {
        out.transport_error = std::string("unparsable response: ") + parsed.error().reason;
        close();
        return out;
      }
      if (parsed->id != request.id) {
        continue;  // a late answer to an earlier call that timed out
      }
      out.response = *parsed;
      return out;
    }
  }

 private:
  bool connect(std::chrono::steady_clock::time_point deadline, CallResult& out) {
    const auto split = split_address(address_);
    boost::system::error_code ec;
    const auto ip =
        split ? ::boost::asio::ip::make_address(split->host, ec) : ::boost::asio::ip::address();
    if (!split || ec) {
      out.transport_error = "bad address " + address_;
      return false;
    }
    stream_ = std::make_unique<Stream>(io_);
    const auto port = split->port;
    bool done = false;
    boost::system::error_code error;
    stream_->socket().async_connect({ip, static_cast<unsigned short>(port)},
                                    [&](const boost::system::error_code& e) {
                                      error = e;
                                      done = true;
                                    });
    if (!run_until(done, deadline) || error) {
      out.transport_error = error ? error.message() : "timed out connecting";
      close();
      return false;
    }
    stream_->socket().set_option(::boost::asio::ip::tcp::no_delay(true), ec);
    if (tls_) {
      stream_->use_tls(*tls_);
      done = false;
      stream_->async_handshake(false, [&](const boost::system::error_code& e) {
        error = e;
        done = true;
      });
      if (!run_until(done, deadline) || error) {
        out.transport_error =
            "TLS handshake: " + (error ? error.message() : std::string("timed out"));
        close();
        return false;
      }
    }
    return true;
  }

  // Runs the io_context until `done` or the deadline; on the deadline cancels what is pending
  // and lets its handler run, so nothing refers to this frame afterwards.
  bool run_until(bool& done, std::chrono::steady_clock::time_point deadline) {
    io_.restart();
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io_.run_one_until(deadline);
    }
    if (!done) {
      boost::system::error_code ignored;
      stream_->socket().cancel(ignored);
      io_.restart();
      while (!done) {
        io_.run_one();
      }
      return false;
    }
    return true;
  }

  std::string address_;
  std::optional<raft::asio::TlsFiles> tls_;
  ::boost::asio::io_context io_;
  std::unique_ptr<Stream> stream_;  // connected, or null
  std::string buffer_;
};

}  // namespace tenure::kv
