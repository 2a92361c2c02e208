// Membership: who votes and who only listens, in a simple or a joint configuration, and the
// bytes a configuration entry carries.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include <raft/codec.hpp>
#include <raft/errc.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// The members of a group at one point of its log (Raft thesis chapter 4).
///
/// - `voters` elect leaders and commit entries; a quorum is a majority of them.
/// - `outgoing` is non-empty only in a joint configuration (C_old,new): the voters being left.
///   While joint, every decision (commit, election, ReadIndex round, CheckQuorum, the lease)
///   needs a majority of `voters` *and* a majority of `outgoing`.
/// - `learners` receive the log and snapshots but never vote and never count towards a quorum.
///   A learner may also be in `outgoing` (a voter being demoted), never in `voters`.
///
/// A value type; copying allocates. Order within each list is kept as given.
struct Membership {
  std::vector<NodeId> voters;
  std::vector<NodeId> outgoing;
  std::vector<NodeId> learners;

  /// Whether this is a joint configuration.
  bool joint() const noexcept { return !outgoing.empty(); }
  /// Whether `id` votes in either configuration.
  bool is_voter(NodeId id) const noexcept { return has(voters, id) || has(outgoing, id); }
  bool is_learner(NodeId id) const noexcept { return has(learners, id); }
  /// Whether `id` is a member at all (voter of either configuration, or learner).
  bool contains(NodeId id) const noexcept { return is_voter(id) || is_learner(id); }
  /// How many distinct nodes are members.
  std::size_t size() const noexcept {
    std::size_t n = voters.size();
    for (NodeId id : outgoing) {
      n += has(voters, id) ? 0 : 1;
    }
    for (NodeId id : learners) {
      n += has(voters, id) || has(outgoing, id) ? 0 : 1;
    }
    return n;
  }

  /// errc::invalid_argument unless: `voters` is non-empty; no list names kNoNode or a node
  /// twice; no learner is in `voters`; and at most `max_members` distinct nodes are members.
  std::error_code validate(std::size_t max_members) const noexcept {
    const auto bad = make_error_code(errc::invalid_argument);
    if (voters.empty() || !distinct(voters) || !distinct(outgoing) || !distinct(learners)) {
      return bad;
    }
    for (NodeId id : learners) {
      if (has(voters, id)) {
        return bad;
      }
    }
    return size() <= max_members ? std::error_code{} : bad;
  }

  static bool has(const std::vector<NodeId>& set, NodeId id) noexcept {
    return std::find(set.begin(), set.end(), id) != set.end();
  }

  friend bool operator==(const Membership&, const Membership&) = default;

 private:
  static bool distinct(const std::vector<NodeId>& set) noexcept {
    for (std::size_t i = 0; i < set.size(); ++i) {
      if (set[i] == kNoNode) {
        return false;
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (set[j] == set[i]) {
          return false;
        }
      }
    }
    return true;
  }
};

/// Whether two simple configurations' voters differ by at most one node: such a change needs no
/// joint configuration (any majority of one intersects any majority of the other).
inline bool is_simple_change(const std::vector<NodeId>& from, const std::vector<NodeId>& to) {
  std::size_t changed = 0;
  for (NodeId id : from) {
    changed += Membership::has(to, id) ? 0 : 1;
  }
  for (NodeId id : to) {
    changed += Membership::has(from, id) ? 0 : 1;
  }
  return changed <= 1;
}

