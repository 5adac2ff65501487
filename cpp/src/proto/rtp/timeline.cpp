// The per-stream media timeline: RTP timestamps unwrapped to 64 bits, camera timestamp resets
// absorbed, wall-clock mapping slewed toward sender reports or arrival times (Moonfire NVR's
// design/time.md: at most 500 ppm once settled, faster during start-up). See vmscore/rtp.hpp. Pure code: times are arguments.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "vmscore/rtp.hpp"

namespace vms::rtp {

Timeline::Timeline(TimelineOptions opt) : opt_(opt) {
  if (opt_.clock_rate == 0) throw std::invalid_argument("timeline: clock_rate must be positive");
  if (!(opt_.max_forward_jump_s > 0) || !(opt_.max_slew_ppm >= 0) ||
      !(opt_.max_sender_report_error_s > 0) || !(opt_.startup_s >= 0) ||
      !(opt_.startup_slew_ppm >= 0) || !(opt_.startup_slew_ppm < 1e6))
    throw std::invalid_argument("timeline: jump, slew and error limits must be positive");
  if (opt_.frame_duration_ticks == 0) opt_.frame_duration_ticks = std::max(1u, opt_.clock_rate / 25);
  // A step of 2^31 ticks or more cannot be told from a step backwards: cap the limit below it.
  const double ticks = opt_.max_forward_jump_s * opt_.clock_rate;
  max_forward_ticks_ = ticks >= 2147483647.0 ? 2147483647 : std::max<std::int64_t>(1, std::llround(ticks));
}

std::int64_t Timeline::ticks_to_us(std::int64_t ticks) const {
  const std::int64_t rate = opt_.clock_rate;
  return (ticks / rate) * 1'000'000 + ((ticks % rate) * 1'000'000) / rate;
}

std::int64_t Timeline::advance(std::uint32_t rtp_timestamp, std::int64_t arrival_us) {
  discontinuity_ = false;
  const bool have_arrival = arrival_us != kNoArrival;
  if (!started_) {
    started_ = true;
    last_raw_ = rtp_timestamp;
    last_ticks_ = max_ticks_ = 0;
    have_last_arrival_ = have_arrival;
    last_arrival_us_ = arrival_us;
    return 0;
  }
  const std::int64_t delta = static_cast<std::int32_t>(rtp_timestamp - last_raw_);
  std::int64_t elapsed_ticks = -1;  // arrival time elapsed since the previous call, in ticks
  if (have_arrival && have_last_arrival_ && arrival_us >= last_arrival_us_) {
    const std::int64_t us = arrival_us - last_arrival_us_;
    elapsed_ticks = (us / 1'000'000) * opt_.clock_rate + ((us % 1'000'000) * opt_.clock_rate) / 1'000'000;
  }
  bool jump = delta < -static_cast<std::int64_t>(opt_.max_backward_ticks) || delta > max_forward_ticks_;
  // A long forward step that the arrival times also show is time that really passed (the stream
  // stalled), not a camera resetting its clock.
  if (jump && delta > 0 && elapsed_ticks >= 0 && std::abs(delta - elapsed_ticks) <= max_forward_ticks_)
    jump = false;
  std::int64_t ticks;
  if (jump) {
    // Continue after the furthest point so far: one nominal frame later, or as much later as the
    // arrival times say, so the wall-clock mapping stays close.
    ticks = max_ticks_ + std::max<std::int64_t>(opt_.frame_duration_ticks, elapsed_ticks);
    discontinuity_ = true;
    ++stats_.discontinuities;
    // A sender report maps the camera's old RTP time base; the next one maps the new one.
    have_sr_ = false;
  } else {
    ticks = last_ticks_ + delta;
    if (delta > 0 && rtp_timestamp < last_raw_) ++stats_.wraps;
  }
  last_raw_ = rtp_timestamp;
  last_ticks_ = ticks;
  max_ticks_ = std::max(max_ticks_, ticks);
  if (have_arrival) {
    have_last_arrival_ = true;
    last_arrival_us_ = arrival_us;
  }
  return ticks;
}

void Timeline::on_sender_report(std::uint64_t ntp_time, std::uint32_t rtp_time) {
  if (ntp_time == 0) {
    // Cameras without a synchronised clock send zeros.
    ++stats_.sender_reports_ignored;
    return;
  }
  // Mapped at the next wall_clock_us() call, against the arrival time it brings.
  sr_pending_ = true;
  sr_ntp_ = ntp_time;
  sr_rtp_ = rtp_time;
}

std::int64_t Timeline::wall_clock_us(std::int64_t ticks, std::int64_t arrival_unix_us) {
  const std::int64_t media_us = ticks_to_us(ticks);
  const std::int64_t arrival_target = arrival_unix_us - media_us;
  if (sr_pending_ && started_) {
    sr_pending_ = false;
    const std::int64_t sr_ticks = last_ticks_ + static_cast<std::int32_t>(sr_rtp_ - last_raw_);
    const std::int64_t target = ntp_to_unix_us(sr_ntp_) - ticks_to_us(sr_ticks);
    const double error_us = std::abs(static_cast<double>(target - arrival_target));
    if (error_us > opt_.max_sender_report_error_s * 1e6) {
      // The camera's clock is wrong (not synchronised, or still at its factory date).
      ++stats_.sender_reports_ignored;
    } else {
      have_sr_ = true;
      sr_target_us_ = target;
      ++stats_.sender_reports;
    }
  }
  if (!have_offset_) {
    have_offset_ = true;
    offset_us_ = have_sr_ ? sr_target_us_ : arrival_target;
    min_arrival_target_ = arrival_target;
    first_ticks_ = adjusted_at_ = ticks;
    return media_us + offset_us_;
  }
  const bool startup = static_cast<double>(ticks_to_us(ticks - first_ticks_)) < opt_.startup_s * 1e6;
  // A frame arrives after it was taken, never before: during start-up the earliest arrival is the
  // best estimate (a burst of old frames at the start only raises the others).
  if (startup) min_arrival_target_ = std::min(min_arrival_target_, arrival_target);
  const std::int64_t target = have_sr_ ? sr_target_us_ : startup ? min_arrival_target_ : arrival_target;
  if (ticks > adjusted_at_) {
    const double elapsed_us = static_cast<double>(ticks_to_us(ticks - adjusted_at_));
    const double ppm = startup ? opt_.startup_slew_ppm : opt_.max_slew_ppm;
    const auto limit = static_cast<std::int64_t>(elapsed_us * ppm / 1e6);
    offset_us_ += std::clamp(target - offset_us_, -limit, limit);
    adjusted_at_ = ticks;
  }
  return media_us + offset_us_;
}

}  // namespace vms::rtp
