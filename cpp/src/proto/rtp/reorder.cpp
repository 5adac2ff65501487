// Reorder window for RTP over UDP: packets are released in sequence order; gaps are skipped when
// the window is full or their wait expires. See vmscore/rtp.hpp. Pure code: "now" is an argument.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "vmscore/rtp.hpp"

namespace vms::rtp {

ReorderWindow::ReorderWindow(ReorderOptions opt) : opt_(opt) {
  if (opt_.capacity == 0 || opt_.capacity > 0x4000)
    throw std::invalid_argument("reorder window: capacity must be 1..16384 packets");
  if (opt_.max_packet_size < kHeaderSize || opt_.max_packet_size > 0xFFFF)
    throw std::invalid_argument("reorder window: max_packet_size must be 12..65535 bytes");
  if (opt_.max_delay_us < 0) throw std::invalid_argument("reorder window: max_delay_us is negative");
  slots_.resize(opt_.capacity);
  storage_.resize(opt_.capacity * opt_.max_packet_size);
}

void ReorderWindow::release_one(EmitFn emit, void* ctx) {
  Slot& s = slot(next_);
  if (s.used && s.ext == next_) {
    s.used = false;
    --held_;
    oldest_stale_ = true;
    ++stats_.released;
    const std::uint32_t lost = pending_lost_;
    pending_lost_ = 0;
    ++next_;
    // The copy was parsed when it arrived, so it parses again.
    emit(ctx, parse_packet(ByteSpan(slot_bytes(next_ - 1), s.size)), lost);
    return;
  }
  ++pending_lost_;
  ++stats_.lost;
  ++next_;
}

void ReorderWindow::release_ready(EmitFn emit, void* ctx) {
  while (held_ > 0) {
    const Slot& s = slot(next_);
    if (!s.used || s.ext != next_) return;
    release_one(emit, ctx);
  }
}

std::int64_t ReorderWindow::next_deadline_us() const {
  if (held_ == 0) return std::numeric_limits<std::int64_t>::max();
  if (oldest_stale_) {
    // Rescanned only after releases; holding a packet just takes the minimum.
    oldest_ = std::numeric_limits<std::int64_t>::max();
    for (const Slot& s : slots_)
      if (s.used) oldest_ = std::min(oldest_, s.arrival_us);
    oldest_stale_ = false;
  }
  const std::int64_t oldest = oldest_;
  // Saturating: a huge max_delay must not wrap around to the past.
  if (oldest > std::numeric_limits<std::int64_t>::max() - opt_.max_delay_us)
    return std::numeric_limits<std::int64_t>::max();
  return oldest + opt_.max_delay_us;
}

void ReorderWindow::expire(std::int64_t now_us, EmitFn emit, void* ctx) {
  // Held packets always sit behind a gap (release_ready ran), so each expiry skips one gap.
  while (held_ > 0 && next_deadline_us() <= now_us) {
    while (!slot(next_).used || slot(next_).ext != next_) release_one(emit, ctx);
    release_ready(emit, ctx);
  }
}

void ReorderWindow::restart_at(std::uint16_t sequence, EmitFn emit, void* ctx) {
  while (held_ > 0) release_one(emit, ctx);
  ++stats_.restarts;
  // A fresh cycle above everything so far keeps extended numbers increasing.
  next_ = (std::max(next_, highest_) & ~std::uint64_t(0xFFFF)) + 0x10000 + sequence;
  highest_ = next_;
  pending_lost_ = 1;  // the packet held for probation was dropped
  probation_next_ = 0x10000;
}

void ReorderWindow::push_impl(ByteSpan packet, std::int64_t now_us, EmitFn emit, void* ctx) {
  const Packet p = parse_packet(packet);
  ++stats_.packets;
  if (!started_) {
    started_ = true;
    next_ = 0x10000 + p.sequence;
    highest_ = next_;
  }
  auto delta = static_cast<std::int16_t>(static_cast<std::uint16_t>(p.sequence - static_cast<std::uint16_t>(next_)));
  if (delta < 0) {
    const std::size_t behind = static_cast<std::size_t>(-static_cast<int>(delta));
    const std::size_t late_limit = std::max<std::size_t>(2 * opt_.capacity, SequenceTracker::kMaxMisorder);
    if (behind <= late_limit) {
      // Its place was released (a duplicate) or skipped (it came too late): either way, too late.
      ++stats_.late;
      return;
    }
    // So far behind that the sender probably restarted its sequence numbers; the next packet
    // confirms it (RFC 3550 A.1's probation), so one stray packet cannot flush the window.
    if (p.sequence != probation_next_) {
      probation_next_ = static_cast<std::uint16_t>(p.sequence + 1);
      ++stats_.late;
      return;
    }
    restart_at(p.sequence, emit, ctx);
    delta = 0;
  }
  probation_next_ = 0x10000;
  const std::uint64_t ext = next_ + static_cast<std::uint64_t>(delta);
  if (ext > highest_)
    highest_ = ext;
  else if (ext < highest_)
    ++stats_.reordered;

  if (ext >= next_ + opt_.capacity) {
    // Beyond the window: release (or skip) the oldest places until it fits.
    while (held_ > 0 && ext >= next_ + opt_.capacity) {
      release_one(emit, ctx);
      release_ready(emit, ctx);
    }
    if (ext >= next_ + opt_.capacity) {
      const std::uint64_t skipped = ext - next_;
      stats_.lost += skipped;
      pending_lost_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(
          std::uint64_t(pending_lost_) + skipped, std::numeric_limits<std::uint32_t>::max()));
      next_ = ext;
    }
  }
  if (ext == next_) {
    // In order: straight through, no copy.
    ++stats_.released;
    const std::uint32_t lost = pending_lost_;
    pending_lost_ = 0;
    ++next_;
    emit(ctx, p, lost);
    release_ready(emit, ctx);
    expire(now_us, emit, ctx);
    return;
  }
  Slot& s = slot(ext);
  if (s.used) {
    ++stats_.duplicates;
    return;
  }
  if (packet.size() > opt_.max_packet_size) {
    ++stats_.oversized;
    return;
  }
  std::memcpy(slot_bytes(ext), packet.data(), packet.size());
  s.ext = ext;
  s.arrival_us = now_us;
  s.size = static_cast<std::uint32_t>(packet.size());
  s.used = true;
  if (held_++ == 0) {
    oldest_ = now_us;
    oldest_stale_ = false;
  } else if (!oldest_stale_) {
    oldest_ = std::min(oldest_, now_us);
  }
  expire(now_us, emit, ctx);
}

void ReorderWindow::poll_impl(std::int64_t now_us, EmitFn emit, void* ctx) { expire(now_us, emit, ctx); }

void ReorderWindow::flush_impl(EmitFn emit, void* ctx) {
  while (held_ > 0) release_one(emit, ctx);
}

}  // namespace vms::rtp
