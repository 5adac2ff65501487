// RTP and RTCP: the whole input is parsed as one RTP packet and as one compound RTCP packet; then
// it is read as a script for the reorder window, the sequence tracker and the timeline.
//
// Parsers: a packet that parses must account for every byte (header, CSRCs, extension, payload,
// padding); an RTCP compound that parses must hold spans inside the input, and its report blocks
// must survive write_receiver_report + parse_rtcp unchanged.
// Script: byte 0 the window capacity (1 + n % 32), byte 1 its max delay (n * 1000 us), then 8-byte
// records: u16 sequence, u32 RTP timestamp, u8 arrival step in ms, u8 flags (bit 0 the packet is
// 2000 bytes, larger than a slot; bit 1 call poll(); bit 2 a sender report for this timestamp,
// with bit 3 choosing an NTP time near the arrival time or a random one).
// Checked: the window's counts add up (every packet is released, held, late, a duplicate or
// oversized), released sequence numbers increase, skipped packets are reported to the next one;
// the tracker's extended numbers and loss counts agree; the timeline never goes backwards and its
// wall clock never moves faster than the allowed slew.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtp.hpp"

using namespace vms;

namespace {

bool inside(ByteSpan outer, ByteSpan inner) {
  return inner.empty() || (inner.data() >= outer.data() &&
                           inner.data() + inner.size() <= outer.data() + outer.size());
}

void check_packet(ByteSpan in) {
  rtp::Packet p;
  try {
    p = rtp::parse_packet(in);
  } catch (const BitstreamError&) {
    return;
  }
  const std::size_t ext = p.has_extension ? 4 + p.extension.size() : 0;
  FUZZ_CHECK(rtp::kHeaderSize + p.csrcs.size() + ext + p.payload.size() + p.padding == in.size());
  FUZZ_CHECK(p.csrcs.size() == std::size_t(p.csrc_count) * 4);
  FUZZ_CHECK(p.extension.size() % 4 == 0);
  FUZZ_CHECK(inside(in, p.payload) && inside(in, p.extension) && inside(in, p.csrcs));
  FUZZ_CHECK(p.data.data() == in.data() && p.data.size() == in.size());
  FUZZ_CHECK(p.payload_type < 128);
}

void check_rtcp(ByteSpan in) {
  rtp::RtcpCompound c;
  try {
    rtp::parse_rtcp(in, c);
  } catch (const BitstreamError&) {
    return;
  }
  FUZZ_CHECK(c.packets >= 1 && c.packets <= in.size() / 4);
  FUZZ_CHECK(c.reports.size() <= 31u * c.packets && c.sender_reports.size() <= c.packets);
  for (const rtp::SdesItem& i : c.sdes) FUZZ_CHECK(inside(in, i.text) && i.text.size() <= 255);
  for (const rtp::AppPacket& a : c.apps) FUZZ_CHECK(inside(in, a.data));
  const std::size_t count = std::min<std::size_t>(31, c.reports.size());
  const std::vector<rtp::ReceptionReport> blocks(c.reports.begin(),
                                                 c.reports.begin() + static_cast<std::ptrdiff_t>(count));
  Bytes out(rtp::receiver_report_size(blocks.size(), 7));
  fuzz::must_not_throw("write_receiver_report", [&] {
    FUZZ_CHECK(rtp::write_receiver_report(0x1234, blocks, "fuzzing", out) == out.size());
  });
  rtp::RtcpCompound back;
  fuzz::must_not_throw("parse_rtcp of our own report", [&] { rtp::parse_rtcp(out, back); });
  FUZZ_CHECK(back.packets == 2 && back.reports.size() == blocks.size() && back.sdes.size() == 1);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const rtp::ReceptionReport& a = blocks[i];
    const rtp::ReceptionReport& b = back.reports[i];
    FUZZ_CHECK(b.reporter_ssrc == 0x1234 && a.ssrc == b.ssrc && a.fraction_lost == b.fraction_lost);
    FUZZ_CHECK(a.cumulative_lost == b.cumulative_lost && a.highest_sequence == b.highest_sequence);
    FUZZ_CHECK(a.jitter == b.jitter && a.last_sr == b.last_sr && a.delay_since_last_sr == b.delay_since_last_sr);
  }
}

