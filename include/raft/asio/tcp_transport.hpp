// AsioTcpTransport: Raft messages between nodes over TCP on Boost.Asio, many groups multiplexed
// over one connection per peer pair (multi-raft).
//
// Wire format of a connection (all integers little-endian):
// - each side first writes a hello of 13 bytes: the magic "TNR1", a u8 version (1) and the u64
//   NodeId of the sender; then reads the other side's hello;
// - then frames in both directions: a u32 length followed by that many bytes, one codec frame
//   (<raft/codec.hpp>, docs/wire-format.md). A length of 0 or above max_frame_bytes is malformed.
//
// A bad hello, a bad length or a frame the codec refuses closes that one connection with a
// logged error (peer and reason) and counts malformed_frames; other connections and groups go on.
//
// With TLS (options.tls, in a build with TENURE_WITH_TLS) every connection is mutual TLS: each
// side presents a certificate that must chain to the cluster CA, and the subject common name of
// the other side's certificate must be "node-<id>" for exactly the id its hello claims;
// otherwise the connection is closed before any frame is read (Stats::tls_refused). Without TLS
// this transport trusts its network (docs/runtime.md, "Security"): a hello names a node id,
// nothing proves it. What it does check: a hello must name a peer configured with
// set_peer() and not removed since (anything else is refused and creates nothing), every frame's
// `from` must be the node the connection's hello named, at most max_inbound_connections accepted
// connections are open at once, and a frame's buffer grows only as its bytes arrive.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

#include <raft/asio/tls.hpp>
#include <raft/codec.hpp>
#include <raft/errc.hpp>
#include <raft/message.hpp>
#include <raft/random.hpp>
#include <raft/result.hpp>
#include <raft/types.hpp>

namespace tenure::raft::asio {

/// How an AsioTcpTransport listens, dials and bounds its memory.
struct TcpTransportOptions {
  /// This node. Must not be kNoNode: it is sent in the hello and decides who dials whom.
  NodeId self = kNoNode;
  /// Where to listen. Port 0 picks an ephemeral port; local_endpoint() tells which.
  ::boost::asio::ip::tcp::endpoint listen{::boost::asio::ip::make_address("127.0.0.1"), 0};
  /// Per peer: bytes of frames queued (including the one being written). Past it send() drops
  /// the message and counts dropped_queue_full.
  std::size_t max_queue_bytes = std::size_t{16} << 20;
  /// Per peer: frames queued (including those being written); past it send() drops and counts.
  std::size_t max_queue_frames = 8192;
  /// A received length above this is malformed; send() drops (dropped_invalid) a message whose
  /// frame would exceed it.
  std::size_t max_frame_bytes = std::size_t{64} << 20;
  /// The most entries one received frame may carry. Decode scratch grows on demand up to this; a
  /// frame with more entries is malformed.
  std::size_t max_entries_per_frame = 65536;
  /// Reconnect delays: exponential backoff from reconnect_min, doubling up to reconnect_max, each
  /// delay drawn uniformly in [d/2, d] (jitter), back to reconnect_min after a connection that
  /// carried frames from the peer (one it closes right after the hellos does not count).
  std::chrono::milliseconds reconnect_min{10};
  std::chrono::milliseconds reconnect_max{1000};
  /// Accepted connections open at once (hello pending or established); one more is closed at
  /// once and counted in refused_connections.
  std::size_t max_inbound_connections = 64;
  /// An accepted connection whose hello has not arrived within this is closed (a connection that
  /// never speaks would hold one of max_inbound_connections for ever). With TLS, the handshake
  /// counts against it too.
  std::chrono::milliseconds hello_timeout{5000};
  /// Mutual TLS on every connection (see the top of this file). Needs a build with
  /// TENURE_WITH_TLS; without it the constructor refuses TLS with errc::invalid_config.
  std::optional<TlsFiles> tls;
  /// Idle frame buffers of 1 MiB and more that the pool keeps for reuse, in bytes; a large buffer
  /// released past it goes back to the system.
  std::size_t max_pooled_bytes = std::size_t{64} << 20;
  /// After a failed accept (out of descriptors: EMFILE, ENFILE; out of buffers), how long to wait
  /// before accepting again. The condition usually persists for a while; retrying at once would
  /// spin a core and flood the log.
  std::chrono::milliseconds accept_retry{100};
  /// Receives one line per error and connection event. May be empty. Called from I/O handlers
  /// (any thread running the io_context) and from set_peer(); must be thread-safe and must not
  /// call back into the transport.
  std::function<void(std::string_view)> log;
};

namespace detail {

inline constexpr std::array<std::byte, 4> kHelloMagic{std::byte{'T'}, std::byte{'N'},
                                                      std::byte{'R'}, std::byte{'1'}};
inline constexpr std::uint8_t kHelloVersion = 1;
inline constexpr std::size_t kHelloSize = 4 + 1 + 8;
inline constexpr std::size_t kLengthPrefixSize = 4;
/// The most queued frames one gather write hands to the socket.
inline constexpr std::size_t kMaxGather = 32;

/// Fixed slots of memory for Asio's handler and operation objects, so that steady-state I/O
/// allocates nothing: each owner (a connection, a frame in flight) has at most a few operations
/// outstanding at once. A request that finds no free slot large enough falls back to the heap
/// and is counted, which the zero-allocation test pins at zero.
///
/// Thread-safety: allocate and deallocate may run on different threads (an operation is freed
/// where it completes); each slot's flag is an atomic handed over with acquire/release.
class HandlerArena {
 public:
  HandlerArena(const HandlerArena&) = delete;
  HandlerArena& operator=(const HandlerArena&) = delete;

  void* allocate(std::size_t size) {
    if (size <= slot_size_) {
      for (std::size_t i = 0; i < slots_; ++i) {
        if (!used_[i].load(std::memory_order_relaxed) &&
            !used_[i].exchange(true, std::memory_order_acquire)) {
          return storage_ + i * slot_size_;
        }
      }
    }
    if (fallbacks_ != nullptr) {
      fallbacks_->fetch_add(1, std::memory_order_relaxed);
    }
    return ::operator new(size);
  }

  void deallocate(void* p, std::size_t /*size*/) noexcept {
    auto* b = static_cast<std::byte*>(p);
    if (b >= storage_ && b < storage_ + slots_ * slot_size_) {
      used_[static_cast<std::size_t>(b - storage_) / slot_size_].store(false,
                                                                       std::memory_order_release);
    } else {
      ::operator delete(p);
    }
  }

  /// Where heap fallbacks are counted (may be null).
  void count_fallbacks_in(std::atomic<std::uint64_t>* counter) noexcept { fallbacks_ = counter; }

 protected:
  HandlerArena(std::byte* storage, std::atomic<bool>* used, std::size_t slots,
               std::size_t slot_size) noexcept
      : storage_(storage), used_(used), slots_(slots), slot_size_(slot_size) {}
  ~HandlerArena() = default;

 private:
  std::byte* storage_;
  std::atomic<bool>* used_;
  std::size_t slots_;
  std::size_t slot_size_;
  std::atomic<std::uint64_t>* fallbacks_ = nullptr;
};

template <std::size_t Slots, std::size_t SlotSize>
class HandlerMemory final : public HandlerArena {
  static_assert(SlotSize % alignof(std::max_align_t) == 0);

 public:
  HandlerMemory() noexcept : HandlerArena(storage_, used_, Slots, SlotSize) {}

 private:
  alignas(std::max_align_t) std::byte storage_[Slots * SlotSize];
  std::atomic<bool> used_[Slots] = {};
};

/// The allocator Asio finds through associated_allocator: it draws from a HandlerArena.
template <class T>
class HandlerAllocator {
 public:
  using value_type = T;

