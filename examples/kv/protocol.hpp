// The tenure-kv client protocol: one request or response per text line, and back.
//
// A client sends lines `<id> <op> <args...>\n` and the server answers each with a line that starts
// with the same id; one connection may carry many requests at once and the answers may come back
// in any order. The grammar, limits, error codes and retry rules are in docs/kv-protocol.md; this
// header is its executable form, shared by the server (parse_request, format_response), the
// command-line client and the load generator (format_request, parse_response).
//
// Parsed requests and responses are views: their string_views point into the line that was
// parsed, so the line must outlive them. Nothing here allocates except the functions that append
// to a caller's std::string and the parse_*_info / parse_node_status functions, which build owning
// forms of the `info`, `members` and `status` answers. Every parser is bounds-checked and total:
// any byte string is either accepted as a well-formed line or rejected with a reason, never read
// out of bounds.
#pragma once

#include <array>
#include <cassert>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <raft/errc.hpp>

namespace tenure::kv {

/// Longest request line a server accepts, not counting its '\n'. A longer line cannot be framed:
/// the server answers `0 error invalid_argument -` and closes the connection.
inline constexpr std::size_t kMaxRequestLine = 4096;

/// Longest response line a client needs to accept, not counting its '\n'. Only `info` and
/// `status` answers come near it (they list every shard's leader and every node's address, or
/// every shard's state and members; a `status` answer that would be longer is refused with
/// too_large).
inline constexpr std::size_t kMaxResponseLine = 65536;

/// Longest key or value, in bytes. The shortest is 1 byte.
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::size_t kMaxValueBytes = 1024;

/// Most shards an `info` answer may announce (bounds the leaders list).
inline constexpr std::uint32_t kMaxShards = 256;

/// Longest client address `host:port` (a DNS name is at most 253 bytes, plus brackets and port).
inline constexpr std::size_t kMaxAddressBytes = 270;

/// Longest node endpoint `host:raft_port/client_port` (an address and one more port).
inline constexpr std::size_t kMaxEndpointBytes = kMaxAddressBytes + 6;

/// Most node ids a `members` answer lists in one of its lists (a Raft group's max_peers).
inline constexpr std::size_t kMaxMembers = 64;

/// The `shard` of a `status` request that asks for every shard (the request has no shard).
inline constexpr std::uint32_t kAllShards = 0xffffffffu;

/// What a request asks for.
enum class Op : std::uint8_t {
  put,
  get,
  del,
  cas,
  info,
  snapshot,
  add_node,
  remove_node,
  members,
  status,
};

/// How fresh a get must be. `linearizable`: a ReadIndex round or a valid lease, the server picks;
/// `lease`: served from the leader's lease when it holds one, otherwise through ReadIndex;
/// `stale`: any node's applied state, no freshness promise.
enum class ReadLevel : std::uint8_t { linearizable, lease, stale };

/// How a get was actually served (the `<how>` token of a get answer).
enum class ReadSource : std::uint8_t {
  lease,      ///< from the leader's memory under a valid lease: no round trip
  readindex,  ///< after a ReadIndex round with a quorum
  stale,      ///< from the answering node's local state, possibly behind
};

/// What kind of answer a response line is.
enum class ResponseKind : std::uint8_t {
  ok,        ///< put, del, or a cas that took effect
  value,     ///< get: the key has `value`
  none,      ///< get: the key is absent
  mismatch,  ///< cas did not take effect: the key's current value differs from the expected one
  info,      ///< answer to `info`
  error,     ///< the request failed with `code`
  members,   ///< answer to `members`
  status,    ///< answer to `status`
};

/// One request. Built by the client (the factories below), or by parse_request over a line, in
/// which case its string_views point into that line.
///
/// Which fields an op uses: put `key`, `value`; get `key`, `level`; del `key`; cas `key`,
/// `expected` (nullopt: the key must be absent), `value` (the new value); info and snapshot
/// none; add-node `shard`, `node`, `endpoint`; remove-node `shard`, `node`; members `shard`;
/// status `shard` (kAllShards: every shard).
/// Unused fields keep their defaults, so requests compare equal exactly when their lines are
/// equal.
struct Request {
  std::uint64_t id = 0;
  Op op = Op::info;
  std::string_view key;
  std::string_view value;
  std::optional<std::string_view> expected;
  ReadLevel level = ReadLevel::linearizable;
  std::uint32_t shard = 0;    ///< membership and status requests: which shard (0 .. shards-1)
  std::uint64_t node = 0;     ///< add-node, remove-node: the node's id (non-zero)
  std::string_view endpoint;  ///< add-node: `host:raft_port/client_port` of the node

  static Request put(std::uint64_t id, std::string_view key, std::string_view value) noexcept {
    Request r = with_shard(id, Op::put, 0);
    r.key = key;
    r.value = value;
    return r;
  }
  static Request get(std::uint64_t id, std::string_view key, ReadLevel level) noexcept {
    Request r = with_shard(id, Op::get, 0);
    r.key = key;
    r.level = level;
    return r;
  }
  static Request del(std::uint64_t id, std::string_view key) noexcept {
    Request r = with_shard(id, Op::del, 0);
    r.key = key;
    return r;
  }
  /// `expected` nullopt means "only if the key is absent" (written `-` on the wire).
  static Request cas(std::uint64_t id, std::string_view key,
                     std::optional<std::string_view> expected, std::string_view desired) noexcept {
    Request r = with_shard(id, Op::cas, 0);
    r.key = key;
    r.value = desired;
    r.expected = expected;
    return r;
  }
  static Request info(std::uint64_t id) noexcept { return with_shard(id, Op::info, 0); }
  /// Asks the node to take a snapshot of every shard now (answered `ok` once requested).
  static Request snapshot(std::uint64_t id) noexcept { return with_shard(id, Op::snapshot, 0); }
  /// Makes `node` (reachable at `endpoint`, `host:raft_port/client_port`) a voter of `shard`.
  static Request add_node(std::uint64_t id, std::uint32_t shard, std::uint64_t node,
                          std::string_view endpoint) noexcept {
    Request r = with_shard(id, Op::add_node, shard);
    r.node = node;
    r.endpoint = endpoint;
    return r;
  }
  /// Removes `node` from `shard` (as voter and as learner).
  static Request remove_node(std::uint64_t id, std::uint32_t shard, std::uint64_t node) noexcept {
    Request r = with_shard(id, Op::remove_node, shard);
    r.node = node;
    return r;
  }
  /// Asks the leader of `shard` for its members.
  static Request members(std::uint64_t id, std::uint32_t shard) noexcept {
    return with_shard(id, Op::members, shard);
  }
  /// Asks the node for its view of every shard (role, term, indexes, lease and, where it leads,
  /// each member's replication): `<id> status`.
  static Request status(std::uint64_t id) noexcept {
    return with_shard(id, Op::status, kAllShards);
  }
  /// The same for one shard: `<id> status <shard>` (for clusters whose every-shard answer would
  /// be longer than kMaxResponseLine: the node answers that one `too_large`).
  static Request status(std::uint64_t id, std::uint32_t shard) noexcept {
    return with_shard(id, Op::status, shard);
  }

  friend bool operator==(const Request&, const Request&) = default;

