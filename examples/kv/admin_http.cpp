// AdminHttpServer's implementation: the HTTP side, with Boost.Beast. See admin_http.hpp for the
// contract.
#include "admin_http.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>  // before Asio: Boost 1.74's Asio uses std::exchange without including it
#include <vector>

#include <boost/asio.hpp>
// GCC 12, optimising with the sanitizers on (the asan preset), reports -Wmaybe-uninitialized
// inside Beast's parser (an empty boost::optional<std::uint64_t> returned from
// content_length_unchecked), a false positive that -Werror would turn into a failed build of
// tenure-kv.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace tenure::kv {

namespace admin_http_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// After the answer that ends a connection, the server shuts down its sending side and reads
// (and drops) what the client still sends, until the client closes or this long has passed:
// closing a socket with unread input makes the kernel send a reset, which can destroy the
// answer before the client reads it (a 431 to a client still sending its 64 KiB header).
inline constexpr std::chrono::milliseconds kMaxLinger{1000};
// After a failed accept (out of file descriptors, mostly) the server waits this long before
// accepting again, rather than spinning on an error that the next attempt would repeat.
inline constexpr std::chrono::milliseconds kAcceptBackoff{50};
inline constexpr std::size_t kDrainChunk = 4096;

class Connection;

inline std::size_t saturating_sum(std::initializer_list<std::size_t> terms) {
  std::size_t sum = 0;
  for (const std::size_t term : terms) {
    sum = term > std::numeric_limits<std::size_t>::max() - sum
              ? std::numeric_limits<std::size_t>::max()
              : sum + term;
  }
  return sum;
}

// Shared by the AdminHttpServer and every connection, so that a handler still queued when the
// server object goes away finds its state alive. Everything here is touched only on `strand`,
// except what start() sets before the first handler exists.
struct State : std::enable_shared_from_this<State> {
  State(asio::io_context& io, AdminHttpOptions opts)
      : strand(asio::make_strand(io)), acceptor(strand), backoff(strand), options(opts) {}

  void accept();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket);
  void stop_now();

  asio::strand<asio::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  AdminHttpOptions options;
  std::map<std::string, AdminRoute, std::less<>> routes;
  // Open connections by id; a connection removes itself when it is destroyed.
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;
  std::uint64_t next_connection_id = 0;
  bool stopped = false;
};