  explicit HandlerAllocator(HandlerArena* arena) noexcept : arena_(arena) {}
  template <class U>
  HandlerAllocator(const HandlerAllocator<U>& other) noexcept : arena_(other.arena()) {}

  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= alignof(std::max_align_t), "over-aligned handler");
    return static_cast<T*>(arena_->allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { arena_->deallocate(p, n * sizeof(T)); }

  HandlerArena* arena() const noexcept { return arena_; }

  template <class U>
  bool operator==(const HandlerAllocator<U>& other) const noexcept {
    return arena_ == other.arena();
  }
  template <class U>
  bool operator!=(const HandlerAllocator<U>& other) const noexcept {
    return arena_ != other.arena();
  }

 private:
  HandlerArena* arena_;
};

/// The strand every connection runs on.
using ConnectionStrand = ::boost::asio::strand<::boost::asio::io_context::executor_type>;

/// A completion handler of a connection: runs on the connection's strand and keeps Asio's
/// operation objects in the connection's HandlerArena. Boost 1.74 allocates socket operations
/// through the asio_handler_allocate hook and executor operations through the associated
/// allocator, so the handler provides both (and is not wrapped in bind_executor, which would
/// hide the hook).
template <class F>
class ConnectionHandler {
 public:
  using executor_type = ConnectionStrand;
  using allocator_type = HandlerAllocator<void>;

  ConnectionHandler(const ConnectionStrand& strand, HandlerArena* arena, F f)
      : strand_(strand), arena_(arena), f_(std::move(f)) {}

  executor_type get_executor() const noexcept { return strand_; }
  allocator_type get_allocator() const noexcept { return allocator_type(arena_); }

  template <class... Args>
  void operator()(Args&&... args) {
    f_(std::forward<Args>(args)...);
  }

#if !defined(BOOST_ASIO_NO_DEPRECATED)
  friend void* asio_handler_allocate(std::size_t size, ConnectionHandler* h) {
    return h->arena_->allocate(size);
  }
  friend void asio_handler_deallocate(void* p, std::size_t size, ConnectionHandler* h) {
    h->arena_->deallocate(p, size);
  }
#endif

 private:
  ConnectionStrand strand_;
  HandlerArena* arena_;
  F f_;
};

/// One frame's bytes, pooled. `memory` holds the operation that carries the frame to its group's
/// executor, so a delivery allocates nothing either.
struct Frame {
  std::vector<std::byte> bytes;  // 2^size_class bytes; the first `size` are the frame
  std::size_t size = 0;
  std::size_t size_class = 0;
  HandlerMemory<2, 256> memory;
};

/// Free lists of frame buffers shared by every connection and sender of one transport, one list
/// per power-of-two size class, so a burst of large frames never finds its buffers taken by
/// small ones: each class grows to the most frames of its size in flight at once and then only
/// recycles, so steady state allocates nothing (and a buffer wastes less than half its bytes).
/// Frames stay owned by the pool until it is destroyed.
///
/// Thread-safety: acquire and release from any thread (one mutex, held for a pointer move).
class FramePool {
 public:
  explicit FramePool(std::atomic<std::uint64_t>* fallbacks,
                     std::size_t max_idle_large_bytes = std::size_t{64} << 20) noexcept
      : fallbacks_(fallbacks), max_idle_large_bytes_(max_idle_large_bytes) {}

  /// A frame with room for `size` bytes and size == size. Throws std::bad_alloc.
  Frame* acquire(std::size_t size) {
    const std::size_t cls = std::max<std::size_t>(
        kMinClass, static_cast<std::size_t>(std::bit_width(size == 0 ? 0 : size - 1)));
    std::lock_guard lock(mutex_);
    std::vector<Frame*>& free = free_[cls];
    Frame* frame = nullptr;
    if (free.empty()) {
      auto fresh = std::make_unique<Frame>();
      fresh->bytes.resize(std::size_t{1} << cls);
      fresh->size_class = cls;
      fresh->memory.count_fallbacks_in(fallbacks_);
      all_.push_back(std::move(fresh));
      frame = all_.back().get();
      ++created_[cls];
      free.reserve(created_[cls]);  // so that release() never allocates
    } else {
      frame = free.back();
      free.pop_back();
      if (cls >= kLargeClass) {
        idle_large_bytes_ -= std::size_t{1} << cls;
      }
    }
    frame->size = size;
    return frame;
  }

  /// Back to the free list; a large buffer (1 MiB and more) past the pool's idle allowance goes
  /// back to the system instead, so a burst of large frames does not hold its memory for ever.
  void release(Frame* frame) noexcept {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = std::size_t{1} << frame->size_class;
    if (frame->size_class >= kLargeClass) {
      if (idle_large_bytes_ + bytes > max_idle_large_bytes_) {
        const auto it =
            std::find_if(all_.begin(), all_.end(),
                         [&](const std::unique_ptr<Frame>& f) { return f.get() == frame; });
        if (it != all_.end()) {
          std::swap(*it, all_.back());
          all_.pop_back();  // frees it
          --created_[frame->size_class];
          return;
        }
      }
      idle_large_bytes_ += bytes;
    }
    free_[frame->size_class].push_back(frame);
  }

  /// Bytes of large buffers (1 MiB and more) held idle for reuse.
  std::size_t idle_large_bytes() const {
    std::lock_guard lock(mutex_);
    return idle_large_bytes_;
  }

  /// Bytes of every buffer the pool owns, in use or idle.
  std::size_t allocated_bytes() const {
    std::lock_guard lock(mutex_);
    std::size_t total = 0;
    for (const auto& f : all_) {
      total += f->bytes.size();
    }
    return total;
  }

 private:
  static constexpr std::size_t kMinClass = 8;     // 256 bytes: a header-only frame and its prefix
  static constexpr std::size_t kLargeClass = 20;  // 1 MiB
  static constexpr std::size_t kClasses = 33;     // up to 4 GiB, past any u32 length

  std::atomic<std::uint64_t>* fallbacks_;
  const std::size_t max_idle_large_bytes_;
  mutable std::mutex mutex_;
  std::size_t idle_large_bytes_ = 0;                // guarded by mutex_
  std::vector<std::unique_ptr<Frame>> all_;         // guarded by mutex_
  std::array<std::vector<Frame*>, kClasses> free_;  // guarded by mutex_
  std::array<std::size_t, kClasses> created_{};     // guarded by mutex_
};

/// A peer's bounded send queue: a ring of frames allocated once, at its full capacity.
/// Not synchronised: the owner guards it.
class FrameQueue {
 public:
  explicit FrameQueue(std::size_t capacity) : slots_(std::max<std::size_t>(capacity, 1)) {}

  /// Appends unless that would pass either bound; false when it did not.
  bool push(Frame* frame, std::size_t max_bytes) noexcept {
    if (count_ == slots_.size() || bytes_ + frame->size > max_bytes) {
      return false;
    }
    slots_[(head_ + count_) % slots_.size()] = frame;
    ++count_;
    bytes_ += frame->size;
    return true;
  }
  Frame* pop_front() noexcept {
    Frame* frame = slots_[head_];
    head_ = (head_ + 1) % slots_.size();
    --count_;
    bytes_ -= frame->size;
    return frame;
  }
  Frame* at(std::size_t i) const noexcept { return slots_[(head_ + i) % slots_.size()]; }
  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }

