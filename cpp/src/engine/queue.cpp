// Delivery queue; see queue.hpp.
#include "engine/queue.hpp"

#include <chrono>

namespace vms::engine {

bool DeliveryQueue::push(ingest::AccessUnit&& au) {
  const std::size_t size = au.data ? au.data->size() : 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_ || frames_ + 1 > max_frames_ || bytes_ + size > max_bytes_) return false;
    ++frames_;
    bytes_ += size;
    items_.emplace_back(std::move(au));
  }
  ready_.notify_one();
  return true;
}

void DeliveryQueue::push(ingest::StreamEvent&& ev) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    if (events_ >= kMaxEvents) {
      // Only a Python side that stopped polling for a long time gets here; counting is all we can do.
      ++events_dropped_;
      return;
    }
    ++events_;
    items_.emplace_back(std::move(ev));
  }
  ready_.notify_one();
}

std::size_t DeliveryQueue::pop(std::vector<ingest::Delivery>& out, std::int64_t timeout_ms,
                               std::size_t max_items) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  ready_.wait_until(lock, until, [&] { return !items_.empty() || woken_ || closed_; });
  woken_ = false;
  std::size_t n = 0;
  while (!items_.empty() && n < max_items) {
    ingest::Delivery& d = items_.front();
    if (auto* au = std::get_if<ingest::AccessUnit>(&d)) {
      --frames_;
      bytes_ -= au->data ? au->data->size() : 0;
    } else {
      --events_;
    }
    out.push_back(std::move(d));
    items_.pop_front();
    ++n;
  }
  return n;
}

void DeliveryQueue::wake() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  ready_.notify_all();
}

void DeliveryQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
}

std::uint64_t DeliveryQueue::events_dropped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_dropped_;
}

}  // namespace vms::engine