 private:
  static Request with_shard(std::uint64_t id, Op op, std::uint32_t shard) noexcept {
    Request r;
    r.id = id;
    r.op = op;
    r.shard = shard;
    return r;
  }
};

/// The body of an `info` answer, as views of its two comma-separated lists. parse_response checks
/// the lists' syntax (exactly `shards` leader ids; at least one `<id>@<host:port>`);
/// parse_cluster_info turns them into an owning ClusterInfo, and leaders_list / addresses_list
/// build them.
struct InfoView {
  std::uint64_t node = 0;    ///< the answering node's id
  std::uint32_t shards = 0;  ///< number of shards, 1..kMaxShards
  std::string_view
      leaders;  ///< `L1,L2,...`: the leader this node believes for each shard, 0 unknown
  std::string_view addresses;  ///< `id@host:port,...`: every node's client address

  friend bool operator==(const InfoView&, const InfoView&) = default;
};

/// The body of a `members` answer: one shard's configuration as its leader holds it, as views
/// of its lists. Each id list is `id,id,...`, empty (`-` on the wire) when it has none; `nodes`
/// lists `id@host:raft_port/client_port` for every member whose endpoint the leader knows.
/// parse_response checks the lists; parse_members_info turns them into an owning MembersInfo,
/// and ids_list / endpoints_list build them.
struct MembersView {
  std::uint32_t shard = 0;
  std::uint64_t index = 0;  ///< the log index of the configuration (0: the initial one)
  bool committed = false;   ///< whether that entry is committed
  std::string_view voters;
  std::string_view outgoing;  ///< non-empty only in a joint configuration (the voters being left)
  std::string_view learners;
  std::string_view nodes;

  friend bool operator==(const MembersView&, const MembersView&) = default;
};

/// The body of a `status` answer: the answering node, its number of shards, and its view of the
/// shards asked for as one `;`-separated list (docs/kv-protocol.md, "status"). parse_response
/// checks the list; parse_node_status turns it into an owning NodeStatus, and status_groups
/// builds it.
struct StatusView {
  std::uint64_t node = 0;
  std::uint32_t shards = 0;  ///< the node's number of shards, 1..kMaxShards
  std::string_view groups;   ///< `group;group;...`, one per shard reported, in shard order

  friend bool operator==(const StatusView&, const StatusView&) = default;
};

/// One response. Built by the server (the factories below), or by parse_response over a line, in
/// which case its string_views point into that line.
///
/// Which fields a kind uses: value `value`, `how`; none `how`; mismatch `current` (nullopt: the key
/// is absent, `-` on the wire); info `info`; members `members`; status `status`; error `code`,
/// `leader` (the hinted leader's client address `host:port`, empty when none, `-` on the wire).
/// Unused fields keep their defaults.
struct Response {
  std::uint64_t id = 0;
  ResponseKind kind = ResponseKind::ok;
  std::string_view value;
  ReadSource how = ReadSource::lease;
  std::optional<std::string_view> current;
  raft::errc code{};
  std::string_view leader;
  InfoView info;
  MembersView members;
  StatusView status;

  static Response ok(std::uint64_t id) noexcept { return with(id, ResponseKind::ok); }
  static Response found(std::uint64_t id, std::string_view value, ReadSource how) noexcept {
    Response r = with(id, ResponseKind::value);
    r.value = value;
    r.how = how;
    return r;
  }
  static Response absent(std::uint64_t id, ReadSource how) noexcept {
    Response r = with(id, ResponseKind::none);
    r.how = how;
    return r;
  }
  /// `current` nullopt: the key is absent.
  static Response mismatch(std::uint64_t id, std::optional<std::string_view> current) noexcept {
    Response r = with(id, ResponseKind::mismatch);
    r.current = current;
    return r;
  }
  /// `leader`: the hinted leader's client address `host:port`, or empty when unknown.
  static Response failure(std::uint64_t id, raft::errc code,
                          std::string_view leader = {}) noexcept {
    Response r = with(id, ResponseKind::error);
    r.code = code;
    r.leader = leader;
    return r;
  }
  /// See leaders_list and addresses_list for building `info`'s lists.
  static Response cluster_info(std::uint64_t id, InfoView info) noexcept {
    Response r = with(id, ResponseKind::info);
    r.info = info;
    return r;
  }
  /// See ids_list and endpoints_list for building the lists.
  static Response shard_members(std::uint64_t id, MembersView members) noexcept {
    Response r = with(id, ResponseKind::members);
    r.members = members;
    return r;
  }
  /// See status_groups for building the list.
  static Response node_status(std::uint64_t id, StatusView status) noexcept {
    Response r = with(id, ResponseKind::status);
    r.status = status;
    return r;
  }

  friend bool operator==(const Response&, const Response&) = default;

 private:
  static Response with(std::uint64_t id, ResponseKind kind) noexcept {
    Response r;
    r.id = id;
    r.kind = kind;
    return r;
  }
};

/// Why a line was rejected, and the id to answer it with.
struct ParseError {
  /// The line's id when its first token was a valid id, otherwise 0: a server answers
  /// `<id> error invalid_argument -`.
  std::uint64_t id = 0;
  /// A static, human-readable reason for logs ("bad read level", ...). Never dangles.
  const char* reason = "";
};

/// The outcome of a parse: a T or a ParseError. A small value type; no allocation.
template <class T>
class [[nodiscard]] Parsed {
 public:
  Parsed(T value) noexcept : value_(value), ok_(true) {}
  Parsed(ParseError error) noexcept : error_(error), ok_(false) {}

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  /// Precondition: has_value().
  const T& operator*() const noexcept { return assert(ok_), value_; }
  const T* operator->() const noexcept { return assert(ok_), &value_; }
  /// Precondition: !has_value().
  const ParseError& error() const noexcept { return assert(!ok_), error_; }

