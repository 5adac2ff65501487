// The per-stream ring of recent access units; see vmscore/record.hpp.
#include "vmscore/record.hpp"

namespace vms::record {

Ring::Ring(RingLimits limits, MemoryBudget* budget) : limits_(limits), budget_(budget) {}

Ring::~Ring() {
  if (budget_) budget_->sub(bytes_);
}

std::optional<std::uint64_t> Ring::push(const ingest::AccessUnit& au) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (au.kind != ingest::MediaKind::Video || (units_.empty() && !au.keyframe)) {
    ++skipped_;
    return std::nullopt;
  }
  const std::size_t size = au.data.span().size();
  units_.push_back(au);
  bytes_ += size;
  if (budget_) budget_->add(size);
  if (au.keyframe) ++keyframes_;
  const std::uint64_t seq = end_seq_++;
  trim_locked();
  return seq;
}

void Ring::pop_front_locked() {
  const std::size_t size = units_.front().data.span().size();
  if (units_.front().keyframe) --keyframes_;
  units_.pop_front();
  bytes_ -= size;
  if (budget_) budget_->sub(size);
  ++trimmed_;
}

void Ring::trim_locked() {
  // Whole GOPs go, oldest first, while a newer keyframe remains to start from.
  while (keyframes_ >= 2) {
    // The second keyframe: where the ring would start after dropping the first GOP.
    std::size_t next = 1;
    while (!units_[next].keyframe) ++next;
    const std::int64_t newest = units_.back().wall_us;
    const bool too_big = bytes_ > limits_.max_bytes || (budget_ && budget_->over());
    // Keeping time: drop the oldest GOP only if what remains still covers keep_us.
    const bool too_old = newest - units_[next].wall_us >= limits_.keep_us;
    if (!too_big && !too_old) break;
    for (std::size_t i = 0; i < next; ++i) pop_front_locked();
  }
}

std::uint64_t Ring::copy_from(std::uint64_t from_seq, std::vector<ingest::AccessUnit>& out,
                              std::size_t max_units) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t first = end_seq_ - units_.size();
  const std::uint64_t start = from_seq < first ? first : from_seq;
  for (std::uint64_t s = start; s < end_seq_ && max_units > 0; ++s, --max_units)
    out.push_back(units_[static_cast<std::size_t>(s - first)]);
  return start < end_seq_ ? start : end_seq_;
}

std::optional<std::uint64_t> Ring::keyframe_at_or_before(std::int64_t wall_us) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (units_.empty()) return std::nullopt;
  const std::uint64_t first = end_seq_ - units_.size();
  for (std::size_t i = units_.size(); i-- > 0;)
    if (units_[i].keyframe && units_[i].wall_us <= wall_us) return first + i;
  return first;  // the front is always a keyframe
}

std::optional<std::uint64_t> Ring::latest_keyframe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t first = end_seq_ - units_.size();
  for (std::size_t i = units_.size(); i-- > 0;)
    if (units_[i].keyframe) return first + i;
  return std::nullopt;
}

std::optional<std::uint64_t> Ring::keyframe_at_or_after(std::int64_t wall_us) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t first = end_seq_ - units_.size();
  for (std::size_t i = 0; i < units_.size(); ++i)
    if (units_[i].keyframe && units_[i].wall_us >= wall_us) return first + i;
  return std::nullopt;
}

RingStats Ring::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  RingStats s;
  s.units = units_.size();
  s.bytes = bytes_;
  s.keyframes = keyframes_;
  s.end_seq = end_seq_;
  s.first_seq = end_seq_ - units_.size();
  if (!units_.empty()) {
    s.first_wall_us = units_[0].wall_us;
    s.last_wall_us = units_[units_.size() - 1].wall_us;
  }
  s.trimmed_units = trimmed_;
  s.skipped_units = skipped_;
  return s;
}

void Ring::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  while (!units_.empty()) pop_front_locked();
}

}  // namespace vms::record
