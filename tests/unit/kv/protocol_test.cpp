// The tenure-kv client protocol (examples/kv/protocol.hpp, docs/kv-protocol.md): every request and
// response kind survives format -> parse, and malformed lines are rejected with a reason.
#include <kv/protocol.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using tenure::kv::addresses_list;
using tenure::kv::ClusterInfo;
using tenure::kv::errc_from_name;
using tenure::kv::fnv1a64;
using tenure::kv::format_request;
using tenure::kv::format_response;
using tenure::kv::InfoView;
using tenure::kv::is_valid_address;
using tenure::kv::is_valid_key;
using tenure::kv::is_valid_value;
using tenure::kv::kMaxKeyBytes;
using tenure::kv::kMaxRequestLine;
using tenure::kv::leaders_list;
using tenure::kv::MembersView;
using tenure::kv::name_of;
using tenure::kv::NodeAddress;
using tenure::kv::Op;
using tenure::kv::parse_cluster_info;
using tenure::kv::parse_request;
using tenure::kv::parse_response;
using tenure::kv::ReadLevel;
using tenure::kv::ReadSource;
using tenure::kv::Request;
using tenure::kv::Response;
using tenure::kv::ResponseKind;
using tenure::kv::shard_of;
using tenure::raft::errc;

namespace {

constexpr std::uint64_t kMax64 = 18446744073709551615ULL;

std::string line_of(const Request& r) {
  std::string out;
  format_request(r, out);
  return out;
}

std::string line_of(const Response& r) {
  std::string out;
  format_response(r, out);
  return out;
}

// format -> parse gives back the same request, and the line is exactly `expected`.
void check_request_round_trip(const Request& r, std::string_view expected) {
  const std::string line = line_of(r);
  CHECK(line == expected);
  const auto parsed = parse_request(line);
  REQUIRE(parsed);
  CHECK(*parsed == r);
  CHECK(line_of(*parsed) == line);
}

void check_response_round_trip(const Response& r, std::string_view expected) {
  const std::string line = line_of(r);
  CHECK(line == expected);
  const auto parsed = parse_response(line);
  REQUIRE(parsed);
  CHECK(*parsed == r);
  CHECK(line_of(*parsed) == line);
}

bool request_rejected(std::string_view line) {
  return !parse_request(line).has_value();
}
bool response_rejected(std::string_view line) {
  return !parse_response(line).has_value();
}

}  // namespace

TEST_CASE("kv protocol: every request kind round-trips") {
  check_request_round_trip(Request::put(1, "k", "v"), "1 put k v\n");
  check_request_round_trip(Request::get(2, "key", ReadLevel::linearizable),
                           "2 get key linearizable\n");
  check_request_round_trip(Request::get(3, "key", ReadLevel::lease), "3 get key lease\n");
  check_request_round_trip(Request::get(4, "key", ReadLevel::stale), "4 get key stale\n");
  check_request_round_trip(Request::del(5, "a/b"), "5 del a/b\n");
  check_request_round_trip(Request::cas(6, "k", std::string_view{"old"}, "new"),
                           "6 cas k old new\n");
  check_request_round_trip(Request::cas(7, "k", std::nullopt, "new"), "7 cas k - new\n");
  check_request_round_trip(Request::info(0), "0 info\n");
  check_request_round_trip(Request::info(kMax64), "18446744073709551615 info\n");
  check_request_round_trip(Request::snapshot(3), "3 snapshot\n");
  check_request_round_trip(Request::add_node(8, 0, 4, "10.0.0.4:7104/7204"),
                           "8 add-node 0 4 10.0.0.4:7104/7204\n");
  check_request_round_trip(Request::add_node(9, 255, kMax64, "[::1]:1/65535"),
                           "9 add-node 255 18446744073709551615 [::1]:1/65535\n");
  check_request_round_trip(Request::remove_node(10, 2, 1), "10 remove-node 2 1\n");
  check_request_round_trip(Request::members(11, 7), "11 members 7\n");
}