 private:
  T value_{};
  ParseError error_{};
  bool ok_;
};

// ---------------------------------------------------------------------------------------------
// Names of the enums on the wire.

/// The wire name of an op, read level, read source or response kind ("put", "lease", ...).
constexpr std::string_view name_of(Op op) noexcept {
  switch (op) {
    case Op::put:
      return "put";
    case Op::get:
      return "get";
    case Op::del:
      return "del";
    case Op::cas:
      return "cas";
    case Op::info:
      return "info";
    case Op::snapshot:
      return "snapshot";
    case Op::add_node:
      return "add-node";
    case Op::remove_node:
      return "remove-node";
    case Op::members:
      return "members";
    case Op::status:
      return "status";
  }
  return "?";
}

constexpr std::string_view name_of(ReadLevel level) noexcept {
  switch (level) {
    case ReadLevel::linearizable:
      return "linearizable";
    case ReadLevel::lease:
      return "lease";
    case ReadLevel::stale:
      return "stale";
  }
  return "?";
}

constexpr std::string_view name_of(ReadSource how) noexcept {
  switch (how) {
    case ReadSource::lease:
      return "lease";
    case ReadSource::readindex:
      return "readindex";
    case ReadSource::stale:
      return "stale";
  }
  return "?";
}

constexpr std::string_view name_of(ResponseKind kind) noexcept {
  switch (kind) {
    case ResponseKind::ok:
      return "ok";
    case ResponseKind::value:
      return "value";
    case ResponseKind::none:
      return "none";
    case ResponseKind::mismatch:
      return "mismatch";
    case ResponseKind::info:
      return "info";
    case ResponseKind::error:
      return "error";
    case ResponseKind::members:
      return "members";
    case ResponseKind::status:
      return "status";
  }
  return "?";
}

/// The wire name of a tenure error code: its enumerator's name ("not_leader", "timed_out", ...).
/// Returns "?" for a value outside the enum.
constexpr std::string_view name_of(raft::errc code) noexcept {
  const std::string_view name = raft::to_string(code);
  return name == "unknown" ? std::string_view("?") : name;
}

/// The error code with wire name `name`, or nullopt when no tenure code has that name.
constexpr std::optional<raft::errc> errc_from_name(std::string_view name) noexcept {
  // errc values are dense from 1 and only ever appended: keep the bound at the last one.
  for (int v = 1; v <= static_cast<int>(raft::errc::change_in_progress); ++v) {
    if (name_of(static_cast<raft::errc>(v)) == name) {
      return static_cast<raft::errc>(v);
    }
  }
  return std::nullopt;
}

/// The read level named `name`, or nullopt.
constexpr std::optional<ReadLevel> read_level_from_name(std::string_view name) noexcept {
  for (auto level : {ReadLevel::linearizable, ReadLevel::lease, ReadLevel::stale}) {
    if (name_of(level) == name) {
      return level;
    }
  }
  return std::nullopt;
}

/// The read source named `name`, or nullopt.
constexpr std::optional<ReadSource> read_source_from_name(std::string_view name) noexcept {
  for (auto how : {ReadSource::lease, ReadSource::readindex, ReadSource::stale}) {
    if (name_of(how) == name) {
      return how;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Sharding.

/// FNV-1a, 64-bit, over the bytes of `data` (offset basis 14695981039346656037, prime
/// 1099511628211). Stable across builds and hosts: it decides where keys live.
constexpr std::uint64_t fnv1a64(std::string_view data) noexcept {
  std::uint64_t hash = 14695981039346656037ULL;
  for (char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

/// The shard that owns `key` among `shards`: fnv1a64(key) % shards. Precondition: shards > 0
/// (returns 0 for shards == 0 rather than divide by zero).
constexpr std::uint32_t shard_of(std::string_view key, std::uint32_t shards) noexcept {
  return shards == 0 ? 0 : static_cast<std::uint32_t>(fnv1a64(key) % shards);
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// True when `key` is a valid key: 1..kMaxKeyBytes bytes, each printable ASCII 0x21..0x7e, and not
/// exactly `-`.
constexpr bool is_valid_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxKeyBytes || key == "-") {
    return false;
  }
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

/// True when `value` is a valid value: the same rules as a key, with kMaxValueBytes.
constexpr bool is_valid_value(std::string_view value) noexcept {
  static_assert(kMaxValueBytes == kMaxKeyBytes);
  return is_valid_key(value);
}

/// True when `address` is a client address `host:port`: a non-empty host of printable bytes other
/// than `,` and `@` (an IPv6 host in brackets, `[::1]:7000`, is fine: the port follows the last
/// colon), and a decimal port 1..65535 without leading zeros; at most kMaxAddressBytes bytes.
inline bool is_valid_address(std::string_view address) noexcept;

/// A client address split for connecting: the host without IPv6 brackets, and the port.
struct HostPort {
  std::string_view host;  // a view into the address
  std::uint16_t port = 0;
};

/// Splits a valid address (see is_valid_address); nullopt for an invalid one. The one place
/// that takes `host:port` apart: the client, the benchmark and the tests all go through it.
inline std::optional<HostPort> split_address(std::string_view address) noexcept;

/// True when `endpoint` is a node endpoint `host:raft_port/client_port`: `host:raft_port` a valid
/// address (is_valid_address) and client_port 1..65535 without leading zeros; at most
/// kMaxEndpointBytes bytes. The form of `tenure-kv --cluster` entries and of `add-node`.
inline bool is_valid_endpoint(std::string_view endpoint) noexcept;

/// A node endpoint split: the host (IPv6 brackets kept: `client_address()` and `raft_address()`
/// are addresses again) and both ports.
struct Endpoint {
  std::string_view host;
  std::uint16_t raft_port = 0;
  std::uint16_t client_port = 0;
  std::string raft_address() const { return std::string(host) + ":" + std::to_string(raft_port); }
  std::string client_address() const {
    return std::string(host) + ":" + std::to_string(client_port);
  }
};

/// Splits a valid endpoint; nullopt for an invalid one.
inline std::optional<Endpoint> split_endpoint(std::string_view endpoint) noexcept;

/// True when every field `r.op` uses satisfies the grammar (keys and values valid). The id and
/// level are always valid.
inline bool is_valid(const Request& r) noexcept;

/// True when every field `r.kind` uses satisfies the grammar: values valid, `code` a known errc,
/// `leader` empty or a valid address, `info` lists well-formed.
inline bool is_valid(const Response& r) noexcept;

// ---------------------------------------------------------------------------------------------
// Requests.

/// Parses one request line. `line` excludes the '\n' (one trailing '\n' is tolerated).
///
/// Accepts exactly the grammar of docs/kv-protocol.md: tokens separated by single spaces, no
/// leading or trailing space, an id of 1..20 decimal digits without leading zeros that fits in 64
/// bits, a known op with exactly its arguments, valid keys and values, and at most
/// kMaxRequestLine bytes. Anything else yields a ParseError whose `id` is the line's id when that
/// much parsed. The Request's views point into `line`. Never allocates.
inline Parsed<Request> parse_request(std::string_view line) noexcept;

/// Appends `r` as one line, '\n' included, to `out`. Precondition: is_valid(r) (checked by an
/// assertion); the line then parses back to `r`. Allocates only to grow `out`.
inline void format_request(const Request& r, std::string& out);

// ---------------------------------------------------------------------------------------------
// Responses.

/// Parses one response line. `line` excludes the '\n' (one trailing '\n' is tolerated).
///
/// Accepts exactly the response grammar of docs/kv-protocol.md, at most kMaxResponseLine bytes:
/// known kinds with exactly their arguments, valid values, a known `<how>`, a known error code
/// name and a valid leader address or `-`, and for `info` the four fields in order with
/// well-formed lists (exactly `shards` leader ids). Anything else yields a ParseError. The
/// Response's views point into `line`. Never allocates.
inline Parsed<Response> parse_response(std::string_view line) noexcept;

/// Appends `r` as one line, '\n' included, to `out`. Precondition: is_valid(r) (checked by an
/// assertion); the line then parses back to `r`. Allocates only to grow `out`.
inline void format_response(const Response& r, std::string& out);

// ---------------------------------------------------------------------------------------------
// The `info` answer, owned.

/// One node's client address, as listed by `info`.
struct NodeAddress {
  std::uint64_t node = 0;
  std::string address;  ///< `host:port`

  friend bool operator==(const NodeAddress&, const NodeAddress&) = default;
};

/// An `info` answer in owning form: what a client keeps to route keys to shard leaders.
struct ClusterInfo {
  std::uint64_t node = 0;              ///< the node that answered
  std::vector<std::uint64_t> leaders;  ///< leaders[s]: the leader of shard s it believes, 0 unknown
  std::vector<NodeAddress> addresses;  ///< every node's client address

  /// The number of shards (leaders.size()).
  std::uint32_t shards() const noexcept { return static_cast<std::uint32_t>(leaders.size()); }
  /// The client address of `node`, or empty when it is not listed (or is 0).
  std::string_view address_of(std::uint64_t node) const noexcept;

  friend bool operator==(const ClusterInfo&, const ClusterInfo&) = default;
};

/// Decodes the lists of an `info` answer. Returns nullopt when they are malformed (never for a
/// view that parse_response accepted). Allocates the vectors and strings.
inline std::optional<ClusterInfo> parse_cluster_info(const InfoView& view);

/// Appends the `leaders=` list for `leaders` (`1,2,0`) to `out`.
inline void leaders_list(std::span<const std::uint64_t> leaders, std::string& out);

/// Appends the `addresses=` list for `addresses` (`1@h:7001,2@h:7002`) to `out`.
inline void addresses_list(std::span<const NodeAddress> addresses, std::string& out);

// ---------------------------------------------------------------------------------------------
// The `members` answer, owned.

/// One node's endpoint, as listed by `members`.
struct NodeEndpoint {
  std::uint64_t node = 0;
  std::string endpoint;  ///< `host:raft_port/client_port`

  friend bool operator==(const NodeEndpoint&, const NodeEndpoint&) = default;
};

/// A `members` answer in owning form.
struct MembersInfo {
  std::uint32_t shard = 0;
  std::uint64_t index = 0;
  bool committed = false;
  std::vector<std::uint64_t> voters;
  std::vector<std::uint64_t> outgoing;
  std::vector<std::uint64_t> learners;
  std::vector<NodeEndpoint> nodes;

  /// Whether this is a joint configuration (outgoing voters listed).
  bool joint() const noexcept { return !outgoing.empty(); }
  /// Whether `node` is a voter (of either configuration) or a learner.
  bool contains(std::uint64_t node) const noexcept;
  /// The endpoint of `node`, or empty when it is not listed.
  std::string_view endpoint_of(std::uint64_t node) const noexcept;

  friend bool operator==(const MembersInfo&, const MembersInfo&) = default;
};

/// Decodes the lists of a `members` answer; nullopt when they are malformed (never for a view
/// that parse_response accepted). Allocates.
inline std::optional<MembersInfo> parse_members_info(const MembersView& view);

/// Appends an id list (`1,2,3`, or `-` when empty) to `out`.
inline void ids_list(std::span<const std::uint64_t> ids, std::string& out);

/// Appends a `nodes=` list (`1@h:7101/7201,...`, or `-` when empty) to `out`.
inline void endpoints_list(std::span<const NodeEndpoint> nodes, std::string& out);

// ---------------------------------------------------------------------------------------------
// The `status` answer, owned.

/// One member of a shard as the answering node sees it. The replication figures (match, lag,
/// ack age, replication) are the leader's view: present only when the answering node leads the
/// shard (`-` on the wire otherwise).
struct MemberStatus {
  std::uint64_t id = 0;
  /// "voter", "learner", or "leaving" (a voter of the outgoing half of a joint configuration).
  std::string kind = "voter";
  std::optional<std::uint64_t> match;  ///< the highest index known to be on the member
  std::optional<std::uint64_t> lag;    ///< the leader's last index minus match
  /// Microseconds since the member last acknowledged a message of the leader's term; nullopt
  /// when it has not in this term (or the answering node does not lead).
  std::optional<std::uint64_t> ack_age_us;
  /// "probe", "replicate", "snapshot", "self" (the leader itself), or empty (not the leader's
  /// view).
  std::string replication;

  friend bool operator==(const MemberStatus&, const MemberStatus&) = default;
};

/// One shard as the answering node sees it.
struct ShardStatus {
  std::uint32_t shard = 0;
  /// "follower", "pre_candidate", "candidate", "leader", or "stopped" (the shard stopped on this
  /// node: removed from it, or a storage failure).
  std::string role = "follower";
  std::uint64_t term = 0;
  std::uint64_t leader = 0;  ///< the node it believes leads, 0 unknown
  std::uint64_t commit = 0;
  std::uint64_t applied = 0;
  std::uint64_t last = 0;        ///< the last index in its log
  std::uint64_t lease_term = 0;  ///< the term in which it serves lease reads, 0 when it does not
  /// Leader: microseconds since the newest heartbeat round a quorum acknowledged was sent.
  std::optional<std::uint64_t> quorum_ack_age_us;
  std::vector<MemberStatus> members;  ///< the configuration in force, in the group's order

  bool leads() const noexcept { return role == "leader"; }
  /// The member `id`, or nullptr.
  const MemberStatus* member(std::uint64_t id) const noexcept {
    for (const auto& m : members) {
      if (m.id == id) {
        return &m;
      }
    }
    return nullptr;
  }

  friend bool operator==(const ShardStatus&, const ShardStatus&) = default;
};

/// A `status` answer in owning form.
struct NodeStatus {
  std::uint64_t node = 0;
  std::uint32_t shards = 0;
  std::vector<ShardStatus> groups;  ///< the shards reported, in shard order

  /// Shard `shard`'s report, or nullptr when the answer does not cover it.
  const ShardStatus* shard(std::uint32_t shard) const noexcept {
    for (const auto& g : groups) {
      if (g.shard == shard) {
        return &g;
      }
    }
    return nullptr;
  }

  friend bool operator==(const NodeStatus&, const NodeStatus&) = default;
};

/// Decodes the list of a `status` answer; nullopt when it is malformed (never for a view that
/// parse_response accepted). Allocates.
inline std::optional<NodeStatus> parse_node_status(const StatusView& view);

/// Appends a `groups=` list for `groups` (in shard order, each shard once; strings from the sets
/// above) to `out`.
inline void status_groups(std::span<const ShardStatus> groups, std::string& out);

// =============================================================================================
// Implementation.

namespace detail {

// Splits `line` at single spaces into at most N tokens. Returns the number of tokens, or N + 1
// when there are more than N; an empty token (two spaces in a row, a leading or trailing space,
// an empty line) makes it return 0.
template <std::size_t N>
constexpr std::size_t split(std::string_view line,
                            std::array<std::string_view, N>& tokens) noexcept {
  std::size_t count = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t space = line.find(' ', start);
    const std::size_t end = space == std::string_view::npos ? line.size() : space;
    if (end == start) {
      return 0;
    }
    if (count == N) {
      return N + 1;
    }
    tokens[count++] = line.substr(start, end - start);
    if (space == std::string_view::npos) {
      return count;
    }
    start = space + 1;
  }
}

// A canonical unsigned decimal: 1..20 digits, no sign, no leading zero unless it is "0", no
// overflow.
inline std::optional<std::uint64_t> parse_u64(std::string_view text) noexcept {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end) {
    return std::nullopt;
  }
  return value;
}

inline void append_u64(std::string& out, std::uint64_t value) {
  std::array<char, 20> digits;
  const auto [ptr, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  (void)ec;  // 20 digits hold every u64
  out.append(digits.data(), ptr);
}

inline std::string_view strip_newline(std::string_view line) noexcept {
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(1);
  }
  return line;
}

// A value, or `-` for absent.
inline std::optional<std::optional<std::string_view>> parse_optional_value(
    std::string_view token) noexcept {
  if (token == "-") {
    return std::optional<std::string_view>{};
  }
  if (!is_valid_value(token)) {
    return std::nullopt;
  }
  return std::optional<std::string_view>{token};
}

// Calls `f(item)` for each comma-separated item of `list`; stops and returns false at the first
// empty item or when `f` returns false. An empty list has one empty item, so it fails.
template <class F>
bool for_each_item(std::string_view list, F&& f) {
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = list.find(',', start);
    const std::size_t end = comma == std::string_view::npos ? list.size() : comma;
    if (end == start || !f(list.substr(start, end - start))) {
      return false;
    }
    if (comma == std::string_view::npos) {
      return true;
    }
    start = comma + 1;
  }
}

// Counts the leader ids of a `leaders=` list; 0 when it is malformed.
inline std::size_t count_leaders(std::string_view list) noexcept {
  std::size_t count = 0;
  const bool ok = for_each_item(list, [&](std::string_view item) {
    ++count;
    return count <= kMaxShards && parse_u64(item).has_value();
  });
  return ok ? count : 0;
}

// Splits `id@host:port`; nullopt when malformed.
inline std::optional<std::pair<std::uint64_t, std::string_view>> split_node_address(
    std::string_view item) noexcept {
  const std::size_t at = item.find('@');
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  const auto node = parse_u64(item.substr(0, at));
  const std::string_view address = item.substr(at + 1);
  if (!node || *node == 0 || !is_valid_address(address)) {
    return std::nullopt;
  }
  return std::pair{*node, address};
}

inline bool valid_addresses(std::string_view list) noexcept {
  return for_each_item(list,
                       [](std::string_view item) { return split_node_address(item).has_value(); });
}

inline bool valid_info(const InfoView& info) noexcept {
  return info.shards >= 1 && info.shards <= kMaxShards &&
         count_leaders(info.leaders) == info.shards && valid_addresses(info.addresses);
}

// An id list of a `members` answer: `-`, or 1..kMaxMembers non-zero ids.
inline bool valid_ids(std::string_view list) noexcept {
  if (list == "-") {
    return true;
  }
  std::size_t count = 0;
  return for_each_item(list, [&](std::string_view item) {
    const auto v = parse_u64(item);
    return ++count <= kMaxMembers && v && *v != 0;
  });
}

// Splits `id@host:raft/client`; nullopt when malformed.
inline std::optional<std::pair<std::uint64_t, std::string_view>> split_node_endpoint(
    std::string_view item) noexcept {
  const std::size_t at = item.find('@');
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  const auto node = parse_u64(item.substr(0, at));
  const std::string_view endpoint = item.substr(at + 1);
  if (!node || *node == 0 || !is_valid_endpoint(endpoint)) {
    return std::nullopt;
  }
  return std::pair{*node, endpoint};
}

inline bool valid_endpoints(std::string_view list) noexcept {
  if (list == "-") {
    return true;
  }
  std::size_t count = 0;
  return for_each_item(list, [&](std::string_view item) {
    return ++count <= 3 * kMaxMembers && split_node_endpoint(item).has_value();
  });
}

inline bool valid_members(const MembersView& m) noexcept {
  return m.shard < kMaxShards && valid_ids(m.voters) && m.voters != "-" && valid_ids(m.outgoing) &&
         valid_ids(m.learners) && valid_endpoints(m.nodes);
}

// ---- status ----

// `u64` or `-`.
inline bool parse_optional_u64(std::string_view text, std::optional<std::uint64_t>& out) noexcept {
  if (text == "-") {
    out.reset();
    return true;
  }
  const auto v = parse_u64(text);
  if (!v) {
    return false;
  }
  out = *v;
  return true;
}

inline void append_optional_u64(std::string& out, const std::optional<std::uint64_t>& v) {
  if (v) {
    append_u64(out, *v);
  } else {
    out += '-';
  }
}

inline bool one_of(std::string_view text, std::initializer_list<std::string_view> names) noexcept {
  for (const auto name : names) {
    if (text == name) {
      return true;
    }
  }
  return false;
}

// Splits `text` at `separator` into exactly N non-empty parts; false otherwise.
template <std::size_t N>
constexpr bool split_exactly(std::string_view text, char separator,
                             std::array<std::string_view, N>& parts) noexcept {
  std::size_t start = 0;
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t end = i + 1 == N ? text.size() : text.find(separator, start);
    if (end == std::string_view::npos || end == start ||
        (i + 1 == N && text.find(separator, start) != std::string_view::npos)) {
      return false;
    }
    parts[i] = text.substr(start, end - start);
    start = end + 1;
  }
  return true;
}

// Calls `f(item)` for each `separator`-separated item of `list`; false at the first empty item or
// when `f` returns false.
template <class F>
bool for_each_part(std::string_view list, char separator, F&& f) {
  std::size_t start = 0;
  while (true) {
    const std::size_t at = list.find(separator, start);
    const std::size_t end = at == std::string_view::npos ? list.size() : at;
    if (end == start || !f(list.substr(start, end - start))) {
      return false;
    }
    if (at == std::string_view::npos) {
      return true;
    }
    start = at + 1;
  }
}

// `id:kind:match:lag:ack_us:replication`; fills `out` when not null. Never allocates when `out`
// is null.
inline bool parse_member_status(std::string_view text, MemberStatus* out) {
  std::array<std::string_view, 6> f;
  if (!split_exactly(text, ':', f)) {
    return false;
  }
  const auto id = parse_u64(f[0]);
  std::optional<std::uint64_t> match;
  std::optional<std::uint64_t> lag;
  std::optional<std::uint64_t> ack;
  if (!id || *id == 0 || !one_of(f[1], {"voter", "learner", "leaving"}) ||
      !parse_optional_u64(f[2], match) || !parse_optional_u64(f[3], lag) ||
      !parse_optional_u64(f[4], ack) ||
      !one_of(f[5], {"probe", "replicate", "snapshot", "self", "-"})) {
    return false;
  }
  if (out != nullptr) {
    out->id = *id;
    out->kind = std::string(f[1]);
    out->match = match;
    out->lag = lag;
    out->ack_age_us = ack;
    out->replication = f[5] == "-" ? std::string() : std::string(f[5]);
  }
  return true;
}

// `shard,role,term,leader,commit,applied,last,lease_term,qack_us,members`; fills `out` when not
// null. Never allocates when `out` is null.
inline bool parse_shard_status(std::string_view text, ShardStatus* out) {
  std::array<std::string_view, 10> f;
  if (!split_exactly(text, ',', f)) {
    return false;
  }
  const auto shard = parse_u64(f[0]);
  std::array<std::uint64_t, 6> numbers{};
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    const auto v = parse_u64(f[2 + i]);
    if (!v) {
      return false;
    }
    numbers[i] = *v;
  }
  std::optional<std::uint64_t> qack;
  if (!shard || *shard >= kMaxShards ||
      !one_of(f[1], {"follower", "pre_candidate", "candidate", "leader", "stopped"}) ||
      !parse_optional_u64(f[8], qack)) {
    return false;
  }
  if (out != nullptr) {
    out->shard = static_cast<std::uint32_t>(*shard);
    out->role = std::string(f[1]);
    out->term = numbers[0];
    out->leader = numbers[1];
    out->commit = numbers[2];
    out->applied = numbers[3];
    out->last = numbers[4];
    out->lease_term = numbers[5];
    out->quorum_ack_age_us = qack;
    out->members.clear();
  }
  if (f[9] == "-") {
    return true;
  }
  std::size_t count = 0;
  return for_each_part(f[9], '+', [&](std::string_view item) {
    if (++count > kMaxMembers) {
      return false;
    }
    if (out == nullptr) {
      return parse_member_status(item, nullptr);
    }
    MemberStatus m;
    if (!parse_member_status(item, &m)) {
      return false;
    }
    out->members.push_back(std::move(m));
    return true;
  });
}

// Every group parses, shards strictly increasing and below `shards`.
inline bool valid_status(const StatusView& v) noexcept {
  if (v.shards < 1 || v.shards > kMaxShards) {
    return false;
  }
  std::int64_t previous = -1;
  return for_each_part(v.groups, ';', [&](std::string_view item) {
    const auto shard = parse_u64(item.substr(0, item.find(',')));
    if (!shard || static_cast<std::int64_t>(*shard) <= previous || *shard >= v.shards) {
      return false;
    }
    previous = static_cast<std::int64_t>(*shard);
    return parse_shard_status(item, nullptr);
  });
}

// Parses `name=<value>` for a known name; returns the value text or nullopt.
inline std::optional<std::string_view> field(std::string_view token,
                                             std::string_view name) noexcept {
  if (token.size() <= name.size() || token.substr(0, name.size()) != name ||
      token[name.size()] != '=') {
    return std::nullopt;
  }
  return token.substr(name.size() + 1);
}

}  // namespace detail

inline bool is_valid_address(std::string_view address) noexcept {
  if (address.size() < 3 || address.size() > kMaxAddressBytes) {
    return false;
  }
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  for (char c : address.substr(0, colon)) {
    if (c < 0x21 || c > 0x7e || c == ',' || c == '@') {
      return false;
    }
  }
  const auto port = detail::parse_u64(address.substr(colon + 1));
  return port && *port >= 1 && *port <= 65535;
}

inline std::optional<HostPort> split_address(std::string_view address) noexcept {
  if (!is_valid_address(address)) {
    return std::nullopt;
  }
  const std::size_t colon = address.rfind(':');
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return HostPort{host, static_cast<std::uint16_t>(*detail::parse_u64(address.substr(colon + 1)))};
}

inline bool is_valid_endpoint(std::string_view endpoint) noexcept {
  const std::size_t slash = endpoint.rfind('/');
  if (endpoint.size() > kMaxEndpointBytes || slash == std::string_view::npos ||
      !is_valid_address(endpoint.substr(0, slash))) {
    return false;
  }
  const auto port = detail::parse_u64(endpoint.substr(slash + 1));
  return port && *port >= 1 && *port <= 65535;
}

inline std::optional<Endpoint> split_endpoint(std::string_view endpoint) noexcept {
  if (!is_valid_endpoint(endpoint)) {
    return std::nullopt;
  }
  const std::size_t slash = endpoint.rfind('/');
  const std::string_view address = endpoint.substr(0, slash);
  const std::size_t colon = address.rfind(':');
  Endpoint e;
  e.host = address.substr(0, colon);
  e.raft_port = static_cast<std::uint16_t>(*detail::parse_u64(address.substr(colon + 1)));
  e.client_port = static_cast<std::uint16_t>(*detail::parse_u64(endpoint.substr(slash + 1)));
  return e;
}

inline bool is_valid(const Request& r) noexcept {
  switch (r.op) {
    case Op::put:
      return is_valid_key(r.key) && is_valid_value(r.value);
    case Op::get:
    case Op::del:
      return is_valid_key(r.key);
    case Op::cas:
      return is_valid_key(r.key) && is_valid_value(r.value) &&
             (!r.expected || is_valid_value(*r.expected));
    case Op::info:
    case Op::snapshot:
      return true;
    case Op::add_node:
      return r.shard < kMaxShards && r.node != 0 && is_valid_endpoint(r.endpoint);
    case Op::remove_node:
      return r.shard < kMaxShards && r.node != 0;
    case Op::members:
      return r.shard < kMaxShards;
    case Op::status:
      return r.shard < kMaxShards || r.shard == kAllShards;
  }
  return false;
}

inline bool is_valid(const Response& r) noexcept {
  switch (r.kind) {
    case ResponseKind::ok:
    case ResponseKind::none:
      return true;
    case ResponseKind::value:
      return is_valid_value(r.value);
    case ResponseKind::mismatch:
      return !r.current || is_valid_value(*r.current);
    case ResponseKind::info:
      return detail::valid_info(r.info);
    case ResponseKind::error:
      return name_of(r.code) != "?" && (r.leader.empty() || is_valid_address(r.leader));
    case ResponseKind::members:
      return detail::valid_members(r.members);
    case ResponseKind::status:
      return detail::valid_status(r.status);
  }
  return false;
}

inline Parsed<Request> parse_request(std::string_view line) noexcept {
  line = detail::strip_newline(line);
  if (line.size() > kMaxRequestLine) {
    return ParseError{0, "line too long"};
  }
  std::array<std::string_view, 5> t;
  const std::size_t n = detail::split(line, t);
  if (n == 0) {
    // The answer still carries the line's id when its first token is one ("5  get k lease").
    const auto first = detail::parse_u64(line.substr(0, line.find(' ')));
    return ParseError{first ? *first : 0, "empty token or line"};
  }
  const auto id = detail::parse_u64(t[0]);
  if (!id) {
    return ParseError{0, "bad id"};
  }
  const auto fail = [&](const char* reason) { return ParseError{*id, reason}; };
  if (n < 2) {
    return fail("missing op");
  }
  const auto arity = [&](std::size_t args) -> const char* {
    if (n < args + 2) {
      return "missing argument";
    }
    if (n > args + 2) {
      return "extra argument";
    }
    return nullptr;
  };
  const std::string_view op = t[1];
  if (op == "put") {
    if (const char* why = arity(2)) {
      return fail(why);
    }
    if (!is_valid_key(t[2])) {
      return fail("bad key");
    }
    if (!is_valid_value(t[3])) {
      return fail("bad value");
    }
    return Request::put(*id, t[2], t[3]);
  }
  if (op == "get") {
    if (const char* why = arity(2)) {
      return fail(why);
    }
    if (!is_valid_key(t[2])) {
      return fail("bad key");
    }
    const auto level = read_level_from_name(t[3]);
    if (!level) {
      return fail("bad read level");
    }
    return Request::get(*id, t[2], *level);
  }
  if (op == "del") {
    if (const char* why = arity(1)) {
      return fail(why);
    }
    if (!is_valid_key(t[2])) {
      return fail("bad key");
    }
    return Request::del(*id, t[2]);
  }
  if (op == "cas") {
    if (const char* why = arity(3)) {
      return fail(why);
    }
    if (!is_valid_key(t[2])) {
      return fail("bad key");
    }
    const auto expected = detail::parse_optional_value(t[3]);
    if (!expected) {
      return fail("bad expected value");
    }
    if (!is_valid_value(t[4])) {
      return fail("bad new value");
    }
    return Request::cas(*id, t[2], *expected, t[4]);
  }
  if (op == "info") {
    if (const char* why = arity(0)) {
      return fail(why);
    }
    return Request::info(*id);
  }
  if (op == "snapshot") {
    if (const char* why = arity(0)) {
      return fail(why);
    }
    return Request::snapshot(*id);
  }
  if (op == "status") {
    if (n == 2) {
      return Request::status(*id);
    }
    if (const char* why = arity(1)) {
      return fail(why);
    }
    const auto shard = detail::parse_u64(t[2]);
    if (!shard || *shard >= kMaxShards) {
      return fail("bad shard");
    }
    return Request::status(*id, static_cast<std::uint32_t>(*shard));
  }
  if (op == "add-node" || op == "remove-node" || op == "members") {
    const std::size_t args = op == "add-node" ? 3 : op == "remove-node" ? 2 : 1;
    if (const char* why = arity(args)) {
      return fail(why);
    }
    const auto shard = detail::parse_u64(t[2]);
    if (!shard || *shard >= kMaxShards) {
      return fail("bad shard");
    }
    const auto s = static_cast<std::uint32_t>(*shard);
    if (op == "members") {
      return Request::members(*id, s);
    }
    const auto node = detail::parse_u64(t[3]);
    if (!node || *node == 0) {
      return fail("bad node id");
    }
    if (op == "remove-node") {
      return Request::remove_node(*id, s, *node);
    }
    if (!is_valid_endpoint(t[4])) {
      return fail("bad endpoint");
    }
    return Request::add_node(*id, s, *node, t[4]);
  }
  return fail("unknown op");
}

inline void format_request(const Request& r, std::string& out) {
  assert(is_valid(r));
  detail::append_u64(out, r.id);
  out += ' ';
  out += name_of(r.op);
  switch (r.op) {
    case Op::put:
      out.append(" ").append(r.key).append(" ").append(r.value);
      break;
    case Op::get:
      out.append(" ").append(r.key).append(" ").append(name_of(r.level));
      break;
    case Op::del:
      out.append(" ").append(r.key);
      break;
    case Op::cas:
      out.append(" ").append(r.key).append(" ");
      out.append(r.expected ? *r.expected : std::string_view{"-"});
      out.append(" ").append(r.value);
      break;
    case Op::info:
    case Op::snapshot:
      break;
    case Op::status:
      if (r.shard != kAllShards) {
        out += ' ';
        detail::append_u64(out, r.shard);
      }
      break;
    case Op::add_node:
    case Op::remove_node:
    case Op::members:
      out += ' ';
      detail::append_u64(out, r.shard);
      if (r.op != Op::members) {
        out += ' ';
        detail::append_u64(out, r.node);
      }
      if (r.op == Op::add_node) {
        out.append(" ").append(r.endpoint);
      }
      break;
  }
  out += '\n';
}

inline Parsed<Response> parse_response(std::string_view line) noexcept {
  line = detail::strip_newline(line);
  if (line.size() > kMaxResponseLine) {
    return ParseError{0, "line too long"};
  }
  std::array<std::string_view, 9> t;
  const std::size_t n = detail::split(line, t);
  if (n == 0) {
    return ParseError{0, "empty token or line"};
  }
  const auto id = detail::parse_u64(t[0]);
  if (!id) {
    return ParseError{0, "bad id"};
  }
  const auto fail = [&](const char* reason) { return ParseError{*id, reason}; };
  if (n < 2) {
    return fail("missing kind");
  }
  const auto want = [&](std::size_t args) { return n == args + 2; };
  const std::string_view kind = t[1];
  if (kind == "ok") {
    return want(0) ? Parsed<Response>(Response::ok(*id)) : fail("wrong argument count");
  }
  if (kind == "value") {
    if (!want(2)) {
      return fail("wrong argument count");
    }
    const auto how = read_source_from_name(t[3]);
    if (!is_valid_value(t[2]) || !how) {
      return fail("bad value answer");
    }
    return Response::found(*id, t[2], *how);
  }
  if (kind == "none") {
    const auto how = want(1) ? read_source_from_name(t[2]) : std::nullopt;
    if (!how) {
      return fail("bad none answer");
    }
    return Response::absent(*id, *how);
  }
  if (kind == "mismatch") {
    const auto current = want(1) ? detail::parse_optional_value(t[2]) : std::nullopt;
    if (!current) {
      return fail("bad mismatch answer");
    }
    return Response::mismatch(*id, *current);
  }
  if (kind == "error") {
    if (!want(2)) {
      return fail("wrong argument count");
    }
    const auto code = errc_from_name(t[2]);
    if (!code) {
      return fail("unknown error code");
    }
    if (t[3] != "-" && !is_valid_address(t[3])) {
      return fail("bad leader address");
    }
    return Response::failure(*id, *code, t[3] == "-" ? std::string_view{} : t[3]);
  }
  if (kind == "info") {
    if (!want(4)) {
      return fail("wrong argument count");
    }
    const auto node = detail::field(t[2], "node");
    const auto shards = detail::field(t[3], "shards");
    const auto leaders = detail::field(t[4], "leaders");
    const auto addresses = detail::field(t[5], "addresses");
    if (!node || !shards || !leaders || !addresses) {
      return fail("bad info field");
    }
    const auto node_id = detail::parse_u64(*node);
    const auto shard_count = detail::parse_u64(*shards);
    if (!node_id || !shard_count || *shard_count == 0 || *shard_count > kMaxShards) {
      return fail("bad info node or shards");
    }
    const InfoView info{*node_id, static_cast<std::uint32_t>(*shard_count), *leaders, *addresses};
    if (!detail::valid_info(info)) {
      return fail("bad info lists");
    }
    return Response::cluster_info(*id, info);
  }
  if (kind == "members") {
    if (!want(7)) {
      return fail("wrong argument count");
    }
    const auto shard = detail::field(t[2], "shard");
    const auto index = detail::field(t[3], "index");
    const auto committed = detail::field(t[4], "committed");
    const auto voters = detail::field(t[5], "voters");
    const auto outgoing = detail::field(t[6], "outgoing");
    const auto learners = detail::field(t[7], "learners");
    const auto nodes = detail::field(t[8], "nodes");
    if (!shard || !index || !committed || !voters || !outgoing || !learners || !nodes) {
      return fail("bad members field");
    }
    const auto shard_id = detail::parse_u64(*shard);
    const auto config_index = detail::parse_u64(*index);
    if (!shard_id || *shard_id >= kMaxShards || !config_index ||
        (*committed != "yes" && *committed != "no")) {
      return fail("bad members shard, index or committed");
    }
    const MembersView m{static_cast<std::uint32_t>(*shard_id),
                        *config_index,
                        *committed == "yes",
                        *voters,
                        *outgoing,
                        *learners,
                        *nodes};
    if (!detail::valid_members(m)) {
      return fail("bad members lists");
    }
    return Response::shard_members(*id, m);
  }
  if (kind == "status") {
    if (!want(3)) {
      return fail("wrong argument count");
    }
    const auto node = detail::field(t[2], "node");
    const auto shards = detail::field(t[3], "shards");
    const auto groups = detail::field(t[4], "groups");
    if (!node || !shards || !groups) {
      return fail("bad status field");
    }
    const auto node_id = detail::parse_u64(*node);
    const auto shard_count = detail::parse_u64(*shards);
    if (!node_id || !shard_count || *shard_count == 0 || *shard_count > kMaxShards) {
      return fail("bad status node or shards");
    }
    const StatusView v{*node_id, static_cast<std::uint32_t>(*shard_count), *groups};
    if (!detail::valid_status(v)) {
      return fail("bad status groups");
    }
    return Response::node_status(*id, v);
  }
  return fail("unknown kind");
}

inline void format_response(const Response& r, std::string& out) {
  assert(is_valid(r));
  detail::append_u64(out, r.id);
  out += ' ';
  out += name_of(r.kind);
  switch (r.kind) {
    case ResponseKind::ok:
      break;
    case ResponseKind::value:
      out.append(" ").append(r.value).append(" ").append(name_of(r.how));
      break;
    case ResponseKind::none:
      out.append(" ").append(name_of(r.how));
      break;
    case ResponseKind::mismatch:
      out.append(" ").append(r.current ? *r.current : std::string_view{"-"});
      break;
    case ResponseKind::info:
      out.append(" node=");
      detail::append_u64(out, r.info.node);
      out.append(" shards=");
      detail::append_u64(out, r.info.shards);
      out.append(" leaders=").append(r.info.leaders);
      out.append(" addresses=").append(r.info.addresses);
      break;
    case ResponseKind::error:
      out.append(" ").append(name_of(r.code)).append(" ");
      out.append(r.leader.empty() ? std::string_view{"-"} : r.leader);
      break;
    case ResponseKind::members:
      out.append(" shard=");
      detail::append_u64(out, r.members.shard);
      out.append(" index=");
      detail::append_u64(out, r.members.index);
      out.append(" committed=").append(r.members.committed ? "yes" : "no");
      out.append(" voters=").append(r.members.voters);
      out.append(" outgoing=").append(r.members.outgoing);
      out.append(" learners=").append(r.members.learners);
      out.append(" nodes=").append(r.members.nodes);
      break;
    case ResponseKind::status:
      out.append(" node=");
      detail::append_u64(out, r.status.node);
      out.append(" shards=");
      detail::append_u64(out, r.status.shards);
      out.append(" groups=").append(r.status.groups);
      break;
  }
  out += '\n';
}

inline std::string_view ClusterInfo::address_of(std::uint64_t id) const noexcept {
  for (const auto& a : addresses) {
    if (id != 0 && a.node == id) {
      return a.address;
    }
  }
  return {};
}

inline std::optional<ClusterInfo> parse_cluster_info(const InfoView& view) {
  if (!detail::valid_info(view)) {
    return std::nullopt;
  }
  ClusterInfo info;
  info.node = view.node;
  info.leaders.reserve(view.shards);
  detail::for_each_item(view.leaders, [&](std::string_view item) {
    info.leaders.push_back(*detail::parse_u64(item));
    return true;
  });
  detail::for_each_item(view.addresses, [&](std::string_view item) {
    const auto split = *detail::split_node_address(item);
    info.addresses.push_back({split.first, std::string(split.second)});
    return true;
  });
  return info;
}

inline void leaders_list(std::span<const std::uint64_t> leaders, std::string& out) {
  for (std::size_t i = 0; i < leaders.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    detail::append_u64(out, leaders[i]);
  }
}

inline bool MembersInfo::contains(std::uint64_t node) const noexcept {
  for (const auto* list : {&voters, &outgoing, &learners}) {
    for (std::uint64_t id : *list) {
      if (id == node) {
        return true;
      }
    }
  }
  return false;
}

inline std::string_view MembersInfo::endpoint_of(std::uint64_t node) const noexcept {
  for (const auto& n : nodes) {
    if (n.node == node) {
      return n.endpoint;
    }
  }
  return {};
}

inline std::optional<MembersInfo> parse_members_info(const MembersView& view) {
  if (!detail::valid_members(view)) {
    return std::nullopt;
  }
  MembersInfo m;
  m.shard = view.shard;
  m.index = view.index;
  m.committed = view.committed;
  const auto ids = [](std::string_view list, std::vector<std::uint64_t>& out) {
    if (list != "-") {
      detail::for_each_item(list, [&](std::string_view item) {
        out.push_back(*detail::parse_u64(item));
        return true;
      });
    }
  };
  ids(view.voters, m.voters);
  ids(view.outgoing, m.outgoing);
  ids(view.learners, m.learners);
  if (view.nodes != "-") {
    detail::for_each_item(view.nodes, [&](std::string_view item) {
      const auto split = *detail::split_node_endpoint(item);
      m.nodes.push_back({split.first, std::string(split.second)});
      return true;
    });
  }
  return m;
}

inline void ids_list(std::span<const std::uint64_t> ids, std::string& out) {
  if (ids.empty()) {
    out += '-';
    return;
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    detail::append_u64(out, ids[i]);
  }
}

inline void endpoints_list(std::span<const NodeEndpoint> nodes, std::string& out) {
  if (nodes.empty()) {
    out += '-';
    return;
  }
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    detail::append_u64(out, nodes[i].node);
    out.append("@").append(nodes[i].endpoint);
  }
}