// One client connection: reads a request, answers it, and either reads the next one (kept
// alive) or closes. Its pending handler owns it.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<State> state, std::uint64_t id, tcp::socket socket)
      : state_(std::move(state)), id_(id), stream_(std::move(socket)) {}

  ~Connection() { state_->connections.erase(id_); }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() { read_request(); }

  // Hard close, for stop(): pending operations end with operation_aborted.
  void close() { stream_.close(); }

 private:
  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;

  template <typename F>
  auto on_strand(F&& f) {
    return asio::bind_executor(state_->strand, std::forward<F>(f));
  }

  void read_request() {
    // A parser reads one message; each request gets a fresh one, with the limits set anew.
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        state_->options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(state_->options.max_body_bytes);
    // One deadline for the whole request, not one per read: a client trickling bytes cannot
    // push it back.
    stream_.expires_after(state_->options.request_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     on_strand([self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     }));
  }

  void on_read(beast::error_code ec) {
    if (state_->stopped) {
      return;
    }
    if (!ec) {
      answer(parser_->get());
      return;
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == beast::error::timeout) {
      // The client closed (between requests or within one: there is no one to answer), or
      // did not send its request in time (the stream closed the socket already).
      stream_.close();
      return;
    }
    if (ec == http::error::header_limit) {
      answer_error(http::status::request_header_fields_too_large, "request header too large");
      return;
    }
    if (ec == http::error::body_limit) {
      answer_error(http::status::payload_too_large, "request body too large");
      return;
    }
    if (ec == http::error::buffer_overflow) {
      // The read buffer is capped just above the two limits, so it can overflow only on input
      // the parser holds back without counting it against them (a chunk header line, say).
      answer_error(parser_->is_header_done() ? http::status::payload_too_large
                                             : http::status::request_header_fields_too_large,
                   "request too large");
      return;
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
      // Every other Beast HTTP error is the request's syntax.
      answer_error(http::status::bad_request, "malformed request");
      return;
    }
    // The network's errors (reset, aborted): nothing can be answered.
    stream_.close();
  }

  void answer(const Request& req) {
    const bool head = req.method() == http::verb::head;
    if (!head && req.method() != http::verb::get) {
      Response res{http::status::method_not_allowed, req.version()};
      res.set(http::field::allow, "GET, HEAD");
      set_body(res, "text/plain; charset=utf-8", "method not allowed\n", false);
      send(std::move(res), req.keep_alive(), false);
      return;
    }
    const beast::string_view raw_target = req.target();
    std::string_view target(raw_target.data(), raw_target.size());
    if (target.empty() || target.front() != '/') {
      // Only origin-form ("/path?query"): an absolute URI or "*" names nothing served here.
      answer_error(http::status::bad_request, "bad request target");
      return;
    }
    target = target.substr(0, target.find('?'));
    const auto route = state_->routes.find(target);
    if (route == state_->routes.end()) {
      Response res{http::status::not_found, req.version()};
      set_body(res, "text/plain; charset=utf-8", "not found\n", head);
      send(std::move(res), req.keep_alive(), false);
      return;
    }
    Response res{http::status::ok, req.version()};
    try {
      AdminReply reply = route->second();
      check_reply(reply);
      res.result(reply.status);
      set_body(res,
               reply.content_type.empty() ? std::string_view{"text/plain; charset=utf-8"}
                                          : std::string_view{reply.content_type},
               std::move(reply.body), head);
    } catch (const std::exception& e) {
      res = Response{http::status::internal_server_error, req.version()};
      set_body(res, "text/plain; charset=utf-8", std::string(e.what()) + "\n", head);
    } catch (...) {
      res = Response{http::status::internal_server_error, req.version()};
      set_body(res, "text/plain; charset=utf-8", "unknown exception\n", head);
    }
    // A well-formed request was read whole, whatever its answer: the connection stays usable.
    send(std::move(res), req.keep_alive(), false);
  }

  // The answer to a request that could not be read whole or trusted: whatever follows it on
  // the connection cannot be parsed, so the connection closes after it.
  void answer_error(http::status status, std::string_view what) {
    Response res{status, 11};
    set_body(res, "text/plain; charset=utf-8", std::string(what) + "\n", false);
    send(std::move(res), false, true);
  }

  // A route is trusted code, but a mistake of its own must not become a malformed answer (or
  // one carrying a header the route did not mean to set).
  static void check_reply(const AdminReply& reply) {
    // 1xx is never a final answer: a client would wait for another.
    if (reply.status < 200 || reply.status > 599) {
      throw std::invalid_argument("route answered status " + std::to_string(reply.status) +
                                  ", not 200..599");
    }
    for (const char c : reply.content_type) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        throw std::invalid_argument("route's content type has a control character");
      }
    }
  }

  static void set_body(Response& res, std::string_view content_type, std::string body, bool head) {
    // beast::string_view: boost::string_view in Boost 1.74, which std::string_view does not
    // convert to.
    res.set(http::field::content_type,
            beast::string_view(content_type.data(), content_type.size()));
    res.set(http::field::cache_control, "no-store");
    // HEAD: the length GET would have, and no body.
    res.content_length(body.size());
    if (!head) {
      res.body() = std::move(body);
    }
  }

  void send(Response res, bool keep_alive, bool bad_request) {
    res.keep_alive(keep_alive && !bad_request);
    response_ = std::move(res);
    // The answer is bounded in time too: a client that does not read it is cut off.
    stream_.expires_after(state_->options.request_timeout);
    http::async_write(stream_, response_,
                      on_strand([self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->on_write(ec);
                      }));
  }

  void on_write(beast::error_code ec) {
    if (state_->stopped) {
      return;
    }
    if (ec) {
      stream_.close();
      return;
    }
    if (response_.keep_alive()) {
      response_ = {};
      read_request();
      return;
    }
    linger();
  }

  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::min(state_->options.request_timeout, kMaxLinger));
    drain();
  }

  void drain() {
    stream_.async_read_some(
        asio::buffer(drain_buffer_),
        on_strand([self = shared_from_this()](beast::error_code ec, std::size_t) {
          if (ec || self->state_->stopped) {
            self->stream_.close();  // the client's close, or the linger deadline
            return;
          }
          self->drain();
        }));
  }

  std::shared_ptr<State> state_;
  std::uint64_t id_;
  beast::tcp_stream stream_;
  // Capped just above what the parser may hold of one request, so no input grows it further.
  beast::flat_buffer buffer_{saturating_sum(
      {state_->options.max_header_bytes, state_->options.max_body_bytes, kDrainChunk})};
  std::optional<http::request_parser<http::string_body>> parser_;
  Response response_;
  std::array<char, kDrainChunk> drain_buffer_{};
};