TEST_CASE("kv protocol: malformed membership requests are rejected") {
  CHECK(request_rejected("1 add-node 0 4"));              // no endpoint
  CHECK(request_rejected("1 add-node 0 4 h:1"));          // no client port
  CHECK(request_rejected("1 add-node 0 4 h:1/0"));        // port 0
  CHECK(request_rejected("1 add-node 0 4 h:65536/1"));    // raft port too big
  CHECK(request_rejected("1 add-node 0 4 h:1/01"));       // leading zero
  CHECK(request_rejected("1 add-node 0 0 h:1/2"));        // node 0
  CHECK(request_rejected("1 add-node 256 4 h:1/2"));      // shard past kMaxShards
  CHECK(request_rejected("1 add-node -1 4 h:1/2"));       // not a number
  CHECK(request_rejected("1 add-node 0 4 h:1/2 extra"));  // extra argument
  CHECK(request_rejected("1 add-node 0 4 a@b:1/2"));      // '@' in the host
  CHECK(request_rejected("1 remove-node 0"));             // no node
  CHECK(request_rejected("1 remove-node 0 0"));           // node 0
  CHECK(request_rejected("1 remove-node 0 4 h:1/2"));     // extra argument
  CHECK(request_rejected("1 members"));                   // no shard
  CHECK(request_rejected("1 members 0 1"));               // extra argument
  CHECK(request_rejected("1 members 01"));                // leading zero
  const auto why = parse_request("12 remove-node x 4");
  REQUIRE_FALSE(why);
  CHECK(why.error().id == 12);
  CHECK(std::string_view(why.error().reason) == "bad shard");
}

TEST_CASE("kv protocol: node endpoints host:raft/client") {
  CHECK(tenure::kv::is_valid_endpoint("127.0.0.1:7101/7201"));
  CHECK(tenure::kv::is_valid_endpoint("[::1]:1/65535"));
  CHECK_FALSE(tenure::kv::is_valid_endpoint("127.0.0.1:7101"));
  CHECK_FALSE(tenure::kv::is_valid_endpoint("127.0.0.1/7201"));
  CHECK_FALSE(tenure::kv::is_valid_endpoint(":7101/7201"));
  CHECK_FALSE(tenure::kv::is_valid_endpoint("h:1/"));
  const auto e = tenure::kv::split_endpoint("[::1]:7101/7201");
  REQUIRE(e);
  CHECK(e->host == "[::1]");
  CHECK(e->raft_port == 7101);
  CHECK(e->client_port == 7201);
  CHECK(e->raft_address() == "[::1]:7101");
  CHECK(e->client_address() == "[::1]:7201");
  CHECK_FALSE(tenure::kv::split_endpoint("h:1/2/3"));
}

TEST_CASE("kv protocol: keys and values of every printable byte and of the maximum length") {
  std::string all;
  for (char c = 0x21; c <= 0x7e; ++c) {
    all += c;
  }
  const std::string longest(kMaxKeyBytes, 'x');
  check_request_round_trip(Request::put(9, all, longest), "9 put " + all + " " + longest + "\n");
  check_request_round_trip(Request::cas(10, longest, std::string_view{longest}, longest),
                           "10 cas " + longest + " " + longest + " " + longest + "\n");
  CHECK(is_valid_key("--"));
  CHECK(is_valid_value("-x"));
}

TEST_CASE("kv protocol: a parsed request views the line and tolerates no trailing newline") {
  const std::string line = "42 put alpha beta";
  const auto parsed = parse_request(line);
  REQUIRE(parsed);
  CHECK(parsed->id == 42);
  CHECK(parsed->op == Op::put);
  CHECK(parsed->key == "alpha");
  CHECK(parsed->value == "beta");
  CHECK(parsed->key.data() == line.data() + 7);
}

