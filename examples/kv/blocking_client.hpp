// A small blocking client of tenure-kv with a deadline on every call: one request in flight on
// one connection. For the demo and the integration tests (the benchmark pipelines instead).
#pragma once

#include "protocol.hpp"

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>

#include <chrono>
#include <cstdint>
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

/// One connection to one server. Not thread-safe: one thread per client.
class BlockingClient {
 public:
  explicit BlockingClient(std::string address) : address_(std::move(address)), socket_(io_) {}

  const std::string& address() const noexcept { return address_; }

  /// Points the client at another server (closing the connection).
  void reconnect_to(std::string address) {
    close();
    address_ = std::move(address);
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
  }

  /// Sends `request` and waits for its response, at most `timeout` in all (connecting included).
  CallResult call(const Request& request, std::chrono::milliseconds timeout) {
    CallResult out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!socket_.is_open() && !connect(deadline, out)) {
      return out;
    }
    std::string line;
    format_request(request, line);
    bool done = false;
    boost::system::error_code error;
    ::boost::asio::async_write(socket_, ::boost::asio::buffer(line),
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
      ::boost::asio::async_read_until(socket_, ::boost::asio::dynamic_buffer(buffer_), '\n',
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
    const auto port = split->port;
    bool done = false;
    boost::system::error_code error;
    socket_.async_connect({ip, static_cast<unsigned short>(port)},
                          [&](const boost::system::error_code& e) {
                            error = e;
                            done = true;
                          });
    if (!run_until(done, deadline) || error) {
      out.transport_error = error ? error.message() : "timed out connecting";
      close();
      return false;
    }
    socket_.set_option(::boost::asio::ip::tcp::no_delay(true), ec);
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
      socket_.cancel(ignored);
      io_.restart();
      while (!done) {
        io_.run_one();
      }
      return false;
    }
    return true;
  }

  std::string address_;
  ::boost::asio::io_context io_;
  ::boost::asio::ip::tcp::socket socket_;
  std::string buffer_;
};

}  // namespace tenure::kv
