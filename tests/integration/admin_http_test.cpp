// AdminHttpServer (examples/kv/admin_http.hpp) on 127.0.0.1, driven over raw TCP: each test
// writes the bytes of a request itself, so it can send what no HTTP client library would
// (garbage, a 64 KiB header, half a request), and parses the answer with its own small reader,
// so the server's Beast is not checked against Beast. Every read and write has a deadline: a
// server that wrongly keeps a connection open fails a test instead of hanging it.
#include <kv/admin_http.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

#include <poll.h>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using tenure::kv::AdminHttpOptions;
using tenure::kv::AdminHttpServer;
using tenure::kv::AdminReply;

// Every wait of these tests ends by then, pass or fail.
constexpr auto kPatience = 5s;

constexpr std::string_view kMetricsType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kMetricsBody = "tenure_up 1\ntenure_term 7\n";
constexpr std::string_view kStatusBody = R"({"node":1,"role":"leader"})";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct HttpAnswer {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;

  std::string header(std::string_view name) const {
    const auto it = headers.find(lower(name));
    return it == headers.end() ? std::string{} : it->second;
  }
  bool has_header(std::string_view name) const { return headers.count(lower(name)) != 0; }
};

// One TCP connection, non-blocking underneath so that every read and write can wait with
// poll() up to a deadline. Bytes read past one answer stay buffered for the next.
class RawClient {
 public:
  bool connect(const tcp::endpoint& to) {
    boost::system::error_code ec;
    socket_.connect(to, ec);
    if (ec) {
      return false;
    }
    socket_.non_blocking(true, ec);
    return !ec;
  }

  RawClient() = default;
  explicit RawClient(const tcp::endpoint& to) {
    if (!connect(to)) {
      throw std::runtime_error("cannot connect to " + to.address().to_string() + ":" +
                               std::to_string(to.port()));
    }
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  // True when every byte went out before the deadline.
  bool send(std::string_view bytes, Clock::time_point deadline = Clock::now() + kPatience) {
    while (!bytes.empty()) {
      boost::system::error_code ec;
      const std::size_t n = socket_.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (!wait_for(POLLOUT, deadline)) {
          return false;
        }
        continue;
      }
      if (ec) {
        return false;
      }
      bytes.remove_prefix(n);
    }
    return true;
  }

  // One answer; for a HEAD (`head`) no body is read, whatever Content-Length says. Nothing when
  // the connection closed or the deadline passed first, or the answer does not parse.
  std::optional<HttpAnswer> read_answer(bool head = false,
                                        Clock::time_point deadline = Clock::now() + kPatience) {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (read_more(deadline) != Read::data) {
        return std::nullopt;
      }
    }
    HttpAnswer answer;
    const std::string head_text = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    std::size_t line_end = head_text.find("\r\n");
    const std::string status_line = head_text.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ') {
      return std::nullopt;
    }
    answer.status = static_cast<unsigned>(std::stoul(status_line.substr(9, 3)));
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head_text.find("\r\n", start);
      const std::string line = head_text.substr(start, line_end - start);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) {
        return std::nullopt;
      }
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      answer.headers[lower(line.substr(0, colon))] = value;
    }
    if (head || !answer.has_header("Content-Length")) {
      return answer;
    }
    const std::size_t length = std::stoul(answer.header("Content-Length"));
    while (buffer_.size() < length) {
      if (read_more(deadline) != Read::data) {
        return std::nullopt;
      }
    }
    answer.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return answer;
  }

  // True when the server closed the connection (end of stream or reset) before the deadline;
  // bytes that arrive first are dropped.
  bool closed_by_server(Clock::time_point deadline = Clock::now() + kPatience) {
    for (;;) {
      switch (read_more(deadline)) {
        case Read::data:
          buffer_.clear();
          break;
        case Read::closed:
          return true;
        case Read::timed_out:
          return false;
      }
    }
  }

  // The connection ended with the server's FIN (a close of its own), not a reset.
  bool saw_eof() const { return eof_; }

  // Waits up to `wait` for the server to close the connection; false when it is still open.
  bool closes_within(std::chrono::milliseconds wait) {
    return closed_by_server(Clock::now() + wait);
  }

 private:
  enum class Read { data, closed, timed_out };

  bool wait_for(short events, Clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return false;
      }
      pollfd p{socket_.native_handle(), events, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      if (ready > 0) {
        return true;
      }
    }
  }

  Read read_more(Clock::time_point deadline) {
    char chunk[4096];
    for (;;) {
      boost::system::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (!wait_for(POLLIN, deadline)) {
          return Read::timed_out;
        }
        continue;
      }
      if (ec) {
        eof_ = ec == asio::error::eof;
        return Read::closed;  // end of stream, or reset
      }
      buffer_.append(chunk, n);
      return Read::data;
    }
  }

  asio::io_context io_;
  tcp::socket socket_{io_};
  std::string buffer_;
  bool eof_ = false;
};