namespace detail {

// The encoding of a Membership: the payload of a config entry, the head of a snapshot's first
// chunk, and the configuration in a snapshot file.
//   0  u8  version (1)
//   1  u8  reserved, zero
//   2  u16 reserved, zero
//   4  u32 count of voters
//   8  u32 count of outgoing voters
//  12  u32 count of learners
//  16  u64 node ids: the voters, then the outgoing voters, then the learners
inline constexpr std::size_t kMembershipHeadBytes = 16;
inline constexpr std::uint8_t kMembershipVersion = 1;

inline std::size_t encoded_size(const Membership& m) noexcept {
  return kMembershipHeadBytes + 8 * (m.voters.size() + m.outgoing.size() + m.learners.size());
}

/// The most bytes a membership of at most `max_members` distinct nodes encodes to (a learner
/// may also be an outgoing voter, so a node may be listed twice).
constexpr std::size_t max_encoded_size(std::size_t max_members) noexcept {
  return kMembershipHeadBytes + 8 * 2 * max_members;
}

/// The bytes an encoded membership at the front of `in` occupies, read from its head alone (its
/// three counts), capped at `in.size()`; 0 when `in` is shorter than the head. For readers that
/// only skip it (the first snapshot chunk carries one ahead of the snapshot's bytes).
inline std::size_t encoded_size_at(std::span<const std::byte> in) noexcept {
  if (in.size() < kMembershipHeadBytes) {
    return 0;
  }
  const std::uint64_t ids = std::uint64_t{load_le<std::uint32_t>(in.data() + 4)} +
                            load_le<std::uint32_t>(in.data() + 8) +
                            load_le<std::uint32_t>(in.data() + 12);
  return static_cast<std::size_t>(
      std::min<std::uint64_t>(in.size(), kMembershipHeadBytes + 8 * ids));
}

/// Writes `m` at `out`, which has encoded_size(m) bytes; returns the bytes written.
inline std::size_t encode_membership(const Membership& m, std::byte* out) noexcept {
  std::fill(out, out + kMembershipHeadBytes, std::byte{0});
  out[0] = std::byte{kMembershipVersion};
  store_le<std::uint32_t>(out + 4, static_cast<std::uint32_t>(m.voters.size()));
  store_le<std::uint32_t>(out + 8, static_cast<std::uint32_t>(m.outgoing.size()));
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(m.learners.size()));
  std::byte* p = out + kMembershipHeadBytes;
  for (const auto* list : {&m.voters, &m.outgoing, &m.learners}) {
    for (NodeId id : *list) {
      store_le<std::uint64_t>(p, id);
      p += 8;
    }
  }
  return static_cast<std::size_t>(p - out);
}

inline std::vector<std::byte> encode_membership(const Membership& m) {
  std::vector<std::byte> out(encoded_size(m));
  encode_membership(m, out.data());
  return out;
}

/// Reads a membership from the front of `in` into `out`, reusing its lists' capacity (no
/// allocation when they are large enough): false, `out` unspecified, when the bytes are not one
/// (too short, an unknown version, non-zero reserved bytes, counts past the end or above
/// `max_members`). `used` receives the bytes it occupies. Never reads out of bounds.
inline bool decode_membership_into(std::span<const std::byte> in, std::size_t max_members,
                                   Membership& out, std::size_t* used = nullptr) {
  if (in.size() < kMembershipHeadBytes || in[0] != std::byte{kMembershipVersion} ||
      in[1] != std::byte{0} || in[2] != std::byte{0} || in[3] != std::byte{0}) {
    return false;
  }
  const std::uint64_t counts[3] = {load_le<std::uint32_t>(in.data() + 4),
                                   load_le<std::uint32_t>(in.data() + 8),
                                   load_le<std::uint32_t>(in.data() + 12)};
  if (counts[0] > max_members || counts[1] > max_members || counts[2] > max_members) {
    return false;
  }
  const std::size_t size =
      kMembershipHeadBytes + 8 * static_cast<std::size_t>(counts[0] + counts[1] + counts[2]);
  if (in.size() < size) {
    return false;
  }
  const std::byte* p = in.data() + kMembershipHeadBytes;
  std::vector<NodeId>* lists[3] = {&out.voters, &out.outgoing, &out.learners};
  for (int l = 0; l < 3; ++l) {
    lists[l]->clear();
    for (std::uint64_t i = 0; i < counts[l]; ++i) {
      lists[l]->push_back(load_le<std::uint64_t>(p));
      p += 8;
    }
  }
  if (used != nullptr) {
    *used = size;
  }
  return true;
}

/// As decode_membership_into, into a new Membership: nullopt when the bytes are not one.
inline std::optional<Membership> decode_membership(std::span<const std::byte> in,
                                                   std::size_t max_members,
                                                   std::size_t* used = nullptr) {
  Membership m;
  if (!decode_membership_into(in, max_members, m, used)) {
    return std::nullopt;
  }
  return m;
}

}  // namespace detail

}  // namespace tenure::raft
