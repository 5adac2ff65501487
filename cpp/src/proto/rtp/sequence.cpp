// Sequence-number tracking and reception statistics (RFC 3550 Appendix A.1, A.3, A.8).
// Pure code; see vmscore/rtp.hpp.
#include <algorithm>

#include "vmscore/rtp.hpp"

namespace vms::rtp {

void SequenceTracker::init(std::uint16_t sequence) {
  started_ = true;
  max_ = sequence;
  // Start one cycle up so that extended numbers of packets just behind the first stay positive.
  cycles_ = 0x10000;
  base_ = cycles_ + sequence;
  probation_next_ = 0x10000;
  window_[0] = window_[1] = 0;
  mark(base_);
  expected_prior_ = 0;
  received_prior_ = 0;
  received_ = 0;
}

void SequenceTracker::advance_window(std::uint64_t from, std::uint64_t to) {
  // Clears the flags of the sequence numbers (from, to] that the window now covers.
  if (to - from >= 128) {
    window_[0] = window_[1] = 0;
    return;
  }
  for (std::uint64_t e = from + 1; e <= to; ++e) window_[(e >> 6) & 1] &= ~(std::uint64_t(1) << (e & 63));
}

SequenceResult SequenceTracker::update(std::uint16_t sequence) {
  SequenceResult r;
  if (!started_) {
    init(sequence);
    ++received_;
    r.event = SequenceEvent::First;
    r.extended = base_;
    return r;
  }
  const std::uint16_t delta = static_cast<std::uint16_t>(sequence - max_);
  const std::uint64_t old_ext = extended_max();
  if (delta == 0) {
    ++duplicates_;
    ++received_;  // A.3 counts duplicates as received, which can make the loss negative
    r.event = SequenceEvent::Duplicate;
    r.extended = old_ext;
    return r;
  }
  if (delta < 0x8000) {
    if (sequence < max_) cycles_ += 0x10000;
    max_ = sequence;
    const std::uint64_t ext = extended_max();
    advance_window(old_ext, ext);
    mark(ext);
    probation_next_ = 0x10000;
    ++received_;
    r.event = SequenceEvent::InOrder;
    r.lost = static_cast<std::uint32_t>(delta - 1);
    r.extended = ext;
    return r;
  }
  const std::uint32_t behind = 0x10000u - delta;
  if (behind <= kMaxMisorder) {
    const std::uint64_t ext = old_ext - behind;
    r.extended = ext;
    ++received_;
    if (ext < base_) {
      // Older than the first packet: it was never expected, so it is not a late arrival.
      r.event = SequenceEvent::Late;
      ++late_;
      return r;
    }
    if (seen(ext)) {
      ++duplicates_;
      r.event = SequenceEvent::Duplicate;
    } else {
      mark(ext);
      ++late_;
      r.event = SequenceEvent::Late;
    }
    return r;
  }
  // Far behind: a reordering this large does not happen, so the sender probably restarted. Wait for
  // the next packet to confirm it (A.1), so that one stray packet cannot reset the statistics.
  if (sequence == probation_next_) {
    // A.1 starts the statistics over at a confirmed restart; the event counts continue.
    init(sequence);
    ++received_;
    ++restarts_;
    r.event = SequenceEvent::Restart;
    r.lost = 1;  // the packet held for probation was not delivered
    r.extended = extended_max();
    return r;
  }
  probation_next_ = static_cast<std::uint16_t>(sequence + 1);
  r.event = SequenceEvent::Probation;
  r.extended = old_ext;
  return r;
}

void SequenceTracker::update_jitter(std::uint32_t rtp_timestamp, std::uint32_t arrival_rtp_units) {
  const auto transit = static_cast<std::int32_t>(arrival_rtp_units - rtp_timestamp);
  if (have_transit_) {
    const std::int64_t d = std::int64_t(transit) - transit_;
    const std::uint32_t ad = static_cast<std::uint32_t>(std::min<std::int64_t>(d < 0 ? -d : d, 0x0FFFFFFF));
    // J += (|D| - J) / 16, kept as 16 J in integers (A.8).
    jitter_q4_ = jitter_q4_ + ad - ((jitter_q4_ + 8) >> 4);
  }
  transit_ = transit;
  have_transit_ = true;
}

void SequenceTracker::on_sender_report(std::uint64_t ntp_time, std::int64_t arrival_us) {
  have_sr_ = true;
  last_sr_ = ntp_middle(ntp_time);
  last_sr_arrival_us_ = arrival_us;
}

ReceptionReport SequenceTracker::report(std::uint32_t source_ssrc, std::int64_t now_us) {
  ReceptionReport r;
  r.ssrc = source_ssrc;
  const std::uint64_t expected = this->expected();
  const std::int64_t lost = this->lost();
  r.cumulative_lost = static_cast<std::int32_t>(std::clamp<std::int64_t>(lost, -0x800000, 0x7FFFFF));
  const std::int64_t expected_interval = static_cast<std::int64_t>(expected - expected_prior_);
  const std::int64_t received_interval = static_cast<std::int64_t>(received_ - received_prior_);
  expected_prior_ = expected;
  received_prior_ = received_;
  const std::int64_t lost_interval = expected_interval - received_interval;
  if (expected_interval > 0 && lost_interval > 0)
    r.fraction_lost = static_cast<std::uint8_t>(std::min<std::int64_t>(255, (lost_interval << 8) / expected_interval));
  r.highest_sequence = static_cast<std::uint32_t>(started_ ? extended_max() - 0x10000 : 0);
  r.jitter = jitter();
  if (have_sr_) {
    r.last_sr = last_sr_;
    const std::int64_t delay = std::max<std::int64_t>(0, now_us - last_sr_arrival_us_);
    r.delay_since_last_sr = static_cast<std::uint32_t>(std::min<std::int64_t>((delay * 65536) / 1'000'000, 0xFFFFFFFF));
  }
  return r;
}

}  // namespace vms::rtp