 private:
  std::vector<Frame*> slots_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
};

/// decode() with a scratch that grows on demand (errc::overloaded) up to `max_entries`; a frame
/// with more entries stays errc::overloaded, which the caller treats as malformed. Allocates only
/// when a frame carries more entries than any before it on this scratch.
inline Result<Message> decode_growing(std::span<const std::byte> frame,
                                      std::vector<EntryView>& scratch,
                                      std::size_t max_entries) noexcept {
  for (;;) {
    Result<Message> r = decode(frame, scratch);
    if (r || r.code() != make_error_code(errc::overloaded) || scratch.size() >= max_entries) {
      return r;
    }
    const std::size_t count =
        raft::detail::load_le<std::uint32_t>(frame.data() + raft::detail::kOffEntryCount);
    if (count > max_entries) {
      return r;
    }
    try {
      scratch.resize(std::min(max_entries, std::max(count, scratch.size() * 2)));
    } catch (const std::bad_alloc&) {
      return r;
    }
  }
}

class DeliveryHandler;

/// A group's receiving side: its executor, its callback and the decode scratch used only there.
class GroupSink {
 public:
  GroupSink(std::function<void(const Message&)> deliver, std::size_t max_entries)
      : deliver_(std::move(deliver)), max_entries_(max_entries) {}
  GroupSink(const GroupSink&) = delete;
  GroupSink& operator=(const GroupSink&) = delete;
  virtual ~GroupSink() = default;

  /// Posts `handler` to the group's executor.
  virtual void post(DeliveryHandler&& handler) = 0;

  /// On the group's executor: decodes `frame` into this group's scratch and delivers it, unless
  /// the group was removed meanwhile.
  void deliver(const Frame& frame) {
    if (removed_.load(std::memory_order_acquire)) {
      return;
    }
    Result<Message> r = decode_growing(std::span<const std::byte>(frame.bytes.data(), frame.size),
                                       scratch_, max_entries_);
    if (r) {  // validated on the I/O side; fails only if growing the scratch ran out of memory
      deliver_(r.value());
    }
  }

  void mark_removed() noexcept { removed_.store(true, std::memory_order_release); }

 private:
  std::function<void(const Message&)> deliver_;
  std::size_t max_entries_;
  std::vector<EntryView> scratch_;  // only on the group's executor
  std::atomic<bool> removed_{false};
};

/// Carries one received frame to its group's executor; its operation lives in the frame.
class DeliveryHandler {
 public:
  using allocator_type = HandlerAllocator<void>;

  DeliveryHandler(std::shared_ptr<GroupSink> sink, Frame* frame, FramePool* pool) noexcept
      : sink_(std::move(sink)), frame_(frame), pool_(pool) {}
  DeliveryHandler(DeliveryHandler&& other) noexcept
      : sink_(std::move(other.sink_)),
        frame_(std::exchange(other.frame_, nullptr)),
        pool_(other.pool_) {}
  DeliveryHandler& operator=(DeliveryHandler&&) = delete;
  /// A handler destroyed without running (its io_context destroyed) still returns its frame.
  ~DeliveryHandler() {
    if (frame_ != nullptr) {
      pool_->release(frame_);
    }
  }

  allocator_type get_allocator() const noexcept { return allocator_type(&frame_->memory); }

  void operator()() {
    Frame* frame = frame_;
    struct Release {
      DeliveryHandler* self;
      Frame* frame;
      ~Release() {
        self->frame_ = nullptr;
        self->pool_->release(frame);
      }
    } release{this, frame};
    sink_->deliver(*frame);
  }

 private:
  std::shared_ptr<GroupSink> sink_;
  Frame* frame_;
  FramePool* pool_;
};

template <class Executor>
class GroupSinkOn final : public GroupSink {
 public:
  GroupSinkOn(Executor executor, std::function<void(const Message&)> deliver,
              std::size_t max_entries)
      : GroupSink(std::move(deliver), max_entries), executor_(std::move(executor)) {}

  void post(DeliveryHandler&& handler) override {
    ::boost::asio::post(executor_, std::move(handler));
  }

 private:
  Executor executor_;
};

}  // namespace detail

/// Carries Raft messages between nodes over TCP for every group of this node (multi-raft): one
/// connection per peer pair, shared by all groups in both directions.
///
/// Connections: the node with the lower NodeId dials the higher; the higher only accepts (it may
/// still be told the lower one's endpoint: set_peer() is accepted for every peer). A failed or
/// broken dialed connection is retried with exponential backoff and jitter. An accepted
/// connection from a peer that already has one replaces the old one, which is closed.
///
/// Sending: send() encodes the message at once into a pooled buffer and appends it to the peer's
/// bounded queue; one gather write per connection drains the queue. While a peer is not
/// connected its queue keeps filling up to the bounds, so a brief reconnect loses little; past
/// them messages are dropped and counted (Raft retransmits what matters). Frames being written
/// when a connection breaks are lost. A message to this node itself (m.to == self), to a node
/// never named by set_peer() nor connected, or to one removed by remove_peer() is dropped and
/// counted as dropped_unknown_peer: a RaftGroup never addresses itself.
///
/// Peers come and go at run time (membership changes): set_peer() may name a new peer, or a new
/// endpoint for a known one, at any time, before or after start(); remove_peer() forgets one
/// (closes its connection, stops dialing it, drops what was queued for it and refuses its
/// hellos) until set_peer() names it again.
///
/// Receiving: frames are read into pooled buffers and validated by the codec on the connection's
/// strand, then posted to the executor of the group they address, where they are decoded again
/// into that group's own scratch and handed to its `deliver` callback. Messages from one peer to
/// one group arrive in the order sent.
///
/// Allocation: connections, peers and groups allocate when created; after that, sending and
/// receiving reuse pooled frame buffers (grown only at a new largest frame), per-peer queue rings
/// allocated once, and per-connection / per-frame slots for Asio's operations: no allocation
/// per message in steady state. Stats::handler_fallbacks counts the operations that did not fit a
/// slot and went to the heap.
///
/// Threads: the io_context may be run by any number of threads. Each connection and each peer's
/// dialer has a strand; send(), set_peer(), remove_peer(), add_group(), remove_group(), stats(),
/// start() and stop() may be called from any thread.
///
/// Lifetime: handlers posted to the io_context refer to the transport. Call stop() and let the
/// io_context run until it has no more work from the transport (run() returns) before
/// destroying the transport; the group executors' pending deliveries must have run too.
class AsioTcpTransport {
  class Connection;
  struct Peer;

 public:
  /// Counters since construction. Each is read atomically, but not all at one instant.
  struct Stats {
    std::uint64_t frames_sent = 0;
    std::uint64_t frames_received = 0;
    std::uint64_t bytes_sent = 0;      // including the 4-byte length prefixes
    std::uint64_t bytes_received = 0;  // including the 4-byte length prefixes
    std::uint64_t dropped_queue_full = 0;
    std::uint64_t dropped_unknown_peer = 0;
    std::uint64_t dropped_unknown_group = 0;
    /// A bad hello, a bad length or a frame the codec refused; each closed its connection.
    std::uint64_t malformed_frames = 0;
    /// Connections established (hello exchanged), and established ones that closed.
    std::uint64_t connects = 0;
    std::uint64_t disconnects = 0;
    /// send(): the message could not be encoded, its frame would exceed max_frame_bytes, or
    /// memory ran out.
    std::uint64_t dropped_invalid = 0;
    /// send() after stop().
    std::uint64_t dropped_stopped = 0;
    /// Asio operations that found no free preallocated slot and went to the heap.
    std::uint64_t handler_fallbacks = 0;
    /// accept() failures (each followed by a pause of accept_retry).
    std::uint64_t accept_failures = 0;
    /// Accepted connections closed at once: max_inbound_connections were open.
    std::uint64_t refused_connections = 0;
    /// Hellos naming a node that is not a configured peer, or one removed by remove_peer() (each
    /// closed its connection, counted in malformed_frames too).
    std::uint64_t unknown_hellos = 0;
    /// Frames whose `from` was not the node the connection's hello named (each closed its
    /// connection, counted in malformed_frames too).
    std::uint64_t wrong_sender = 0;
    /// Bytes of the frame buffers the transport owns now, in use or idle (a gauge).
    std::uint64_t pool_bytes = 0;
    /// Connections closed for TLS: a failed handshake (no certificate, one from another CA, a
    /// peer without TLS) or a certificate that names another node than the hello.
    std::uint64_t tls_refused = 0;
  };