std::string get(std::string_view path, std::string_view extra_headers = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
         "\r\n";
}

AdminHttpOptions options_with_timeout(std::chrono::milliseconds timeout) {
  AdminHttpOptions options;
  options.request_timeout = timeout;
  return options;
}

// A server on 127.0.0.1, an ephemeral port, with three routes, its io_context run by
// `threads` threads. Its destructor stops the server and checks that every thread's run()
// returns (the server held nothing pending after stop()).
class TestServer {
 public:
  explicit TestServer(AdminHttpOptions options = {}, int threads = 1)
      : server_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), options) {
    server_.add_route("/metrics", [this] {
      count_call();
      return AdminReply{200, std::string(kMetricsType), std::string(kMetricsBody)};
    });
    server_.add_route("/status", [this] {
      count_call();
      return AdminReply{200, "application/json", std::string(kStatusBody)};
    });
    server_.add_route("/boom", []() -> AdminReply { throw std::runtime_error("route exploded"); });
    server_.add_route("/bad-status", [] { return AdminReply{1000, {}, "?"}; });
    server_.start();
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        io_.run();
        ++finished_;
      });
    }
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  ~TestServer() {
    server_.stop();
    const bool ran_out = wait_until([&] { return finished_ == static_cast<int>(threads_.size()); });
    CHECK_MESSAGE(ran_out, "the io_context still had work after stop()");
    io_.stop();  // only so that a failed test still ends
    for (auto& t : threads_) {
      t.join();
    }
  }

  AdminHttpServer& server() { return server_; }
  tcp::endpoint endpoint() const { return server_.local_endpoint(); }
  int finished_threads() const { return finished_; }
  int route_calls() const { return calls_; }
  bool routes_overlapped() const { return overlapped_; }

  // A fresh connection gets a GET of /metrics answered: the server still serves.
  bool serves() {
    RawClient client(endpoint());
    if (!client.send(get("/metrics"))) {
      return false;
    }
    const auto answer = client.read_answer();
    return answer && answer->status == 200 && answer->body == kMetricsBody;
  }

  static bool wait_until(const std::function<bool()>& done) {
    const auto deadline = Clock::now() + kPatience;
    while (!done()) {
      if (Clock::now() > deadline) {
        return false;
      }
      std::this_thread::yield();
    }
    return true;
  }

 private:
  // The routes run on the strand: never two at once, whichever threads run the io_context.
  void count_call() {
    if (inside_.fetch_add(1) != 0) {
      overlapped_ = true;
    }
    ++calls_;
    inside_.fetch_sub(1);
  }

  asio::io_context io_;
  AdminHttpServer server_;
  std::vector<std::thread> threads_;
  std::atomic<int> finished_{0};
  std::atomic<int> calls_{0};
  std::atomic<int> inside_{0};
  std::atomic<bool> overlapped_{false};
};

}  // namespace

TEST_CASE("admin http: GET of a route answers 200 with its body and type and length") {
  TestServer server;
  RawClient client(server.endpoint());

  REQUIRE(client.send(get("/metrics")));
  auto answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(answer->body == kMetricsBody);
  CHECK(answer->header("Content-Type") == kMetricsType);
  CHECK(answer->header("Content-Length") == std::to_string(kMetricsBody.size()));
  CHECK(answer->header("Cache-Control") == "no-store");

  // The query string plays no part in routing.
  REQUIRE(client.send(get("/status?pretty=1&x=%2F")));
  answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(answer->body == kStatusBody);
  CHECK(answer->header("Content-Type") == "application/json");
  CHECK(answer->header("Content-Length") == std::to_string(kStatusBody.size()));
  CHECK(server.route_calls() == 2);
}

TEST_CASE("admin http: HEAD answers the headers of GET without the body") {
  TestServer server;
  RawClient client(server.endpoint());

  REQUIRE(client.send("HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n"));
  auto answer = client.read_answer(/*head=*/true);
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(answer->header("Content-Type") == kMetricsType);
  CHECK(answer->header("Content-Length") == std::to_string(kMetricsBody.size()));
  CHECK(answer->header("Cache-Control") == "no-store");

  // Had a body followed the HEAD answer, it would be read here in place of the next status line.
  REQUIRE(client.send(get("/status")));
  answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(answer->body == kStatusBody);
}

