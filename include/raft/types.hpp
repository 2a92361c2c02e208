// Vocabulary types shared by every layer of tenure.
#pragma once

#include <cstdint>

namespace tenure::raft {

/// Identifies a member of a Raft group. Chosen by the user; unique within a group.
/// The value 0 is reserved for "no node" (`kNoNode`), e.g. an unknown leader.
using NodeId = std::uint64_t;

/// A Raft term (paper section 5.1). Starts at 0 and only ever grows.
using Term = std::uint64_t;

/// A position in the replicated log. Index 0 is the empty prefix; the first entry is index 1.
using LogIndex = std::uint64_t;

/// "No node": an unknown leader, a vote not yet cast.
inline constexpr NodeId kNoNode = 0;

}  // namespace tenure::raft