TEST_CASE("kv protocol: malformed request lines are rejected") {
  const std::string long_key(kMaxKeyBytes + 1, 'k');
  const std::vector<std::string> bad = {
      "",
      "\n",
      "1",
      "1 ",
      " 1 info",
      "1  info",
      "1 info ",
      "x info",
      "-1 info",
      "+1 info",
      "01 info",
      "18446744073709551616 info",
      "99999999999999999999999 info",
      "1 INFO",
      "1 nop",
      "1 put k",
      "1 put",
      "1 put k v extra",
      "1 get k",
      "1 get k fresh",
      "1 get k Lease",
      "1 get k lease x",
      "1 del",
      "1 del k v",
      "1 cas k old",
      "1 cas k old new x",
      "1 cas k old -",
      "1 info x",
      "1 put - v",
      "1 put k -",
      "1 put " + long_key + " v",
      "1 put k " + long_key,
      "1 put k\tv",
      "1 put k v\r",
      "1 put k\x7fv x",
      std::string("1 put k\0v x", 11),
      "1 put k \x80",
      "1 put k v\n\n",
      "1\tinfo",
  };
  for (const auto& line : bad) {
    INFO("line: ", line);
    CHECK(request_rejected(line));
  }
}

TEST_CASE("kv protocol: a rejected request carries its id when the id parsed") {
  const auto bad_level = parse_request("17 get k fresh");
  REQUIRE_FALSE(bad_level);
  CHECK(bad_level.error().id == 17);
  CHECK(std::string_view(bad_level.error().reason) == "bad read level");

  const auto extra = parse_request("18 del k v");
  REQUIRE_FALSE(extra);
  CHECK(extra.error().id == 18);
  CHECK(std::string_view(extra.error().reason) == "extra argument");

  const auto bad_id = parse_request("x7 info");
  REQUIRE_FALSE(bad_id);
  CHECK(bad_id.error().id == 0);

  // An empty token (two spaces) anywhere after a valid id: the answer still carries the id.
  for (const char* line : {"19  get k lease", "19 get  k lease", "19 get k lease "}) {
    CAPTURE(line);
    const auto spaced = parse_request(line);
    REQUIRE_FALSE(spaced);
    CHECK(spaced.error().id == 19);
  }
  CHECK(parse_request(" 19 info").error().id == 0);  // no id in front
}

TEST_CASE(
    "kv protocol: an info answer announces at most kMaxShards shards - what --shards allows") {
  CHECK(tenure::kv::kMaxShards == 256);
  std::string leaders = "1";
  for (std::uint32_t s = 1; s < tenure::kv::kMaxShards; ++s) {
    leaders += ",1";
  }
  const std::string ok = "7 info node=1 shards=256 leaders=" + leaders + " addresses=1@a:1";
  CHECK(tenure::kv::parse_response(ok));
  const std::string over = "7 info node=1 shards=257 leaders=" + leaders + ",1 addresses=1@a:1";
  CHECK_FALSE(tenure::kv::parse_response(over));
}

TEST_CASE("kv protocol: request lines longer than the limit are rejected") {
  // A line of exactly kMaxRequestLine bytes is parsed on its merits; one byte more never is.
  std::string line = "1 put k ";
  line += std::string(kMaxRequestLine - line.size(), 'v');
  REQUIRE(line.size() == kMaxRequestLine);
  CHECK(request_rejected(line));  // the value is too long, but the line was framed
  CHECK(std::string_view(parse_request(line).error().reason) == "bad value");
  line += 'v';
  CHECK(std::string_view(parse_request(line).error().reason) == "line too long");
}

