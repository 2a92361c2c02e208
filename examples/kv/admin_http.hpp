// AdminHttpServer: the small HTTP/1.1 server behind tenure-kv's --admin-port, which serves
// /metrics (Prometheus text format) and /status (JSON). The bodies come from the caller's routes;
// this file only speaks HTTP, with Boost.Beast, and only GET and HEAD of exact paths.
//
// The port is meant for operators and scrapers, but anything that can reach it can talk to it,
// so it is hardened first and featureful never: every request is bounded in header bytes, body
// bytes and time (a client that trickles a request - slowloris - is cut off at the deadline, not
// at an idle gap), the number of connections is capped, and every way a request can be wrong
// ends in a deliberate answer (400, 404, 405, 413, 431, 500) or a plain close. A bad or hostile
// client costs one connection slot for a bounded time (a request timeout to send its request,
// another to take the answer, at most a second of lingering close); it never stops the server
// from serving the next client.
//
// Everything runs on the caller's io_context, on one strand: connections, timers and the routes
// themselves, so the io_context may be run by any number of threads.
//
// The implementation (admin_http.cpp) is compiled once, on its own: Beast's templates cost more
// to compile than the rest of tenure-kv's server, so this header names none of them.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>  // before Asio: Boost 1.74's Asio uses std::exchange without including it

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace tenure::kv {

/// What a route answers. `status` and `body` go out as they are; an empty `content_type` means
/// `text/plain; charset=utf-8`. The server adds Content-Length and `Cache-Control: no-store`
/// (what an admin endpoint reports is stale at once; no proxy should keep it).
struct AdminReply {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

/// Produces the reply to a GET or HEAD of the path it is registered under. Called on a thread
/// that runs the server's io_context, on the server's strand: never two at once, and never
/// concurrently with the server itself. It blocks that thread while it runs, so it should only
/// read what is at hand (counters, a status snapshot), not wait. An exception it throws becomes a
/// 500 answer whose body is the exception's what(); the server goes on.
using AdminRoute = std::function<AdminReply()>;

/// The limits of an AdminHttpServer. Each bounds what one client can make the server hold or
/// wait for; the defaults suit a scraper and a curl on a trusted network.
struct AdminHttpOptions {
  /// The request line and header fields together; past it: 431 and the connection closes.
  /// (Beast counts it in 32 bits; a larger value is clamped.)
  std::size_t max_header_bytes = 8 * 1024;
  /// A request body. GET and HEAD carry none, but a small one is read and ignored (some clients
  /// send an empty one); past it: 413 and the connection closes, the body left unread.
  std::size_t max_body_bytes = 1024;
  /// How long a client has to send one whole request, counted from the moment the server waits
  /// for it (so it is also the idle limit of a kept-alive connection), and then to take the
  /// answer. Past it the connection is closed without an answer: a slowloris client that
  /// trickles a byte at a time holds its slot for no longer than this.
  std::chrono::milliseconds request_timeout{5000};
  /// Open connections at most. A connection accepted past it is closed at once, unanswered:
  /// answering would cost the very resources the cap protects.
  std::size_t max_connections = 32;
};

namespace admin_http_detail {
struct State;
}  // namespace admin_http_detail

/// An HTTP/1.1 server of a few fixed GET/HEAD routes, for operators and scrapers.
///
/// Answers: GET or HEAD of a registered path (the query string is ignored) -> the route's reply
/// (HEAD: its headers and Content-Length, without the body); another path -> 404; another method
/// -> 405 with `Allow: GET, HEAD`; a request that does not parse -> 400, a header past
/// max_header_bytes -> 431, a body past max_body_bytes -> 413, each followed by closing the
/// connection (what follows such a request on the wire cannot be trusted); a route that throws
/// -> 500 with the exception's text. Connections are kept alive as HTTP/1.1 says (HTTP/1.0 and
/// `Connection: close` are honoured). Every answer has Content-Length and
/// `Cache-Control: no-store`.
///
/// Threads: add_route() then start(), from one thread; after start() has returned, stop() and
/// local_endpoint() from any thread. Everything else runs on the io_context, on one strand of
/// it, so any number of threads may run the io_context. A stopped server does not start again.
///
/// Allocates per connection: the connection object, its read buffer (at most max_header_bytes +
/// max_body_bytes + 4 KiB) and the request and answer being handled.
///
/// The object may be destroyed while the io_context still runs: destruction stops the server,
/// and its state lives on until the last handler that refers to it has run. It must not outlive
/// the io_context.
class AdminHttpServer {
 public:
  /// Serves on `where` once started (port 0: a port the system picks; see local_endpoint()).
  AdminHttpServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint where,
                  AdminHttpOptions options = {});

  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  ~AdminHttpServer();

  /// Serves `route` at exactly `path` (e.g. "/metrics"), replacing an earlier route there.
  /// Throws std::logic_error after start(): the routes are read on the strand without a lock.
  void add_route(std::string path, AdminRoute route);

  /// Binds, listens and starts accepting. Throws std::system_error naming the address when the
  /// address cannot be bound or listened on (in use, not local, no permission), and
  /// std::logic_error when called twice.
  void start();

  /// Closes the listening socket and every open connection, at once (a request being answered
  /// is cut off). Idempotent; callable from any thread once start() has returned (or instead of
  /// start(), which must then not be called). Returns without waiting: the work is posted to
  /// the strand, and once it has run the server holds no pending operation, so a run() of an
  /// io_context with nothing else to do returns.
  void stop();

  /// The address the server listens on (with the real port when bound to port 0); meaningful
  /// after start(), unchanged by stop().
  boost::asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  boost::asio::ip::tcp::endpoint where_;
  boost::asio::ip::tcp::endpoint local_;
  std::shared_ptr<admin_http_detail::State> state_;
  bool started_ = false;
};

}  // namespace tenure::kv
