// The Transport policy: how a group's messages leave it.
#pragma once

#include <concepts>
#include <cstddef>

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
/// - It may deliver at once: `send` may call the receiving group's RaftGroup::step() before it
///   returns, and that group may answer through its own transport into the sender's step(). A
///   group never runs two inputs at once: a step(), tick(), on_persisted() or flush() that
///   arrives while one of its inputs runs is deferred (a message is copied, into a buffer that
///   grows to its high-water mark) and runs before that input returns. So the stack holds each
///   group at most once. All of them must still be called on the groups' one thread: a transport
///   that delivers on another thread posts to the receiver's (AsioGroup's strand).
template <class T>
concept Transport = requires(T& t, const Message& m) {
  t.send(m);
};

/// A transport that can carry frames only up to a size (AsioTcpTransport: its max_frame_bytes
/// and per-peer queue) says so, and RaftGroup refuses at construction a configuration whose
/// largest append would not fit: such an append would be dropped on every send and replication
/// would stall without a word. `max_frame_bytes()` is the largest encoded message
/// (encoded_size(), codec.hpp) it carries. Optional.
template <class T>
concept ReportsFrameLimit = requires(const T& t) {
  { t.max_frame_bytes() }
  noexcept->std::convertible_to<std::size_t>;
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