TEST_CASE("kv protocol: every response kind round-trips") {
  check_response_round_trip(Response::ok(1), "1 ok\n");
  check_response_round_trip(Response::found(2, "v", ReadSource::lease), "2 value v lease\n");
  check_response_round_trip(Response::found(3, "v", ReadSource::readindex),
                            "3 value v readindex\n");
  check_response_round_trip(Response::found(4, "v", ReadSource::stale), "4 value v stale\n");
  check_response_round_trip(Response::absent(5, ReadSource::lease), "5 none lease\n");
  check_response_round_trip(Response::absent(6, ReadSource::stale), "6 none stale\n");
  check_response_round_trip(Response::mismatch(7, std::string_view{"cur"}), "7 mismatch cur\n");
  check_response_round_trip(Response::mismatch(8, std::nullopt), "8 mismatch -\n");
  check_response_round_trip(Response::failure(9, errc::not_leader, "10.0.0.2:7001"),
                            "9 error not_leader 10.0.0.2:7001\n");
  check_response_round_trip(Response::failure(10, errc::timed_out), "10 error timed_out -\n");
  check_response_round_trip(Response::failure(11, errc::invalid_argument, "[::1]:7000"),
                            "11 error invalid_argument [::1]:7000\n");
  check_response_round_trip(
      Response::cluster_info(12, InfoView{2, 3, "1,2,0", "1@h1:7001,2@h2:7002,3@h3:7003"}),
      "12 info node=2 shards=3 leaders=1,2,0 addresses=1@h1:7001,2@h2:7002,3@h3:7003\n");
  check_response_round_trip(
      Response::shard_members(13, MembersView{1, 42, true, "1,2,4", "-", "5", "1@h:1/2,4@h:3/4"}),
      "13 members shard=1 index=42 committed=yes voters=1,2,4 outgoing=- learners=5 "
      "nodes=1@h:1/2,4@h:3/4\n");
  check_response_round_trip(
      Response::shard_members(14, MembersView{0, 0, false, "1,2,3,4", "1,2,3", "-", "-"}),
      "14 members shard=0 index=0 committed=no voters=1,2,3,4 outgoing=1,2,3 learners=- "
      "nodes=-\n");
  check_response_round_trip(Response::failure(15, errc::change_in_progress, "h:1"),
                            "15 error change_in_progress h:1\n");
}

TEST_CASE("kv protocol: a members answer decodes into an owning MembersInfo and is rebuilt") {
  const std::string line =
      "3 members shard=2 index=17 committed=no voters=4,5 outgoing=1,2 learners=6 "
      "nodes=4@h:1/2,6@[::1]:3/4";
  const auto r = parse_response(line);
  REQUIRE(r);
  REQUIRE(r->kind == ResponseKind::members);
  const auto m = tenure::kv::parse_members_info(r->members);
  REQUIRE(m);
  CHECK(m->shard == 2);
  CHECK(m->index == 17);
  CHECK_FALSE(m->committed);
  CHECK(m->voters == std::vector<std::uint64_t>{4, 5});
  CHECK(m->outgoing == std::vector<std::uint64_t>{1, 2});
  CHECK(m->learners == std::vector<std::uint64_t>{6});
  CHECK(m->joint());
  CHECK(m->contains(1));
  CHECK(m->contains(6));
  CHECK_FALSE(m->contains(3));
  CHECK(m->endpoint_of(6) == "[::1]:3/4");
  CHECK(m->endpoint_of(5).empty());
  std::string voters;
  std::string nodes;
  tenure::kv::ids_list(m->voters, voters);
  tenure::kv::endpoints_list(m->nodes, nodes);
  CHECK(voters == "4,5");
  CHECK(nodes == "4@h:1/2,6@[::1]:3/4");
  std::string none;
  tenure::kv::ids_list({}, none);
  CHECK(none == "-");
  // Malformed: no voters, a zero id, a bad endpoint, committed neither yes nor no, a field
  // missing or out of order.
  CHECK(
      response_rejected("1 members shard=0 index=1 committed=yes voters=- outgoing=- "
                        "learners=- nodes=-"));
  CHECK(
      response_rejected("1 members shard=0 index=1 committed=yes voters=1,0 outgoing=- "
                        "learners=- nodes=-"));
  CHECK(
      response_rejected("1 members shard=0 index=1 committed=yes voters=1 outgoing=- "
                        "learners=- nodes=1@h:1"));
  CHECK(
      response_rejected("1 members shard=0 index=1 committed=maybe voters=1 outgoing=- "
                        "learners=- nodes=-"));
  CHECK(response_rejected("1 members shard=0 index=1 voters=1 outgoing=- learners=- nodes=-"));
  CHECK(
      response_rejected("1 members index=1 shard=0 committed=yes voters=1 outgoing=- "
                        "learners=- nodes=-"));
}

