// ScriptedProvider: a LeaseProvider whose every move a test scripts by hand, on a ManualClock.
// It models the provider contract of <lease/lease_provider.hpp> literally, and nothing more.
#pragma once

#include <raft/completion.hpp>
#include <raft/errc.hpp>
#include <raft/manual_clock.hpp>
#include <raft/result.hpp>
#include <raft/types.hpp>

#include <lease/leader_loss.hpp>
#include <lease/quorum_ack_tracker.hpp>

#include <boost/intrusive/list.hpp>

#include <atomic>
#include <cstddef>
#include <initializer_list>
#include <vector>

namespace tenure::testing {

class ScriptedProvider {
 public:
  using clock_type = raft::ManualClock;
  using time_point = clock_type::time_point;
  using Tracker = lease::QuorumAckTracker<clock_type, 8>;

  /// A pending ReadIndex: caller-owned, linked into the provider's queue.
  class read_request : public boost::intrusive::list_base_hook<
                           boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
   public:
    explicit read_request(raft::Completion<raft::LogIndex> done) noexcept : done_(done) {}
    time_point deadline() const noexcept { return deadline_; }

   private:
    friend class ScriptedProvider;
    raft::Completion<raft::LogIndex> done_;
    time_point deadline_{};
  };

  explicit ScriptedProvider(raft::NodeId self = 1) : self_(self), tracker_(self) {}

  // --- the LeaseProvider contract -------------------------------------------------------------
  const clock_type& clock() const noexcept { return clock_; }
  raft::Term leader_term() const noexcept { return leader_term_.load(std::memory_order_acquire); }
  raft::NodeId leader_hint() const noexcept { return hint_.load(std::memory_order_acquire); }
  raft::LogIndex applied_index() const noexcept { return applied_.load(std::memory_order_acquire); }
  time_point quorum_ack() const noexcept { return tracker_.quorum_ack(); }
  void read_index(read_request& request, time_point deadline) {
    request.deadline_ = deadline;
    pending_.push_back(request);
    ++read_index_calls_;
  }
  void subscribe_leader_loss(lease::LeaderLossCallback& callback) { losses_.add(callback); }

  // --- scripting ---------------------------------------------------------------------------------
  clock_type& mutable_clock() noexcept { return clock_; }
  Tracker& tracker() noexcept { return tracker_; }

  /// Leads `term` with the given voters (self included when listed), ready to serve reads:
  /// the acks of any earlier term are forgotten.
  void lead(raft::Term term, std::initializer_list<raft::NodeId> voters) {
    const std::vector<raft::NodeId> v(voters);
    if (tracker_.set_configuration(v)) {
      throw std::logic_error("ScriptedProvider::lead: bad voters");
    }
    tracker_.reset();
    hint_.store(self_, std::memory_order_release);
    leader_term_.store(term, std::memory_order_release);
  }

  /// Stops leading, in the order the contract demands: tracker reset and callbacks first, while
  /// leader_term() still reports the old term; then the new role becomes visible.
  void lose_leadership(raft::NodeId new_leader = raft::kNoNode) {
    const raft::Term lost = leader_term_.load(std::memory_order_relaxed);
    tracker_.reset();
    callback_failures_ += losses_.notify(lost, [](std::exception_ptr) noexcept {});
    hint_.store(new_leader, std::memory_order_release);
    leader_term_.store(0, std::memory_order_release);
  }

  /// A follower answered a request this leader sent at `sent_at`.
  void ack(raft::NodeId from, time_point sent_at) { tracker_.record(from, sent_at); }

  void set_applied(raft::LogIndex index) { applied_.store(index, std::memory_order_release); }

  /// Completes every pending ReadIndex with `outcome`.
  void finish_reads(raft::Result<raft::LogIndex> outcome) {
    while (!pending_.empty()) {
      read_request& r = pending_.front();
      pending_.pop_front();
      r.done_(outcome);
    }
  }

  /// Completes with timed_out every pending read whose deadline is not after `now`.
  void expire_reads() {
    const auto now = clock_.now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      read_request& r = *it;
      if (r.deadline_ <= now) {
        it = pending_.erase(it);
        r.done_(raft::errc::timed_out);
      } else {
        ++it;
      }
    }
  }

  std::size_t pending_reads() const noexcept { return pending_.size(); }
  std::size_t read_index_calls() const noexcept { return read_index_calls_; }
  std::size_t callback_failures() const noexcept { return callback_failures_; }

 private:
  raft::NodeId self_;
  clock_type clock_;
  Tracker tracker_;
  std::atomic<raft::Term> leader_term_{0};
  std::atomic<raft::NodeId> hint_{raft::kNoNode};
  std::atomic<raft::LogIndex> applied_{0};
  lease::LeaderLossList losses_;
  boost::intrusive::list<read_request, boost::intrusive::constant_time_size<false>> pending_;
  std::size_t read_index_calls_ = 0;
  std::size_t callback_failures_ = 0;
};

}  // namespace tenure::testing
