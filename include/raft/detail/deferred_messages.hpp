// DeferredMessages: messages handed to a group while it was busy with another input, kept (copied)
// until that input ends.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include <raft/codec.hpp>
#include <raft/message.hpp>

namespace tenure::raft::detail {

/// A FIFO of copied messages. A message is kept as its wire frame (codec.hpp), so that its entries'
/// payloads, views into the sender's log during Transport::send, outlive the call.
///
/// Messages pushed while drain() runs join the same drain, after the ones before them: drain()
/// returns only once the queue is empty. Two buffers take turns, so that a push during a drain
/// never moves the bytes the message being handled points into.
///
/// Allocation: only when a buffer grows past its high-water mark; nothing once warm.
/// Thread-safety: none; the owning group's thread.
class DeferredMessages {
 public:
  bool empty() const noexcept { return incoming_.frames.empty(); }

  /// Copies `m`. A message the codec cannot encode (no group builds one) is dropped, as a
  /// transport may drop any message.
  void push(const Message& m) {
    const std::size_t size = raft::encoded_size(m);
    const std::size_t at = incoming_.bytes.size();
    incoming_.bytes.resize(at + size);
    if (!raft::encode(m, std::span<std::byte>(incoming_.bytes).subspan(at))) {
      incoming_.bytes.resize(at);
      return;
    }
    incoming_.frames.push_back(Frame{at, size});
    most_entries_ = std::max(most_entries_, m.entries.size());
  }

  /// Hands every message to `handle`, in the order pushed, those pushed meanwhile included.
  template <class F>
  void drain(F&& handle) {
    while (!incoming_.frames.empty()) {
      std::swap(incoming_, draining_);
      if (scratch_.size() < most_entries_) {
        scratch_.resize(most_entries_);
      }
      for (const Frame& frame : draining_.frames) {
        const auto bytes =
            std::span<const std::byte>(draining_.bytes).subspan(frame.at, frame.size);
        if (auto m = raft::decode(bytes, scratch_)) {
          handle(m.value());
        }
      }
      draining_.bytes.clear();
      draining_.frames.clear();
    }
  }

 private:
  struct Frame {
    std::size_t at = 0;
    std::size_t size = 0;
  };
  struct Buffer {
    std::vector<std::byte> bytes;
    std::vector<Frame> frames;
  };

  Buffer incoming_;
  Buffer draining_;
  std::vector<EntryView> scratch_;
  std::size_t most_entries_ = 0;
};

}  // namespace tenure::raft::detail