TEST_CASE("kv protocol: every tenure error code has a wire name that parses back") {
  for (int v = 1; v <= static_cast<int>(errc::lease_expired); ++v) {
    const auto code = static_cast<errc>(v);
    INFO("code ", v);
    CHECK(name_of(code) != "?");
    CHECK(errc_from_name(name_of(code)) == code);
    check_response_round_trip(Response::failure(5, code),
                              "5 error " + std::string(name_of(code)) + " -\n");
  }
  CHECK_FALSE(errc_from_name("no_such_code").has_value());
}

TEST_CASE("kv protocol: malformed response lines are rejected") {
  const std::vector<std::string> bad = {
      "",
      "1",
      "x ok",
      "1 ok extra",
      "1 OK",
      "1 value v",
      "1 value v lease extra",
      "1 value v fresh",
      "1 value - lease",
      "1 none",
      "1 none lease x",
      "1 none linearizable",
      "1 mismatch",
      "1 mismatch a b",
      "1 error not_leader",
      "1 error no_such_code -",
      "1 error not_leader host",
      "1 error not_leader host:0",
      "1 error not_leader host:65536",
      "1 error not_leader host:07001",
      "1 error not_leader :7001",
      "1 error not_leader a,b:7001",
      "1 info",
      "1 info node=1 shards=2 leaders=1,2",
      "1 info node=1 shards=2 leaders=1 addresses=1@h:1",
      "1 info node=1 shards=2 leaders=1,2,3 addresses=1@h:1",
      "1 info node=1 shards=2 leaders=1,,2 addresses=1@h:1",
      "1 info node=1 shards=0 leaders= addresses=1@h:1",
      "1 info node=1 shards=1 leaders=x addresses=1@h:1",
      "1 info node=1 shards=1 leaders=1 addresses=",
      "1 info node=1 shards=1 leaders=1 addresses=1@h",
      "1 info node=1 shards=1 leaders=1 addresses=0@h:1",
      "1 info node=1 shards=1 leaders=1 addresses=1h:1",
      "1 info node=1 shards=1 leaders=1 addresses=1@h:1,",
      "1 info shards=1 node=1 leaders=1 addresses=1@h:1",
      "1 info node=1 shards=99999 leaders=1 addresses=1@h:1",
      "1 info node=1 shards=1 leaders=1 addresses=1@h:1 x",
      "1 info nod=1 shards=1 leaders=1 addresses=1@h:1",
  };
  for (const auto& line : bad) {
    INFO("line: ", line);
    CHECK(response_rejected(line));
  }
}

TEST_CASE("kv protocol: an info answer decodes into an owning ClusterInfo and is rebuilt") {
  const std::string line =
      "3 info node=2 shards=4 leaders=1,2,0,3 addresses=1@a:7001,2@[::1]:7002,3@c:7003";
  const auto parsed = parse_response(line);
  REQUIRE(parsed);
  REQUIRE(parsed->kind == ResponseKind::info);
  const auto info = parse_cluster_info(parsed->info);
  REQUIRE(info);
  CHECK(info->node == 2);
  CHECK(info->shards() == 4);
  CHECK(info->leaders == std::vector<std::uint64_t>{1, 2, 0, 3});
  CHECK(info->address_of(2) == "[::1]:7002");
  CHECK(info->address_of(0).empty());
  CHECK(info->address_of(9).empty());

  std::string leaders;
  std::string addresses;
  leaders_list(info->leaders, leaders);
  addresses_list(info->addresses, addresses);
  const auto rebuilt = Response::cluster_info(3, InfoView{2, info->shards(), leaders, addresses});
  CHECK(line_of(rebuilt) == line + "\n");
}