void State::accept() {
  acceptor.async_accept(asio::bind_executor(
      strand, [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
        self->on_accept(ec, std::move(socket));
      }));
}

void State::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (stopped) {
    return;
  }
  if (ec) {
    backoff.expires_after(kAcceptBackoff);
    backoff.async_wait(asio::bind_executor(
        strand, [self = shared_from_this()](const boost::system::error_code& wait_ec) {
          if (!wait_ec && !self->stopped) {
            self->accept();
          }
        }));
    return;
  }
  if (connections.size() >= options.max_connections) {
    boost::system::error_code ignored;
    socket.close(ignored);
  } else {
    const std::uint64_t id = next_connection_id++;
    auto connection = std::make_shared<Connection>(shared_from_this(), id, std::move(socket));
    connections.emplace(id, connection);
    connection->start();
  }
  accept();
}

void State::stop_now() {
  if (stopped) {
    return;
  }
  stopped = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  backoff.cancel();
  // Held until every one is closed: a connection destroyed inside the loop would erase itself
  // from the map being walked.
  std::vector<std::shared_ptr<Connection>> open;
  open.reserve(connections.size());
  for (auto& [id, weak] : connections) {
    if (auto connection = weak.lock()) {
      open.push_back(std::move(connection));
    }
  }
  for (auto& connection : open) {
    connection->close();
  }
}

}  // namespace admin_http_detail

AdminHttpServer::AdminHttpServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint where,
                                 AdminHttpOptions options)
    : where_(std::move(where)), state_(std::make_shared<admin_http_detail::State>(io, options)) {}

AdminHttpServer::~AdminHttpServer() {
  stop();
}

void AdminHttpServer::add_route(std::string path, AdminRoute route) {
  if (started_) {
    throw std::logic_error("AdminHttpServer::add_route after start()");
  }
  state_->routes.insert_or_assign(std::move(path), std::move(route));
}

void AdminHttpServer::start() {
  if (started_) {
    throw std::logic_error("AdminHttpServer::start called twice");
  }
  auto& acceptor = state_->acceptor;
  boost::system::error_code ec;
  const auto fail = [&](const char* step) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    const std::string host = where_.address().is_v6() ? "[" + where_.address().to_string() + "]"
                                                      : where_.address().to_string();
    throw std::system_error(ec, std::string("admin HTTP server: cannot ") + step + " " + host +
                                    ":" + std::to_string(where_.port()));
  };
  if (acceptor.open(where_.protocol(), ec)) {
    fail("open a socket for");
  }
  // A restarted node must get its port back while the old connections sit in TIME_WAIT.
  if (acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec)) {
    fail("set SO_REUSEADDR on");
  }
  if (acceptor.bind(where_, ec)) {
    fail("bind");
  }
  if (acceptor.listen(boost::asio::socket_base::max_listen_connections, ec)) {
    fail("listen on");
  }
  local_ = acceptor.local_endpoint(ec);
  if (ec) {
    fail("read the local address of");
  }
  started_ = true;
  // The first accept starts on the strand, so it can never overlap a stop() posted there.
  boost::asio::post(state_->strand, [state = state_] {
    if (!state->stopped) {
      state->accept();
    }
  });
}

void AdminHttpServer::stop() {
  boost::asio::post(state_->strand, [state = state_] { state->stop_now(); });
}

}  // namespace tenure::kv
