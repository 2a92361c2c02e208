// The Transport policy: how a group's messages leave it.
#pragma once

#include <concepts>

#include <raft/message.hpp>

namespace tenure::raft {

/// Sends messages to peers. Delivery comes back into the receiving group through
/// RaftGroup::step().
///
/// Semantics the compiler cannot check:
/// - `send` does not block and does not throw; it may drop the message (a full queue, a broken
///   connection): Raft retransmits what matters;
/// - it copies what it keeps before returning: the message's entries are views into the
///   sender's log, valid only during the call;
/// - `message.to` names the peer and `message.group` the group, for transports that multiplex.
template <class T>
concept Transport = requires(T& t, const Message& m) {
  t.send(m);
};

namespace detail {

template <class T>
consteval bool check_transport() {
  static_assert(
      requires(T & t, const Message& m) { t.send(m); },
      "tenure: the Transport policy needs `void send(const tenure::raft::Message&)` "
      "(non-blocking, may drop, copies what it keeps)");
  return Transport<T>;
}

}  // namespace detail

}  // namespace tenure::raft