TEST_CASE("admin http: keep-alive serves several requests on one connection") {
  TestServer server;
  RawClient client(server.endpoint());

  // One after the other...
  for (int i = 0; i < 2; ++i) {
    REQUIRE(client.send(get("/metrics")));
    const auto answer = client.read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 200);
    CHECK(answer->body == kMetricsBody);
    CHECK(lower(answer->header("Connection")) != "close");
  }
  // ...and pipelined, sent in one write.
  REQUIRE(client.send(get("/status") + get("/metrics")));
  auto first = client.read_answer();
  auto second = client.read_answer();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->body == kStatusBody);
  CHECK(second->body == kMetricsBody);
  CHECK(server.route_calls() == 4);

  // A client that asks for the connection to end gets its answer, then the end.
  REQUIRE(client.send(get("/metrics", "Connection: close\r\n")));
  const auto last = client.read_answer();
  REQUIRE(last);
  CHECK(last->status == 200);
  CHECK(lower(last->header("Connection")) == "close");
  CHECK(client.closed_by_server());

  // HTTP/1.0 without keep-alive: one request per connection.
  RawClient old(server.endpoint());
  REQUIRE(old.send("GET /metrics HTTP/1.0\r\n\r\n"));
  const auto old_answer = old.read_answer();
  REQUIRE(old_answer);
  CHECK(old_answer->status == 200);
  CHECK(old_answer->body == kMetricsBody);
  CHECK(old.closed_by_server());
}

TEST_CASE("admin http: an unknown path answers 404 and the connection stays usable") {
  TestServer server;
  RawClient client(server.endpoint());

  for (const char* path : {"/", "/metricsx", "/metrics/", "/Metrics"}) {
    CAPTURE(path);
    REQUIRE(client.send(get(path)));
    const auto answer = client.read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 404);
    CHECK(answer->header("Content-Length") == std::to_string(answer->body.size()));
  }
  REQUIRE(client.send(get("/metrics")));
  const auto answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
  CHECK(server.route_calls() == 1);
}

TEST_CASE("admin http: methods other than GET and HEAD answer 405 with Allow") {
  TestServer server;
  RawClient client(server.endpoint());

  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    CAPTURE(method);
    REQUIRE(client.send(std::string(method) +
                        " /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}"));
    const auto answer = client.read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 405);
    CHECK(answer->header("Allow") == "GET, HEAD");
  }
  CHECK(server.route_calls() == 0);
  // The requests were read whole: the connection goes on.
  REQUIRE(client.send(get("/metrics")));
  const auto answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
}

TEST_CASE("admin http: a malformed request answers 400 and the connection closes") {
  TestServer server;
  const std::string cases[] = {
      "NOT HTTP\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost test\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET http://test/metrics HTTP/1.1\r\nHost: test\r\n\r\n",
  };
  for (const auto& request : cases) {
    CAPTURE(request);
    RawClient client(server.endpoint());
    REQUIRE(client.send(request));
    const auto answer = client.read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 400);
    CHECK(lower(answer->header("Connection")) == "close");
    CHECK(client.closed_by_server());
    CHECK(server.serves());
  }
  CHECK(server.route_calls() == static_cast<int>(std::size(cases)));  // serves() only
}

TEST_CASE("admin http: a 64 KiB header answers 431 and the connection closes") {
  TestServer server;
  RawClient client(server.endpoint());

  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: test\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
  CHECK(client.send(request));
  const auto answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 431);
  CHECK(client.closed_by_server());
  CHECK(server.route_calls() == 0);
  CHECK(server.serves());

  // Just under the limit is served.
  RawClient fits(server.endpoint());
  REQUIRE(fits.send(get("/metrics", "X-Big: " + std::string(7 * 1024, 'a') + "\r\n")));
  const auto fits_answer = fits.read_answer();
  REQUIRE(fits_answer);
  CHECK(fits_answer->status == 200);
}

TEST_CASE("admin http: a body over the limit answers 413 and the connection closes") {
  TestServer server;
  const std::string body(2048, 'b');
  const std::string cases[] = {
      // Refused from its Content-Length, before the body is read...
      get("/metrics", "Content-Length: 2048\r\n") + body,
      // ...and a chunked one as it arrives.
      get("/metrics", "Transfer-Encoding: chunked\r\n") + "800\r\n" + body + "\r\n0\r\n\r\n",
  };
  for (const auto& request : cases) {
    RawClient client(server.endpoint());
    CHECK(client.send(request));
    const auto answer = client.read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 413);
    CHECK(client.closed_by_server());
    CHECK(server.serves());
  }
  // A body within the limit is read and ignored.
  RawClient small(server.endpoint());
  REQUIRE(small.send(get("/metrics", "Content-Length: 5\r\n") + "hello"));
  const auto answer = small.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
}

TEST_CASE("admin http: a client that stalls mid-request is disconnected at the request timeout") {
  TestServer server(options_with_timeout(200ms));
  const auto start = Clock::now();
  RawClient client(server.endpoint());

  REQUIRE(client.send("GET /metrics HTTP/1.1\r\nHost: te"));
  CHECK(client.closed_by_server());  // no answer, and before kPatience
  CHECK(client.saw_eof());
  CHECK(Clock::now() - start >= 200ms);
  CHECK(server.route_calls() == 0);
  CHECK(server.serves());
}