  /// Opens, binds and listens on options.listen at once (so local_endpoint() is known before
  /// start()). Throws std::system_error when it cannot, and errc::invalid_config when
  /// options.self is kNoNode.
  AsioTcpTransport(::boost::asio::io_context& io, TcpTransportOptions options)
      : io_(io),
        options_(std::move(options)),
        pool_(&stats_.handler_fallbacks, options_.max_pooled_bytes),
        acceptor_(io),
        accept_strand_(::boost::asio::make_strand(io)),
        accept_timer_(accept_strand_) {
    if (options_.self == kNoNode) {
      throw std::system_error(make_error_code(errc::invalid_config),
                              "AsioTcpTransport: options.self must name this node");
    }
    options_.reconnect_min = std::max(options_.reconnect_min, std::chrono::milliseconds{1});
    options_.reconnect_max = std::max(options_.reconnect_max, options_.reconnect_min);
    if (options_.tls) {
#if defined(TENURE_WITH_TLS)
      tls_context_.emplace(make_tls_context(*options_.tls));
#else
      throw std::system_error(make_error_code(errc::invalid_config),
                              "AsioTcpTransport: options.tls needs a build with TENURE_WITH_TLS "
                              "(CMake: link tenure::tls)");
#endif
    }
    ::boost::system::error_code ec;
    acceptor_.open(options_.listen.protocol(), ec);
    if (!ec) {
      acceptor_.set_option(::boost::asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      acceptor_.bind(options_.listen, ec);
    }
    if (!ec) {
      acceptor_.listen(::boost::asio::socket_base::max_listen_connections, ec);
    }
    if (!ec) {
      local_ = acceptor_.local_endpoint(ec);
    }
    if (ec) {
      throw std::system_error(ec.value(), std::system_category(),
                              "AsioTcpTransport: cannot listen on " + to_string(options_.listen));
    }
  }

  AsioTcpTransport(const AsioTcpTransport&) = delete;
  AsioTcpTransport& operator=(const AsioTcpTransport&) = delete;

  /// Precondition: stop() was called and the io_context ran out of this transport's handlers.
  ~AsioTcpTransport() = default;

  /// The address the transport listens on (its port, when options.listen had port 0).
  /// Thread-safety: any thread. Allocation: none.
  ::boost::asio::ip::tcp::endpoint local_endpoint() const {
    return local_;
  }

  /// The largest message (its encoded_size()) send() can carry: max_frame_bytes, and what fits
  /// one peer's queue with its length prefix. A RaftGroup over this transport checks its
  /// configuration against it (ReportsFrameLimit). Any thread.
  std::size_t max_frame_bytes() const noexcept {
    const std::size_t queue = options_.max_queue_bytes > detail::kLengthPrefixSize
                                  ? options_.max_queue_bytes - detail::kLengthPrefixSize
                                  : 0;
    return std::min(
        {options_.max_frame_bytes, queue, std::size_t{std::numeric_limits<std::uint32_t>::max()}});
  }

  /// Names where peer `id` listens. Allowed before start() or at any time, after start() too
  /// (a node added to the cluster): a new peer with a higher id is dialed at once, and a changed
  /// endpoint is used from the next connection attempt on (an established connection is kept).
  /// A peer removed by remove_peer() is a peer again. Ignored (and logged) for kNoNode and for
  /// self. Thread-safety: any thread. Allocation: the peer's state and queue ring, the first time
  /// `id` is seen. Throws std::bad_alloc only.
  void set_peer(NodeId id, ::boost::asio::ip::tcp::endpoint ep) {
    if (id == kNoNode || id == options_.self) {
      log("set_peer ignored for node " + std::to_string(id));
      return;
    }
    Peer& peer = peer_for(id);
    bool readded = false;
    {
      std::lock_guard lock(peer.mutex);
      peer.endpoint = ep;
      readded = std::exchange(peer.removed, false);
    }
    if (readded) {
      log("node " + std::to_string(options_.self) + ": peer " + std::to_string(id) +
          " added again at " + to_string(ep));
    }
    if (started_.load(std::memory_order_acquire)) {
      schedule_dial(peer);
    }
  }

  /// Forgets peer `id` (a node removed from the cluster): its connection is closed, it is no
  /// longer dialed, the frames queued for it are dropped (a frame being written when this is
  /// called still goes out), send() to it drops and counts dropped_unknown_peer, and a hello
  /// naming it is refused as one from an unknown node (unknown_hellos). set_peer() makes it a peer
  /// again. Does nothing for a node never named by set_peer(), or already removed.
  /// Thread-safety: any thread. Allocation: none.
  void remove_peer(NodeId id) {
    Peer* peer = find_peer(id);
    if (peer == nullptr) {
      return;
    }
    std::shared_ptr<Connection> connection;
    {
      std::lock_guard lock(peer->mutex);
      if (peer->removed) {
        return;
      }
      peer->removed = true;
      peer->endpoint.reset();
      connection = std::move(peer->connection);
      if (!peer->write_scheduled) {
        drop_queue_locked(*peer);  // else the write's end drops it (hand_off_write_locked)
      }
    }
    log("node " + std::to_string(options_.self) + ": peer " + std::to_string(id) + " removed");
    if (connection) {
      connection->post_close("peer removed");
    }
    ::boost::asio::post(peer->strand, [peer] { peer->timer.cancel(); });
  }

  /// Registers the receiving side of `group`, replacing an earlier registration: `deliver` is
  /// invoked on `executor` (the group's strand) with each decoded message addressed to `group`,
  /// one at a time and in the order each peer sent them. The Message and its entries are valid
  /// only during the call. `deliver` should not throw: an exception propagates out of the
  /// executor's run() (the frame is still returned to the pool).
  /// Thread-safety: any thread. Allocation: the registration (and later, the group's decode
  /// scratch, grown to the most entries one frame has carried).
  template <class Executor>
  void add_group(GroupId group, Executor executor, std::function<void(const Message&)> deliver) {
    auto sink = std::make_shared<detail::GroupSinkOn<Executor>>(
        std::move(executor), std::move(deliver), options_.max_entries_per_frame);
    std::shared_ptr<detail::GroupSink> old;
    {
      std::lock_guard lock(groups_mutex_);
      auto& slot = groups_[group];
      old = std::exchange(slot, std::move(sink));
    }
    if (old) {
      old->mark_removed();
    }
  }

  /// Unregisters `group`: later frames for it are dropped and counted, and deliveries already
  /// posted but not yet run are skipped. Thread-safety: any thread. Allocation: none.
  void remove_group(GroupId group) {
    std::shared_ptr<detail::GroupSink> old;
    {
      std::lock_guard lock(groups_mutex_);
      auto it = groups_.find(group);
      if (it == groups_.end()) {
        return;
      }
      old = std::move(it->second);
      groups_.erase(it);
    }
    old->mark_removed();
  }

  /// Starts accepting and dials the known peers with a higher NodeId. Idempotent; a call after
  /// stop() does nothing. Thread-safety: any thread.
  void start() {
    if (stopped_.load(std::memory_order_acquire) || started_.exchange(true)) {
      return;
    }
    ::boost::asio::post(accept_strand_, [this] { accept_next(); });
    std::lock_guard lock(peers_mutex_);
    for (auto& [id, peer] : peers_) {
      schedule_dial(*peer);
    }
  }

  /// Closes the acceptor and every connection and cancels reconnect timers. Handlers already
  /// pending complete (with operation_aborted) and start nothing new, so once they have run the
  /// io_context has no more work from the transport and run() returns. Queued frames are kept
  /// (and freed with the transport); send() drops from now on. Idempotent; any thread.
  void stop() {
    std::vector<std::shared_ptr<Connection>> live;
    {
      std::lock_guard lock(registry_mutex_);
      if (stopped_.exchange(true)) {
        return;
      }
      for (auto& weak : connections_) {
        if (auto c = weak.lock()) {
          live.push_back(std::move(c));
        }
      }
    }
    ::boost::asio::post(accept_strand_, [this] {
      ::boost::system::error_code ignored;
      acceptor_.close(ignored);
      accept_timer_.cancel();
    });
    {
      std::lock_guard lock(peers_mutex_);
      for (auto& [id, peer] : peers_) {
        Peer* p = peer.get();
        ::boost::asio::post(p->strand, [p] { p->timer.cancel(); });
      }
    }
    for (auto& c : live) {
      c->post_close("transport stopped");
    }
  }

  /// Queues `m` for its peer `m.to`, encoded at once (the message and its entries may be gone
  /// once send returns). Never blocks on I/O and never throws; drops, and counts, when the peer
  /// is unknown or is this node, when its queue is full, when the message cannot be encoded or
  /// its frame would exceed max_frame_bytes, and after stop().
  /// Thread-safety: any thread. Allocation: none in steady state (a pooled buffer, grown at a new
  /// largest frame).
  void send(const Message& m) noexcept {
    try {
      send_or_throw(m);
    } catch (...) {
      count(stats_.dropped_invalid);
    }
  }

  /// The counters. Thread-safety: any thread. Allocation: none.
  Stats stats() const noexcept {
    auto get = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    Stats s;
    s.frames_sent = get(stats_.frames_sent);
    s.frames_received = get(stats_.frames_received);
    s.bytes_sent = get(stats_.bytes_sent);
    s.bytes_received = get(stats_.bytes_received);
    s.dropped_queue_full = get(stats_.dropped_queue_full);
    s.dropped_unknown_peer = get(stats_.dropped_unknown_peer);
    s.dropped_unknown_group = get(stats_.dropped_unknown_group);
    s.malformed_frames = get(stats_.malformed_frames);
    s.connects = get(stats_.connects);
    s.disconnects = get(stats_.disconnects);
    s.dropped_invalid = get(stats_.dropped_invalid);
    s.dropped_stopped = get(stats_.dropped_stopped);
    s.handler_fallbacks = get(stats_.handler_fallbacks);
    s.accept_failures = get(stats_.accept_failures);
    s.refused_connections = get(stats_.refused_connections);
    s.unknown_hellos = get(stats_.unknown_hellos);
    s.wrong_sender = get(stats_.wrong_sender);
    s.pool_bytes = pool_.allocated_bytes();
    s.tls_refused = get(stats_.tls_refused);
    return s;
  }

 private:
  using tcp = ::boost::asio::ip::tcp;
  using Strand = detail::ConnectionStrand;

  struct AtomicStats {
    std::atomic<std::uint64_t> frames_sent{0}, frames_received{0}, bytes_sent{0}, bytes_received{0},
        dropped_queue_full{0}, dropped_unknown_peer{0}, dropped_unknown_group{0},
        malformed_frames{0}, connects{0}, disconnects{0}, dropped_invalid{0}, dropped_stopped{0},
        handler_fallbacks{0}, accept_failures{0}, refused_connections{0}, unknown_hellos{0},
        wrong_sender{0}, tls_refused{0};
  };

  /// What this node knows of one peer. Never destroyed before the transport, so a Peer& stays
  /// valid in handlers.
  struct Peer {
    Peer(::boost::asio::io_context& io, NodeId peer_id, std::size_t queue_frames,
         std::chrono::milliseconds initial_backoff, std::uint64_t seed)
        : id(peer_id),
          queue(queue_frames),
          strand(::boost::asio::make_strand(io)),
          timer(strand),
          backoff(initial_backoff),
          rng(seed) {}

    const NodeId id;

    std::mutex mutex;
    // Guarded by mutex:
    std::optional<tcp::endpoint> endpoint;
    detail::FrameQueue queue;
    /// The established connection that carries traffic, if any.
    std::shared_ptr<Connection> connection;
    /// A gather write of queue frames is scheduled or in flight (on `connection`, or on a
    /// connection that was current when it started). Only its owner pops the queue's head.
    bool write_scheduled = false;
    /// remove_peer() forgot it (until set_peer() names it again): no connection, no dialing, no
    /// queue, hellos refused.
    bool removed = false;

    // Only on `strand` (the dialer):
    Strand strand;
    ::boost::asio::steady_timer timer;
    bool dialing = false;  // a dialed connection is connecting or established
    std::chrono::milliseconds backoff;
    Xoshiro256 rng;
  };

  /// One TCP connection. Everything but the atomics runs on its strand.
  class Connection : public std::enable_shared_from_this<Connection> {
   public:
    /// `dialed`: the peer this connection dials, or null for an accepted one.
    Connection(AsioTcpTransport& transport, Peer* dialed)
        : t_(transport),
          strand_(::boost::asio::make_strand(transport.io_)),
          // The socket gets the plain io_context executor: an any_io_executor holding a strand
          // would allocate each time Asio copies it to track work. Completions still run on
          // strand_, the handlers' associated executor.
          socket_(transport.io_),
          hello_timer_(transport.io_),
          peer_(dialed),
          dialer_(dialed != nullptr) {
      memory_.count_fallbacks_in(&t_.stats_.handler_fallbacks);
#if defined(TENURE_WITH_TLS)
      if (t_.tls_context_) {
        tls_ = std::make_unique<TlsStream>(socket_, *t_.tls_context_);
      }
#endif
    }

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    ~Connection() {
      if (rx_ != nullptr) {
        t_.pool_.release(rx_);
      }
      std::lock_guard lock(t_.registry_mutex_);
      if (registered_) {
        t_.connections_.erase(registry_it_);
      }
    }

    tcp::socket& socket() noexcept {
      return socket_;
    }

    void set_registry_entry(std::list<std::weak_ptr<Connection>>::iterator it) noexcept {
      registry_it_ = it;
      registered_ = true;
    }

    void post_connect(tcp::endpoint ep) {
      post([self = shared_from_this(), ep] {
        if (self->closed_) {
          return;
        }
        self->socket_.async_connect(ep, self->bind([self](const ::boost::system::error_code& ec) {
          if (ec) {
            return self->close("connect failed: " + ec.message());
          }
          self->no_delay();
          self->handshake_then_hello();
        }));
      });
    }

    void post_accepted() {
      post([self = shared_from_this()] {
        self->no_delay();
        self->hello_timer_.expires_after(self->t_.options_.hello_timeout);
        self->hello_timer_.async_wait(self->bind([self](const ::boost::system::error_code& ec) {
          if (!ec && !self->established_) {
            self->close("no hello within " +
                        std::to_string(self->t_.options_.hello_timeout.count()) + " ms");
          }
        }));
        self->handshake_then_hello();
      });
    }

    // Nagle's algorithm would hold a small frame back until the peer acknowledges the previous
    // one, and the peer delays its acknowledgements: an append or a vote answer waited
    // milliseconds. The queue is already written in gather writes, so nothing is lost by it.
    void no_delay() {
      ::boost::system::error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
    }

    void post_close(std::string reason) {
      post([self = shared_from_this(), reason = std::move(reason)] { self->close(reason); });
    }

    void post_start_write() {
      post([self = shared_from_this()] { self->start_write(); });
    }

   private:
    template <class F>
    detail::ConnectionHandler<F> bind(F f) {
      return detail::ConnectionHandler<F>(strand_, &memory_, std::move(f));
    }

    template <class F>
    void post(F f) {
      ::boost::asio::post(strand_, bind(std::move(f)));
    }

    std::string who() const {
      std::string s = "node " + std::to_string(t_.options_.self) + ": peer ";
      if (peer_ != nullptr) {
        s += std::to_string(peer_->id);
      } else {
        s += "?";
      }
      ::boost::system::error_code ec;
      const auto remote = socket_.remote_endpoint(ec);
      if (!ec) {
        s += " (" + to_string(remote) + ")";
      }
      return s;
    }

    // ---- TLS, hello ------------------------------------------------------------------------

    // With TLS, the handshake (which verifies the other side's certificate against the CA)
    // comes first, and every later byte goes through it.
    void handshake_then_hello() {
#if defined(TENURE_WITH_TLS)
      if (tls_) {
        tls_->async_handshake(
            dialer_ ? ::boost::asio::ssl::stream_base::client
                    : ::boost::asio::ssl::stream_base::server,
            bind([self = shared_from_this()](const ::boost::system::error_code& ec) {
              if (ec) {
                count(self->t_.stats_.tls_refused);
                return self->close("TLS handshake failed: " + ec.message());
              }
              self->send_hello();
            }));
        return;
      }
#endif
      send_hello();
    }

    // The certificate the other side presented must name the node its hello claims.
    bool tls_identity_matches(NodeId sender) {
#if defined(TENURE_WITH_TLS)
      if (tls_) {
        const auto name = tls_peer_name(tls_->native_handle());
        if (!name || *name != tls_node_name(sender)) {
          count(t_.stats_.tls_refused);
          close("TLS certificate names '" + name.value_or("nothing") + "', the hello node " +
                std::to_string(sender));
          return false;
        }
      }
#else
      (void)sender;
#endif
      return true;
    }

    template <class Buffers, class Handler>
    void write_all(const Buffers& buffers, Handler&& handler) {
#if defined(TENURE_WITH_TLS)
      if (tls_) {
        ::boost::asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
        return;
      }
#endif
      ::boost::asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    }

    template <class Buffers, class Handler>
    void read_exactly(const Buffers& buffers, Handler&& handler) {
#if defined(TENURE_WITH_TLS)
      if (tls_) {
        ::boost::asio::async_read(*tls_, buffers, std::forward<Handler>(handler));
        return;
      }
#endif
      ::boost::asio::async_read(socket_, buffers, std::forward<Handler>(handler));
    }

    void send_hello() {
      if (closed_) {
        return;
      }
      std::copy(detail::kHelloMagic.begin(), detail::kHelloMagic.end(), hello_out_.begin());
      raft::detail::store_u8(hello_out_.data() + 4, detail::kHelloVersion);
      raft::detail::store_le<std::uint64_t>(hello_out_.data() + 5, t_.options_.self);
      write_all(
          ::boost::asio::buffer(hello_out_),
          bind([self = shared_from_this()](const ::boost::system::error_code& ec, std::size_t) {
            if (ec) {
              return self->close("hello not sent: " + ec.message());
            }
            self->read_hello();
          }));
    }

    void read_hello() {
      read_exactly(::boost::asio::buffer(hello_in_),
                   bind([self = shared_from_this()](const ::boost::system::error_code& ec,
                                                    std::size_t) { self->on_hello(ec); }));
    }

    void on_hello(const ::boost::system::error_code& ec) {
      if (closed_) {
        // Closed (stop(), a hello timeout) after the hello's read had completed but before this
        // ran: establishing now would make a closed connection its peer's current one after
        // stop(), held by the Peer until the transport's destruction, which then freed it into
        // the already destroyed registry (a double free at exit, once in 50 SIGTERMs).
        return;
      }
      if (ec) {
        return close("no hello: " + ec.message());
      }
      if (!std::equal(detail::kHelloMagic.begin(), detail::kHelloMagic.end(), hello_in_.begin())) {
        return malformed("bad hello: wrong magic");
      }
      const std::uint8_t version = raft::detail::load_u8(hello_in_.data() + 4);
      if (version != detail::kHelloVersion) {
        return malformed("bad hello: unsupported version " + std::to_string(version));
      }
      const NodeId sender = raft::detail::load_le<std::uint64_t>(hello_in_.data() + 5);
      if (sender == kNoNode || sender == t_.options_.self) {
        return malformed("bad hello: sender " + std::to_string(sender));
      }
      if (dialer_ && sender != peer_->id) {
        return malformed("bad hello: sender " + std::to_string(sender) + ", dialed " +
                         std::to_string(peer_->id));
      }
      if (!tls_identity_matches(sender)) {
        return;
      }
      if (!dialer_) {
        peer_ = t_.find_peer(sender);
        if (peer_ == nullptr || t_.is_removed(*peer_)) {
          peer_ = nullptr;
          count(t_.stats_.unknown_hellos);
          return malformed("bad hello: node " + std::to_string(sender) +
                           " is not a configured peer");
        }
      }
      hello_timer_.cancel();
      establish();
      read_length();
    }

    /// Makes this the peer's connection, replacing (and closing) an older one, and starts
    /// writing what queued up meanwhile.
    void establish() {
      std::shared_ptr<Connection> old;
      std::size_t batch = 0;
      {
        std::lock_guard lock(peer_->mutex);
        if (peer_->removed) {
          removed_before_established_ = true;
        } else {
          old = std::exchange(peer_->connection, shared_from_this());
          established_ = true;
          if (!peer_->write_scheduled && !peer_->queue.empty()) {
            peer_->write_scheduled = true;
            batch = take_batch_locked();
          }
        }
      }
      if (removed_before_established_) {
        close("peer removed");
        return;
      }
      count(t_.stats_.connects);
      t_.log(who() + ": connected (" + (dialer_ ? "dialed" : "accepted") + ")");
      if (old) {
        old->post_close("replaced by a newer connection");
      }
      if (batch != 0) {
        write_batch(batch);
      }
    }

    // ---- reading ---------------------------------------------------------------------------

    void read_length() {
      if (closed_) {
        return;
      }
      read_exactly(::boost::asio::buffer(length_in_),
                   bind([self = shared_from_this()](const ::boost::system::error_code& ec,
                                                    std::size_t) { self->on_length(ec); }));
    }

    void on_length(const ::boost::system::error_code& ec) {
      if (ec) {
        return close(ec == ::boost::asio::error::eof ? "closed by peer" : ec.message());
      }
      const std::size_t length = raft::detail::load_le<std::uint32_t>(length_in_.data());
      if (length == 0 || length > t_.options_.max_frame_bytes) {
        return malformed("bad frame length " + std::to_string(length));
      }
      rx_length_ = length;
      rx_received_ = 0;
      read_body();
    }

    // The body is read into a buffer that grows (doubling from 64 KiB) only as its bytes
    // arrive: a length prefix alone, sent and then never followed, costs its sender as much
    // memory here as it sent.
    void read_body() {
      const std::size_t want = std::min(rx_length_, std::max(kFirstChunk, 2 * rx_received_));
      try {
        detail::Frame* bigger = t_.pool_.acquire(want);
        if (rx_ != nullptr) {
          std::copy_n(rx_->bytes.data(), rx_received_, bigger->bytes.data());
          t_.pool_.release(rx_);
        }
        rx_ = bigger;
      } catch (const std::bad_alloc&) {
        return close("out of memory for a frame of " + std::to_string(rx_length_) + " bytes");
      }
      read_exactly(::boost::asio::buffer(rx_->bytes.data() + rx_received_, want - rx_received_),
                   bind([self = shared_from_this(), want](const ::boost::system::error_code& ec,
                                                          std::size_t) {
                     if (!ec && want < self->rx_length_) {
                       self->rx_received_ = want;
                       return self->read_body();
                     }
                     self->on_body(ec);
                   }));
    }

    void on_body(const ::boost::system::error_code& ec) {
      detail::Frame* frame = std::exchange(rx_, nullptr);
      if (ec) {
        t_.pool_.release(frame);
        return close(ec == ::boost::asio::error::eof ? "closed by peer" : ec.message());
      }
      frame->size = rx_length_;
      t_.stats_.bytes_received.fetch_add(detail::kLengthPrefixSize + frame->size,
                                         std::memory_order_relaxed);
      const Result<Message> r =
          detail::decode_growing(std::span<const std::byte>(frame->bytes.data(), frame->size),
                                 scratch_, t_.options_.max_entries_per_frame);
      if (!r) {
        t_.pool_.release(frame);
        return malformed("bad frame: " + r.code().message());
      }
      if (r.value().from != peer_->id) {
        const NodeId from = r.value().from;
        t_.pool_.release(frame);
        count(t_.stats_.wrong_sender);
        return malformed("frame from node " + std::to_string(from) + " on the connection of node " +
                         std::to_string(peer_->id));
      }
      received_frames_ = true;
      t_.dispatch(frame, r.value().group);
      read_length();
    }

    // ---- writing ---------------------------------------------------------------------------

    /// Gathers up to kMaxGather queued frames. Caller holds peer_->mutex and owns the write.
    std::size_t take_batch_locked() noexcept {
      const std::size_t n = std::min(peer_->queue.size(), detail::kMaxGather);
      for (std::size_t i = 0; i < n; ++i) {
        const detail::Frame* f = peer_->queue.at(i);
        gather_[i] = ::boost::asio::const_buffer(f->bytes.data(), f->size);
      }
      batch_ = n;
      return n;
    }

    void write_batch(std::size_t n) {
      write_all(
          std::span<const ::boost::asio::const_buffer>(gather_.data(), n),
          bind([self = shared_from_this()](const ::boost::system::error_code& ec,
                                           std::size_t bytes) { self->on_written(ec, bytes); }));
    }

    /// Hands the write over: to the peer's current connection when it is another one and frames
    /// wait, else nobody. Caller holds peer_->mutex.
    std::shared_ptr<Connection> hand_off_write_locked() {
      peer_->write_scheduled = false;
      if (peer_->removed) {
        t_.drop_queue_locked(*peer_);  // what remove_peer() left to the write in flight
        return nullptr;
      }
      if (peer_->connection && peer_->connection.get() != this && !peer_->queue.empty()) {
        peer_->write_scheduled = true;
        return peer_->connection;
      }
      return nullptr;
    }

    void start_write() {
      std::shared_ptr<Connection> next;
      std::size_t batch = 0;
      {
        std::lock_guard lock(peer_->mutex);
        if (closed_ || peer_->connection.get() != this || peer_->queue.empty()) {
          next = hand_off_write_locked();
        } else {
          batch = take_batch_locked();
        }
      }
      if (batch != 0) {
        write_batch(batch);
      }
      if (next) {
        next->post_start_write();
      }
    }

    void on_written(const ::boost::system::error_code& ec, std::size_t bytes) {
      std::shared_ptr<Connection> next;
      std::size_t batch = 0;
      {
        std::lock_guard lock(peer_->mutex);
        for (std::size_t i = 0; i < batch_; ++i) {
          t_.pool_.release(peer_->queue.pop_front());
        }
        if (!ec) {
          t_.stats_.frames_sent.fetch_add(batch_, std::memory_order_relaxed);
          t_.stats_.bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
        }
        batch_ = 0;
        if (!ec && !closed_ && peer_->connection.get() == this && !peer_->queue.empty()) {
          batch = take_batch_locked();
        } else {
          next = hand_off_write_locked();
        }
      }
      if (ec) {
        close("write failed: " + ec.message());
      }
      if (batch != 0) {
        write_batch(batch);
      }
      if (next) {
        next->post_start_write();
      }
    }

    // ---- closing ---------------------------------------------------------------------------

    void malformed(const std::string& reason) {
      count(t_.stats_.malformed_frames);
      close(reason);
    }

    void close(const std::string& reason) {
      if (closed_) {
        return;
      }
      closed_ = true;
      hello_timer_.cancel();
      if (!dialer_) {
        t_.inbound_.fetch_sub(1, std::memory_order_relaxed);
      }
      const std::string line = who() + ": closing: " + reason;
      ::boost::system::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
      t_.log(line);
      if (established_) {
        count(t_.stats_.disconnects);
        std::lock_guard lock(peer_->mutex);
        if (peer_->connection.get() == this) {
          peer_->connection.reset();
        }
      }
      if (dialer_) {
        Peer* peer = peer_;
        AsioTcpTransport* t = &t_;
        // Only a connection that carried frames from the peer resets the backoff: one the peer
        // closes right after the hellos (it refuses this node: unknown, or removed) is retried
        // ever more slowly, not every reconnect_min.
        const bool established = established_ && received_frames_;
        ::boost::asio::post(peer->strand,
                            [t, peer, established] { t->on_dial_ended(*peer, established); });
      }
    }

    AsioTcpTransport& t_;
    Strand strand_;
    tcp::socket socket_;
    ::boost::asio::steady_timer hello_timer_;  // accepted connections: the hello's deadline
#if defined(TENURE_WITH_TLS)
    using TlsStream = ::boost::asio::ssl::stream<tcp::socket&>;
    std::unique_ptr<TlsStream> tls_;  // with TLS: over socket_ (declared after it: goes first)
#endif
    Peer* peer_;  // set at construction (dialer) or after the hello (accepted)
    const bool dialer_;
    bool established_ = false;
    bool closed_ = false;
    bool removed_before_established_ = false;  // its peer was removed before the hello ended
    bool received_frames_ = false;             // a frame from the peer arrived on it
    std::array<std::byte, detail::kHelloSize> hello_out_{};
    std::array<std::byte, detail::kHelloSize> hello_in_{};
    std::array<std::byte, detail::kLengthPrefixSize> length_in_{};
    static constexpr std::size_t kFirstChunk = std::size_t{64} << 10;
    detail::Frame* rx_ = nullptr;     // the frame being read, owned until dispatched
    std::size_t rx_length_ = 0;       // its length, from the prefix
    std::size_t rx_received_ = 0;     // bytes of it in rx_ so far
    std::vector<EntryView> scratch_;  // validation decode, this strand only
    std::array<::boost::asio::const_buffer, detail::kMaxGather> gather_{};
    std::size_t batch_ = 0;  // frames of the queue's head being written by this connection
    // Outstanding at once: a read, a write, a posted start_write or close, and the strand's own
    // invoker for each; the slots cover that.
    detail::HandlerMemory<6, 1024> memory_;
    std::list<std::weak_ptr<Connection>>::iterator registry_it_{};
    bool registered_ = false;  // guarded by t_.registry_mutex_
  };

  static void count(std::atomic<std::uint64_t>& counter) noexcept {
    counter.fetch_add(1, std::memory_order_relaxed);
  }

  static std::string to_string(const tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void log(const std::string& line) const {
    if (options_.log) {
      options_.log(line);
    }
  }

  void send_or_throw(const Message& m) {
    if (stopped_.load(std::memory_order_acquire)) {
      count(stats_.dropped_stopped);
      return;
    }
    Peer* peer = m.to == options_.self ? nullptr : find_peer(m.to);
    if (peer == nullptr) {
      count(stats_.dropped_unknown_peer);
      return;
    }
    const std::size_t size = encoded_size(m);
    if (size == 0 || size > options_.max_frame_bytes ||
        size > std::numeric_limits<std::uint32_t>::max()) {
      count(stats_.dropped_invalid);
      return;
    }
    detail::Frame* frame = pool_.acquire(detail::kLengthPrefixSize + size);
    const Result<std::size_t> written =
        encode(m, std::span<std::byte>(frame->bytes.data() + detail::kLengthPrefixSize, size));
    if (!written) {
      pool_.release(frame);
      count(stats_.dropped_invalid);
      return;
    }
    raft::detail::store_le<std::uint32_t>(frame->bytes.data(), static_cast<std::uint32_t>(size));
    std::shared_ptr<Connection> kick;
    {
      std::lock_guard lock(peer->mutex);
      if (peer->removed) {
        pool_.release(frame);
        count(stats_.dropped_unknown_peer);
        return;
      }
      if (!peer->queue.push(frame, options_.max_queue_bytes)) {
        pool_.release(frame);
        count(stats_.dropped_queue_full);
        return;
      }
      if (peer->connection && !peer->write_scheduled) {
        peer->write_scheduled = true;
        kick = peer->connection;
      }
    }
    if (kick) {
      kick->post_start_write();
    }
  }

  bool is_removed(Peer& peer) {
    std::lock_guard lock(peer.mutex);
    return peer.removed;
  }

  /// Releases every queued frame of `peer`. Caller holds peer.mutex and no write owns the head.
  void drop_queue_locked(Peer& peer) noexcept {
    while (!peer.queue.empty()) {
      pool_.release(peer.queue.pop_front());
    }
  }

  Peer* find_peer(NodeId id) {
    std::lock_guard lock(peers_mutex_);
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
  }

  Peer& peer_for(NodeId id) {
    std::lock_guard lock(peers_mutex_);
    auto& slot = peers_[id];
    if (!slot) {
      slot = std::make_unique<Peer>(io_, id, options_.max_queue_frames, options_.reconnect_min,
                                    std::random_device{}() ^ (id * 0x9e3779b97f4a7c15ull));
    }
    return *slot;
  }

  /// A new connection, registered so that stop() finds it; null once stopped.
  std::shared_ptr<Connection> make_connection(Peer* dialed) {
    auto c = std::make_shared<Connection>(*this, dialed);
    return register_connection(c) ? c : nullptr;
  }

  /// Tracks `c` so that stop() closes it; false (and untracked) once stopped.
  bool register_connection(const std::shared_ptr<Connection>& c) {
    std::lock_guard lock(registry_mutex_);
    if (stopped_.load(std::memory_order_relaxed)) {
      return false;
    }
    c->set_registry_entry(connections_.insert(connections_.end(), c));
    return true;
  }

  // ---- dialing (on the peer's strand) ---------------------------------------------------------

  void schedule_dial(Peer& peer) {
    if (peer.id > options_.self) {
      ::boost::asio::post(peer.strand, [this, &peer] { dial(peer); });
    }
  }

  void dial(Peer& peer) {
    if (stopped_.load(std::memory_order_acquire) || peer.dialing) {
      return;
    }
    std::optional<tcp::endpoint> ep;
    {
      std::lock_guard lock(peer.mutex);
      ep = peer.endpoint;
    }
    if (!ep) {
      return;
    }
    auto c = make_connection(&peer);
    if (!c) {
      return;
    }
    peer.dialing = true;
    c->post_connect(*ep);
  }

  void on_dial_ended(Peer& peer, bool carried_frames) {
    peer.dialing = false;
    if (stopped_.load(std::memory_order_acquire)) {
      return;
    }
    if (carried_frames) {
      peer.backoff = options_.reconnect_min;
    }
    const auto d = std::chrono::duration_cast<std::chrono::microseconds>(peer.backoff).count();
    const auto half = static_cast<std::uint64_t>(d / 2);
    const auto delay = std::chrono::microseconds(half + peer.rng.below(half + 1));
    peer.backoff = std::min(peer.backoff * 2, options_.reconnect_max);
    peer.timer.expires_after(delay);
    peer.timer.async_wait([this, &peer](const ::boost::system::error_code& ec) {
      if (!ec) {
        dial(peer);
      }
    });
  }

  // ---- accepting (on accept_strand_) ----------------------------------------------------------

  void accept_next() {
    // Registered only once accepted. Until then its socket belongs to the accept operation, which
    // stop() ends by closing the acceptor. Had stop() closed the socket itself (from the
    // connection's strand), that would race with the accept, and an accept completing just after
    // would leave a live connection that nothing closes, holding the io_context open.
    auto c = std::make_shared<Connection>(*this, nullptr);
    acceptor_.async_accept(c->socket(),
                           ::boost::asio::bind_executor(
                               accept_strand_, [this, c](const auto& ec) { on_accepted(c, ec); }));
  }

  void on_accepted(const std::shared_ptr<Connection>& c, const ::boost::system::error_code& ec) {
    if (ec) {
      if (ec != ::boost::asio::error::operation_aborted &&
          !stopped_.load(std::memory_order_acquire)) {
        stats_.accept_failures.fetch_add(1, std::memory_order_relaxed);
        log("node " + std::to_string(options_.self) + ": accept failed: " + ec.message() +
            "; retrying in " + std::to_string(options_.accept_retry.count()) + " ms");
        accept_later();
      }
      return;
    }
    if (inbound_.load(std::memory_order_relaxed) >= options_.max_inbound_connections) {
      stats_.refused_connections.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t refused = stats_.refused_connections.load(std::memory_order_relaxed);
      if (refused == 1 || refused % 1000 == 0) {
        log("node " + std::to_string(options_.self) +
            ": refused a connection: " + std::to_string(options_.max_inbound_connections) +
            " accepted ones are open (max_inbound_connections); " + std::to_string(refused) +
            " refused so far");
      }
      ::boost::system::error_code ignored;
      c->socket().close(ignored);
      accept_next();
      return;
    }
    if (!register_connection(c)) {
      return;  // stopped meanwhile: dropping `c` closes the socket
    }
    inbound_.fetch_add(1, std::memory_order_relaxed);
    c->post_accepted();
    accept_next();
  }

  void accept_later() {
    accept_timer_.expires_after(options_.accept_retry);
    accept_timer_.async_wait([this](const ::boost::system::error_code& ec) {
      if (!ec && !stopped_.load(std::memory_order_acquire)) {
        accept_next();
      }
    });
  }

  // ---- receiving ------------------------------------------------------------------------------

  /// Hands a validated frame to its group's executor, or drops it when the group is unknown.
  void dispatch(detail::Frame* frame, GroupId group) {
    std::shared_ptr<detail::GroupSink> sink;
    {
      std::lock_guard lock(groups_mutex_);
      auto it = groups_.find(group);
      if (it != groups_.end()) {
        sink = it->second;
      }
    }
    if (!sink) {
      pool_.release(frame);
      count(stats_.dropped_unknown_group);
      return;
    }
    count(stats_.frames_received);
    detail::GroupSink* target = sink.get();
    target->post(detail::DeliveryHandler(std::move(sink), frame, &pool_));
  }

  ::boost::asio::io_context& io_;
  TcpTransportOptions options_;
  AtomicStats stats_;
  detail::FramePool pool_;
  tcp::endpoint local_;

  std::atomic<std::size_t> inbound_{0};  // accepted connections not yet closed
#if defined(TENURE_WITH_TLS)
  std::optional<::boost::asio::ssl::context> tls_context_;  // with options.tls
#endif
  tcp::acceptor acceptor_;  // only on accept_strand_ once started
  Strand accept_strand_;
  ::boost::asio::steady_timer accept_timer_;  // on accept_strand_: the pause after a failed accept

  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};  // set under registry_mutex_

  std::mutex peers_mutex_;
  // Guarded by peers_mutex_. Never erased (handlers hold Peer&): remove_peer() marks one removed.
  std::map<NodeId, std::unique_ptr<Peer>> peers_;

  std::mutex groups_mutex_;
  std::unordered_map<GroupId, std::shared_ptr<detail::GroupSink>> groups_;  // groups_mutex_

  std::mutex registry_mutex_;
  std::list<std::weak_ptr<Connection>> connections_;  // guarded by registry_mutex_
};

/// A Transport policy value for one RaftGroup: forwards to a shared AsioTcpTransport, which must
/// outlive it.
struct TransportRef {
  AsioTcpTransport* transport;
  void send(const Message& m) { transport->send(m); }
  std::size_t max_frame_bytes() const noexcept { return transport->max_frame_bytes(); }
};

}  // namespace tenure::raft::asio