inline void addresses_list(std::span<const NodeAddress> addresses, std::string& out) {
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    detail::append_u64(out, addresses[i].node);
    out.append("@").append(addresses[i].address);
  }
}

inline std::optional<NodeStatus> parse_node_status(const StatusView& view) {
  if (!detail::valid_status(view)) {
    return std::nullopt;
  }
  NodeStatus status;
  status.node = view.node;
  status.shards = view.shards;
  detail::for_each_part(view.groups, ';', [&](std::string_view item) {
    ShardStatus g;
    detail::parse_shard_status(item, &g);
    status.groups.push_back(std::move(g));
    return true;
  });
  return status;
}

inline void status_groups(std::span<const ShardStatus> groups, std::string& out) {
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const ShardStatus& g = groups[i];
    if (i != 0) {
      out += ';';
    }
    detail::append_u64(out, g.shard);
    out.append(",").append(g.role).append(",");
    for (const std::uint64_t v : {g.term, g.leader, g.commit, g.applied, g.last, g.lease_term}) {
      detail::append_u64(out, v);
      out += ',';
    }
    detail::append_optional_u64(out, g.quorum_ack_age_us);
    out += ',';
    if (g.members.empty()) {
      out += '-';
    }
    for (std::size_t k = 0; k < g.members.size(); ++k) {
      const MemberStatus& m = g.members[k];
      if (k != 0) {
        out += '+';
      }
      detail::append_u64(out, m.id);
      out.append(":").append(m.kind).append(":");
      detail::append_optional_u64(out, m.match);
      out += ':';
      detail::append_optional_u64(out, m.lag);
      out += ':';
      detail::append_optional_u64(out, m.ack_age_us);
      out += ':';
      out.append(m.replication.empty() ? std::string_view("-") : std::string_view(m.replication));
    }
  }
}

}  // namespace tenure::kv