void run_script(ByteSpan data) {
  fuzz::Input in(data);
  rtp::ReorderOptions ro;
  ro.capacity = 1 + in.u8() % 32;
  ro.max_delay_us = std::int64_t(in.u8()) * 1000;
  ro.max_packet_size = 1500;
  rtp::ReorderWindow window(ro);
  rtp::SequenceTracker tracker;
  rtp::Timeline timeline;

  std::uint64_t lost_emitted = 0;
  bool have_released = false;
  std::uint16_t last_released = 0;
  std::uint64_t restarts_seen = 0;
  auto emit = [&](const rtp::Packet& p, std::uint32_t lost) {
    if (have_released && window.stats().restarts == restarts_seen) {
      const std::uint16_t step = static_cast<std::uint16_t>(p.sequence - last_released);
      // A packet may be up to 0x7FFF past the next expected one, which is one past the last
      // released: steps of up to 0x8000, each with the skipped packets reported as lost.
      FUZZ_CHECK(step >= 1 && step <= 0x8000);
      FUZZ_CHECK(step == lost + 1u);
    }
    restarts_seen = window.stats().restarts;
    have_released = true;
    last_released = p.sequence;
    lost_emitted += lost;
  };
  auto check_window = [&] {
    const rtp::ReorderStats& s = window.stats();
    FUZZ_CHECK(s.packets == s.released + window.held() + s.late + s.duplicates + s.oversized);
    FUZZ_CHECK(lost_emitted <= s.lost + s.restarts);
    FUZZ_CHECK(window.held() <= ro.capacity);
  };

  Bytes packet(2000, 0);
  std::int64_t now_us = 0;
  std::uint64_t since_init_in_order = 0, since_init_lost = 0;
  std::int64_t last_ticks = 0, max_ticks = 0, last_wall = 0, first_wall_ticks = 0;
  bool have_ticks = false, have_wall = false;
  while (in.remaining() >= 8) {
    const std::uint16_t seq = in.u16();
    const std::uint32_t ts = in.u32();
    now_us += std::int64_t(in.u8()) * 1000;
    const std::uint8_t flags = in.u8();

    rtp::Header h;
    h.sequence = seq;
    h.timestamp = ts;
    rtp::write_header(h, packet);
    const std::size_t size = (flags & 1) ? 2000 : 100;
    fuzz::must_not_throw("ReorderWindow::push", [&] { window.push(ByteSpan(packet.data(), size), now_us, emit); });
    check_window();
    if (flags & 2) {
      window.poll(now_us, emit);
      check_window();
      FUZZ_CHECK(window.held() == 0 || window.next_deadline_us() > now_us);
    }

    const std::uint64_t expected_before = tracker.expected();
    const rtp::SequenceResult r = tracker.update(seq);
    switch (r.event) {
      case rtp::SequenceEvent::First:
      case rtp::SequenceEvent::Restart:
        FUZZ_CHECK(tracker.expected() == 1);
        since_init_in_order = since_init_lost = 0;
        break;
      case rtp::SequenceEvent::InOrder:
        ++since_init_in_order;
        since_init_lost += r.lost;
        FUZZ_CHECK(tracker.expected() == expected_before + r.lost + 1);
        FUZZ_CHECK(r.lost < 0x8000);
        break;
      default:
        FUZZ_CHECK(tracker.expected() == expected_before);
        break;
    }
    FUZZ_CHECK(tracker.expected() == 1 + since_init_in_order + since_init_lost);
    tracker.update_jitter(ts, static_cast<std::uint32_t>(now_us / 11));

    if (flags & 4) {
      const std::uint64_t ntp = (flags & 8) ? rtp::unix_us_to_ntp(1'700'000'000'000'000 + now_us)
                                            : (std::uint64_t(ts) << 32 | seq);
      timeline.on_sender_report(ntp, ts);
      tracker.on_sender_report(ntp, now_us);
    }
    const std::int64_t ticks = timeline.advance(ts, now_us);
    if (have_ticks) {
      FUZZ_CHECK(ticks >= last_ticks);  // max_backward_ticks = 0: never backwards
      if (timeline.discontinuity()) FUZZ_CHECK(ticks > max_ticks);
    }
    const std::int64_t wall = timeline.wall_clock_us(ticks, 1'700'000'000'000'000 + now_us);
    if (!have_wall) first_wall_ticks = ticks;
    if (have_wall) {
      const double media = double(timeline.ticks_to_us(ticks) - timeline.ticks_to_us(last_ticks));
      const double slew = std::abs(double(wall - last_wall) - media);
      // Faster during the start-up window (from the first mapping), 500 ppm afterwards.
      const auto& o = timeline.options();
      const bool startup = double(timeline.ticks_to_us(ticks - first_wall_ticks)) < o.startup_s * 1e6;
      FUZZ_CHECK(slew <= media * (startup ? o.startup_slew_ppm : o.max_slew_ppm) / 1e6 + 2);
    }
    have_wall = have_ticks = true;
    last_wall = wall;
    last_ticks = ticks;
    max_ticks = std::max(max_ticks, ticks);
  }
  window.flush(emit);
  check_window();
  FUZZ_CHECK(window.held() == 0);
  FUZZ_CHECK(lost_emitted == window.stats().lost + window.stats().restarts);
  const rtp::ReceptionReport report = tracker.report(7, now_us);
  FUZZ_CHECK(report.ssrc == 7 && report.cumulative_lost <= 0x7FFFFF && report.cumulative_lost >= -0x800000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan in(data, size);
  check_packet(in);
  check_rtcp(in);
  run_script(in);
  return 0;
}