TEST_CASE("admin http: a client that trickles its request is disconnected at the request timeout") {
  // A byte every 20 ms: an idle timeout would never fire, the per-request deadline must.
  TestServer server(options_with_timeout(200ms));
  const auto start = Clock::now();
  RawClient client(server.endpoint());

  REQUIRE(client.send("GET /metrics HTTP/1.1\r\nX-Slow: "));
  bool closed = false;
  while (!closed && Clock::now() - start < kPatience) {
    client.send("a");
    closed = client.closes_within(20ms);
  }
  CHECK(closed);
  CHECK(Clock::now() - start >= 200ms);
  CHECK(server.serves());
}

TEST_CASE("admin http: connections past max_connections are closed at once") {
  AdminHttpOptions options;
  options.max_connections = 2;
  options.request_timeout = 60s;  // the held connections must outlive the test
  TestServer server(options);

  // Two connections, each proven accepted and counted by an answer.
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<RawClient>(server.endpoint()));
    REQUIRE(held.back()->send(get("/metrics")));
    const auto answer = held.back()->read_answer();
    REQUIRE(answer);
    CHECK(answer->status == 200);
  }
  for (int i = 0; i < 3; ++i) {
    RawClient extra(server.endpoint());
    CHECK(extra.closed_by_server());
  }
  // The held ones are still served.
  REQUIRE(held[0]->send(get("/status")));
  const auto still = held[0]->read_answer();
  REQUIRE(still);
  CHECK(still->status == 200);

  // Once one leaves, a new client gets its place (as soon as the server has seen it go).
  held[1]->close();
  CHECK(TestServer::wait_until([&] { return server.serves(); }));
}

TEST_CASE("admin http: a route that throws answers 500 with the exception text") {
  TestServer server;
  RawClient client(server.endpoint());

  REQUIRE(client.send(get("/boom")));
  auto answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 500);
  CHECK(answer->body.find("route exploded") != std::string::npos);
  CHECK(answer->header("Content-Length") == std::to_string(answer->body.size()));

  // A status no HTTP client could read is the route's mistake too.
  REQUIRE(client.send(get("/bad-status")));
  answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 500);
  CHECK(answer->body.find("1000") != std::string::npos);

  // The server's fault, not the request's: the connection goes on.
  REQUIRE(client.send(get("/metrics")));
  answer = client.read_answer();
  REQUIRE(answer);
  CHECK(answer->status == 200);
}

TEST_CASE("admin http: stop closes the open connections and leaves the io_context without work") {
  TestServer server;
  RawClient client(server.endpoint());
  REQUIRE(client.send(get("/metrics")));
  REQUIRE(client.read_answer());
  RawClient idle(server.endpoint());

  server.server().stop();  // from this thread, not the io_context's
  server.server().stop();
  CHECK(client.closed_by_server());
  CHECK(idle.closed_by_server());
  CHECK(TestServer::wait_until([&] { return server.finished_threads() == 1; }));
  RawClient late;
  CHECK_FALSE(late.connect(server.endpoint()));
}

TEST_CASE("admin http: start throws a system_error naming the address when the port is taken") {
  TestServer server;
  asio::io_context io;
  AdminHttpServer second(io, server.endpoint());
  second.add_route("/metrics", [] { return AdminReply{}; });
  const std::string address = "127.0.0.1:" + std::to_string(server.endpoint().port());
  bool thrown = false;
  try {
    second.start();
  } catch (const std::system_error& e) {
    thrown = true;
    CHECK(std::string(e.what()).find(address) != std::string::npos);
    CHECK(e.code() == std::errc::address_in_use);
  }
  CHECK(thrown);
  CHECK(server.serves());
}

TEST_CASE("admin http: serves parallel clients with the io_context run by four threads") {
  TestServer server({}, 4);
  constexpr int kClients = 4;
  constexpr int kRequests = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      RawClient client(server.endpoint());
      for (int i = 0; i < kRequests; ++i) {
        const bool metrics = (i + c) % 2 == 0;
        if (!client.send(get(metrics ? "/metrics" : "/status"))) {
          return;
        }
        const auto answer = client.read_answer();
        if (answer && answer->status == 200 &&
            answer->body == (metrics ? kMetricsBody : kStatusBody)) {
          ++good;
        }
      }
    });
  }
  // A hostile client at the same time.
  RawClient garbage(server.endpoint());
  CHECK(garbage.send("NOT HTTP\r\n\r\n"));
  CHECK(garbage.closed_by_server());
  for (auto& t : clients) {
    t.join();
  }
  CHECK(good == kClients * kRequests);
  CHECK(server.route_calls() == kClients * kRequests);
  CHECK_FALSE(server.routes_overlapped());
}
