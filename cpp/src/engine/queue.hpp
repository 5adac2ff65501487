// The bounded hand-off from loop threads to Python: access units and events wait here until
// poll() takes them in batches. Bounded by frames and bytes; when full, the session drops frames up
// to its next keyframe (and counts them) rather than stalling its camera. Events are few and are
// always queued (up to a large separate cap).
//
// Threading: push_* on loop threads, pop() on the Python thread (with the GIL released).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "vmscore/ingest.hpp"

namespace vms::engine {

class DeliveryQueue {
 public:
  DeliveryQueue(std::size_t max_frames, std::size_t max_bytes)
      : max_frames_(max_frames), max_bytes_(max_bytes) {}

  // False when the unit does not fit (it is not queued).
  bool push(ingest::AccessUnit&& au);
  void push(ingest::StreamEvent&& ev);
  std::size_t pop(std::vector<ingest::Delivery>& out, std::int64_t timeout_ms, std::size_t max_items);
  void wake();
  void close();
  std::uint64_t events_dropped() const;

 private:
  static constexpr std::size_t kMaxEvents = 1u << 16;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<ingest::Delivery> items_;
  std::size_t frames_ = 0;
  std::size_t bytes_ = 0;
  std::size_t events_ = 0;
  std::uint64_t events_dropped_ = 0;
  std::size_t max_frames_;
  std::size_t max_bytes_;
  bool woken_ = false;
  bool closed_ = false;
};

}  // namespace vms::engine