TEST_CASE("kv protocol: addresses") {
  CHECK(is_valid_address("localhost:7001"));
  CHECK(is_valid_address("127.0.0.1:1"));
  CHECK(is_valid_address("[::1]:65535"));
  CHECK_FALSE(is_valid_address(""));
  CHECK_FALSE(is_valid_address("-"));
  CHECK_FALSE(is_valid_address("host"));
  CHECK_FALSE(is_valid_address("host:"));
  CHECK_FALSE(is_valid_address("host:x"));
  CHECK_FALSE(is_valid_address("ho st:1"));
  CHECK_FALSE(is_valid_address("a@b:1"));
  CHECK_FALSE(is_valid_address(std::string(300, 'h') + ":1"));
}

TEST_CASE("kv protocol: split_address takes host and port apart - IPv6 brackets off") {
  const auto v4 = tenure::kv::split_address("127.0.0.1:7001");
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 7001);
  const auto v6 = tenure::kv::split_address("[::1]:65535");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->port == 65535);
  const auto named = tenure::kv::split_address("db-1.example:1");
  REQUIRE(named);
  CHECK(named->host == "db-1.example");
  CHECK(named->port == 1);
  CHECK_FALSE(tenure::kv::split_address("host:0"));
  CHECK_FALSE(tenure::kv::split_address("host:65536"));
  CHECK_FALSE(tenure::kv::split_address(":7001"));
  CHECK_FALSE(tenure::kv::split_address("7001"));
}

TEST_CASE("kv protocol: shard_of is FNV-1a 64 modulo the shard count") {
  static_assert(fnv1a64("") == 14695981039346656037ULL);
  static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ULL);
  CHECK(shard_of("a", 1) == 0);
  CHECK(shard_of("a", 3) == 0xaf63dc4c8601ec8cULL % 3);
  CHECK(shard_of("foobar", 7) == 0x85944171f73967e8ULL % 7);
  CHECK(shard_of("a", 0) == 0);
  // Bytes count as unsigned: a high byte must not sign-extend into the hash.
  CHECK(fnv1a64("\xff") == ((14695981039346656037ULL ^ 0xffULL) * 1099511628211ULL));
}

TEST_CASE("kv protocol: arbitrary byte strings never crash the parsers") {
  // A cheap deterministic fuzz: mutations of valid lines, every one parsed as request and as
  // response. Under the asan preset this proves the parsers stay in bounds.
  const std::vector<std::string> seeds = {
      "1 put k v",
      "2 get key lease",
      "3 cas k - n",
      "4 info node=1 shards=2 leaders=1,0 addresses=1@h:1,2@[::1]:2",
      "5 error not_leader h:1",
      "6 value v readindex",
      "7 add-node 0 4 h:1/2",
      "8 remove-node 3 4",
      "9 members 1",
      "10 members shard=1 index=9 committed=yes voters=1,2 outgoing=- learners=3 nodes=1@h:1/2"};
  std::uint64_t state = 88172645463325252ULL;
  const auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::string alphabet = " ,@:=-01x\n\t\x7f\x80";
  std::size_t accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string line = seeds[next() % seeds.size()];
    const int edits = 1 + static_cast<int>(next() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = line.empty() ? 0 : next() % line.size();
      const char c = alphabet[next() % alphabet.size()];
      switch (next() % 3) {
        case 0:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 1:
          if (!line.empty()) {
            line.erase(at, 1);
          }
          break;
        default:
          if (!line.empty()) {
            line[at] = c;
          }
          break;
      }
    }
    if (const auto r = parse_request(line)) {
      ++accepted;
      CHECK(line_of(*r) == (line.back() == '\n' ? line : line + "\n"));
    }
    if (const auto r = parse_response(line)) {
      ++accepted;
      CHECK(line_of(*r) == (line.back() == '\n' ? line : line + "\n"));
    }
  }
  CHECK(accepted > 0);
}
