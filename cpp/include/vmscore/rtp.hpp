// RTP and RTCP for camera ingest: the RTP fixed header (RFC 3550 §5.1, header extensions §5.3.1;
// RFC 8285 one- and two-byte extensions are carried as opaque data), RTCP compound packets
// (RFC 3550 §6.4 SR/RR, §6.5 SDES, §6.6 BYE, §6.7 APP; validity checks of Appendix A.2),
// receiver-report statistics (Appendix A.1 sequence tracking, A.3 loss, A.8 jitter), a reorder
// window for RTP over UDP, and the per-stream media timeline (32-bit RTP time to a monotonic 64-bit
// timeline, with camera timestamp resets absorbed and wall-clock time from sender reports).
//
// Pure code: bytes in, structures out; no sockets, threads or clocks (every time is an argument).
// Parsers throw vms::BitstreamError on malformed bytes and never read outside the span they are
// given. Each object belongs to one thread at a time. Nothing here allocates per packet once warm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vmscore/bytes.hpp"

namespace vms::rtp {

constexpr std::size_t kHeaderSize = 12;  // the fixed header, without CSRCs or extension

// One parsed RTP packet. Every span points into the bytes given to parse_packet (no copies).
struct Packet {
  bool marker = false;
  std::uint8_t payload_type = 0;
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;
  std::uint32_t ssrc = 0;
  std::uint8_t csrc_count = 0;
  ByteSpan csrcs;  // csrc_count big-endian 32-bit identifiers
  bool has_extension = false;
  // "defined by profile": 0xBEDE for RFC 8285 one-byte elements, 0x100x for two-byte ones.
  std::uint16_t extension_profile = 0;
  ByteSpan extension;        // the extension data after its 4-byte header (a multiple of 4 bytes)
  std::uint8_t padding = 0;  // padding bytes removed from the end (0 when the P bit is clear)
  ByteSpan payload;
  ByteSpan data;  // the whole packet as given
};

// Parses and validates one RTP packet: version 2, CSRC list, extension and padding lengths that fit.
Packet parse_packet(ByteSpan data);

// The fields a sender chooses; write_header writes the 12-byte fixed header (version 2, no padding,
// no extension, no CSRC) to `out`, which must hold at least kHeaderSize bytes.
struct Header {
  bool marker = false;
  std::uint8_t payload_type = 96;
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;
  std::uint32_t ssrc = 0;
};
void write_header(const Header& h, std::span<std::uint8_t> out);

// ---------------------------------------------------------------------------------------------
// RTCP

enum RtcpType : std::uint8_t {
  kRtcpSenderReport = 200,
  kRtcpReceiverReport = 201,
  kRtcpSdes = 202,
  kRtcpBye = 203,
  kRtcpApp = 204,
};

// RFC 3550 §6.4.1 sender info. ntp_time is the 64-bit NTP timestamp (seconds since 1900 in the high
// 32 bits, binary fraction in the low 32).
struct SenderReport {
  std::uint32_t ssrc = 0;
  std::uint64_t ntp_time = 0;
  std::uint32_t rtp_time = 0;
  std::uint32_t packet_count = 0;
  std::uint32_t octet_count = 0;
};

// One report block of an SR or RR (§6.4.1), also what a receiver writes about a source.
struct ReceptionReport {
  std::uint32_t reporter_ssrc = 0;  // the SR/RR sender (filled by parse_rtcp; ignored when writing)
  std::uint32_t ssrc = 0;           // the source reported on
  std::uint8_t fraction_lost = 0;   // lost / expected since the previous report, in 1/256
  std::int32_t cumulative_lost = 0; // 24-bit signed on the wire (duplicates make it negative)
  std::uint32_t highest_sequence = 0;  // extended highest sequence number received
  std::uint32_t jitter = 0;            // interarrival jitter in timestamp units
  std::uint32_t last_sr = 0;           // middle 32 bits of the NTP time of the last SR, or 0
  std::uint32_t delay_since_last_sr = 0;  // in 1/65536 s, or 0 when no SR was received
};

// One SDES item (§6.5): type 1 CNAME, 2 NAME, ... 8 PRIV. text points into the parsed bytes.
struct SdesItem {
  std::uint32_t ssrc = 0;
  std::uint8_t type = 0;
  ByteSpan text;
};

struct AppPacket {
  std::uint32_t ssrc = 0;
  std::uint8_t subtype = 0;
  char name[4] = {};
  ByteSpan data;
};

// What one compound packet carries. The caller keeps one instance and passes it to every
// parse_rtcp call: the vectors are cleared, not freed, so parsing allocates nothing once warm.
struct RtcpCompound {
  std::vector<SenderReport> sender_reports;
  std::vector<ReceptionReport> reports;
  std::vector<SdesItem> sdes;
  std::vector<std::uint32_t> byes;  // SSRCs that said goodbye
  std::vector<AppPacket> apps;
  // Packets of other types (XR 207, feedback 205/206, ...): length-checked and skipped.
  std::uint32_t other_packets = 0;
  std::uint32_t packets = 0;  // RTCP packets in the compound

  void clear() {
    sender_reports.clear();
    reports.clear();
    sdes.clear();
    byes.clear();
    apps.clear();
    other_packets = 0;
    packets = 0;
  }
};

// Parses a compound RTCP packet (or a single one) into `out` (cleared first). Every packet must have
// version 2 and a length that fits; padding (P bit) must fit its packet. The rule that a compound
// starts with an SR or RR is not enforced: cameras send lone SRs and BYEs, and they still carry
// usable information.
void parse_rtcp(ByteSpan data, RtcpCompound& out);

// Size of the compound packet write_receiver_report writes: an RR with `blocks` report blocks
// followed by an SDES with one CNAME chunk (RFC 3550 §6.1: every compound carries a CNAME).
std::size_t receiver_report_size(std::size_t blocks, std::size_t cname_size);
// Writes RR + SDES(CNAME) into `out`; returns the bytes written. At most 31 blocks and a CNAME of
// at most 255 bytes; throws std::length_error when `out` is too small (receiver_report_size).
std::size_t write_receiver_report(std::uint32_t ssrc, std::span<const ReceptionReport> blocks,
                                  std::string_view cname, std::span<std::uint8_t> out);
// The same for a sender (the camera simulator): SR (no report blocks) + SDES(CNAME).
std::size_t sender_report_size(std::size_t cname_size);
std::size_t write_sender_report(const SenderReport& sr, std::string_view cname,
                                std::span<std::uint8_t> out);

// NTP time to microseconds since the Unix epoch. Era 0 timestamps with the top bit clear are read as
// era 1 (after 2036-02-07), as RFC 4330 §3 recommends.
std::int64_t ntp_to_unix_us(std::uint64_t ntp_time);
std::uint64_t unix_us_to_ntp(std::int64_t unix_us);
// The middle 32 bits of an NTP timestamp: the LSR field of report blocks.
inline std::uint32_t ntp_middle(std::uint64_t ntp_time) {
  return static_cast<std::uint32_t>(ntp_time >> 16);
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers and reception statistics (RFC 3550 Appendix A.1, A.3, A.8)

enum class SequenceEvent : std::uint8_t {
  First,      // the first packet of the source
  InOrder,    // newer than every packet before it; `lost` packets are missing right before it
  Restart,    // the sender restarted its sequence (a far jump confirmed by the next packet)
  Duplicate,  // a copy of a packet already received
  Late,       // arrived after newer packets (reordered; counted lost when they passed it)
  Probation,  // a far jump backwards, held for confirmation by the next packet
};

// Whether the caller should hand the packet on (to the depacketizer, in arrival order).
inline bool deliverable(SequenceEvent e) {
  return e == SequenceEvent::First || e == SequenceEvent::InOrder || e == SequenceEvent::Restart;
}

struct SequenceResult {
  SequenceEvent event = SequenceEvent::First;
  std::uint32_t lost = 0;       // packets missing right before this one (InOrder, Restart)
  // Extended sequence number, 65536 * cycle + sequence; the first packet is in cycle 1, so that
  // packets just before it stay positive.
  std::uint64_t extended = 0;
};

// Tracks one source's sequence numbers for loss detection and receiver reports. A forward jump of
// less than 0x8000 is loss (over TCP too: cameras drop packets in their own send queues). A packet
// up to kMaxMisorder behind the newest is a duplicate or a late (reordered) arrival. Anything further
// behind is a restart once the next packet confirms it (Appendix A.1's probation, which Tapo and
// other cameras need after they reset their sequence numbers).
class SequenceTracker {
 public:
  static constexpr std::uint32_t kMaxMisorder = 100;

  SequenceResult update(std::uint16_t sequence);
  // Interarrival jitter (A.8): the packet's RTP timestamp and its arrival time converted to the same
  // clock by the caller (arrival seconds * clock rate, wrapping modulo 2^32).
  void update_jitter(std::uint32_t rtp_timestamp, std::uint32_t arrival_rtp_units);
  // Remembers the last sender report for the LSR / DLSR fields.
  void on_sender_report(std::uint64_t ntp_time, std::int64_t arrival_us);
  // A report block about `source_ssrc` (A.3): fraction lost since the previous call, cumulative
  // lost, highest extended sequence, jitter, LSR and DLSR (relative to now_us).
  ReceptionReport report(std::uint32_t source_ssrc, std::int64_t now_us);
  void reset() { *this = SequenceTracker(); }

  bool started() const { return started_; }
  std::uint64_t received() const { return received_; }
  std::uint64_t expected() const { return started_ ? extended_max() - base_ + 1 : 0; }
  std::int64_t lost() const {
    return static_cast<std::int64_t>(expected()) - static_cast<std::int64_t>(received_);
  }
  std::uint64_t extended_max() const { return cycles_ + max_; }
  std::uint64_t duplicates() const { return duplicates_; }
  std::uint64_t late() const { return late_; }
  std::uint64_t restarts() const { return restarts_; }
  std::uint32_t jitter() const { return jitter_q4_ >> 4; }

 private:
  void init(std::uint16_t sequence);
  bool seen(std::uint64_t ext) const { return (window_[(ext >> 6) & 1] >> (ext & 63)) & 1; }
  void mark(std::uint64_t ext) { window_[(ext >> 6) & 1] |= std::uint64_t(1) << (ext & 63); }
  void advance_window(std::uint64_t from, std::uint64_t to);

  bool started_ = false;
  std::uint16_t max_ = 0;
  std::uint64_t cycles_ = 0;  // count of wraps << 16
  std::uint64_t base_ = 0;    // extended sequence of the first packet
  std::uint32_t probation_next_ = 0x10000;  // the sequence that confirms a restart (none: 0x10000)
  std::uint64_t window_[2] = {0, 0};         // received flags of the 128 newest sequence numbers
  std::uint64_t received_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t late_ = 0;
  std::uint64_t restarts_ = 0;
  std::uint64_t expected_prior_ = 0;
  std::uint64_t received_prior_ = 0;
  bool have_transit_ = false;
  std::int32_t transit_ = 0;
  std::uint32_t jitter_q4_ = 0;  // jitter * 16 (A.8's integer form)
  bool have_sr_ = false;
  std::uint32_t last_sr_ = 0;
  std::int64_t last_sr_arrival_us_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Reorder window (RTP over UDP)

struct ReorderOptions {
  std::size_t capacity = 64;           // packets held at most
  std::size_t max_packet_size = 2048;  // bytes per slot; larger packets are only passed through
  std::int64_t max_delay_us = 100'000; // how long a gap may hold back the packets after it
};

struct ReorderStats {
  std::uint64_t packets = 0;     // pushed (parsed)
  std::uint64_t released = 0;    // handed on, in sequence order
  std::uint64_t reordered = 0;   // arrived after a newer packet and were put back in order
  std::uint64_t lost = 0;        // sequence numbers skipped (never arrived in time)
  std::uint64_t late = 0;        // arrived after their place was released or skipped: dropped
  std::uint64_t duplicates = 0;  // dropped
  std::uint64_t oversized = 0;   // out of order and larger than a slot: dropped
  std::uint64_t restarts = 0;    // the sender restarted its sequence numbers
};

// Puts RTP packets arriving over UDP back in sequence order. Packets are copied into preallocated
// slots only when they arrive out of order; in-order packets pass straight through. A gap is skipped
// (its packets counted lost) when the window is full or the first packet waiting behind it has
// waited max_delay_us. Released packets go to a callback `emit(const Packet&, std::uint32_t lost)`
// with the number of packets skipped right before each, which is what a depacketizer takes. The
// packet bytes are valid only during the callback.
class ReorderWindow {
 public:
  explicit ReorderWindow(ReorderOptions opt = {});

  // Parses `packet` (throws BitstreamError, leaving the window unchanged) and releases what it can.
  template <typename Emit>
  void push(ByteSpan packet, std::int64_t now_us, Emit&& emit) {
    push_impl(packet, now_us, &trampoline<std::remove_reference_t<Emit>>, &emit);
  }
  // Skips gaps whose wait has expired; call it when next_deadline_us() has passed.
  template <typename Emit>
  void poll(std::int64_t now_us, Emit&& emit) {
    poll_impl(now_us, &trampoline<std::remove_reference_t<Emit>>, &emit);
  }
  // Releases everything held, skipping gaps (at the end of a session).
  template <typename Emit>
  void flush(Emit&& emit) {
    flush_impl(&trampoline<std::remove_reference_t<Emit>>, &emit);
  }
  // When poll() has work to do, or INT64_MAX when nothing waits behind a gap.
  std::int64_t next_deadline_us() const;
  std::size_t held() const { return held_; }
  const ReorderStats& stats() const { return stats_; }
  const ReorderOptions& options() const { return opt_; }

 private:
  using EmitFn = void (*)(void* ctx, const Packet& packet, std::uint32_t lost);
  template <typename F>
  static void trampoline(void* ctx, const Packet& packet, std::uint32_t lost) {
    (*static_cast<F*>(ctx))(packet, lost);
  }
  struct Slot {
    std::uint64_t ext = 0;
    std::int64_t arrival_us = 0;
    std::uint32_t size = 0;
    bool used = false;
  };
  void push_impl(ByteSpan packet, std::int64_t now_us, EmitFn emit, void* ctx);
  void poll_impl(std::int64_t now_us, EmitFn emit, void* ctx);
  void flush_impl(EmitFn emit, void* ctx);
  void release_ready(EmitFn emit, void* ctx);
  void release_one(EmitFn emit, void* ctx);  // the slot of next_, or a skip when it is empty
  void expire(std::int64_t now_us, EmitFn emit, void* ctx);
  void restart_at(std::uint16_t sequence, EmitFn emit, void* ctx);
  Slot& slot(std::uint64_t ext) { return slots_[ext % slots_.size()]; }
  std::uint8_t* slot_bytes(std::uint64_t ext) {
    return storage_.data() + (ext % slots_.size()) * opt_.max_packet_size;
  }

  ReorderOptions opt_;
  std::vector<Slot> slots_;
  Bytes storage_;
  bool started_ = false;
  std::uint64_t next_ = 0;     // extended sequence number released next
  std::uint64_t highest_ = 0;  // highest extended sequence number seen
  std::size_t held_ = 0;
  std::uint32_t pending_lost_ = 0;  // skipped right before the next released packet
  std::uint32_t probation_next_ = 0x10000;
  // Arrival time of the oldest held packet, for the deadline; recomputed lazily after releases.
  mutable std::int64_t oldest_ = 0;
  mutable bool oldest_stale_ = false;
  ReorderStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Timeline

struct TimelineOptions {
  std::uint32_t clock_rate = 90'000;
  // A forward step larger than this is a camera timestamp jump, not elapsed time (retina uses 10 s).
  double max_forward_jump_s = 10.0;
  // Backward steps up to this many ticks are presentation-order reordering (B-frames, whose RTP
  // timestamps are presentation times), not a reset. 0: any backward step is a discontinuity.
  std::uint32_t max_backward_ticks = 0;
  // Where the timeline continues after a discontinuity: the previous maximum plus this step (a
  // nominal frame duration; for audio, the samples per frame). 0: clock_rate / 25.
  std::uint32_t frame_duration_ticks = 0;
  // Wall clock: the largest correction rate, in parts per million of elapsed media time (Moonfire).
  double max_slew_ppm = 500.0;
  // For the first startup_s of media the mapping converges faster, at startup_slew_ppm, and from
  // arrival times it follows their minimum: a camera joined mid-GOP sends that GOP at once, so
  // its first frames arrive up to a GOP after they were taken, and the first arrival alone would
  // put the whole stream ahead by that much for hours at 500 ppm. Still a slew, never a step, so
  // wall-clock time stays increasing.
  double startup_s = 60.0;
  double startup_slew_ppm = 100'000.0;
  // A sender report whose wall-clock time disagrees with the arrival-based estimate by more than this
  // is from a camera whose clock is wrong (no NTP, or still at its factory date): it is ignored.
  double max_sender_report_error_s = 5.0;
};

struct TimelineStats {
  std::uint64_t discontinuities = 0;  // timestamp resets and jumps absorbed
  std::uint64_t wraps = 0;            // 32-bit wraparounds unwrapped
  std::uint64_t sender_reports = 0;   // used for the wall clock
  std::uint64_t sender_reports_ignored = 0;  // zero NTP time, or a clock too far from ours
};

// A monotonic 64-bit timeline per stream from 32-bit RTP timestamps. The first timestamp maps to 0;
// later ones advance by their (wrapping) difference. A camera that resets or jumps its timestamps
// (backwards beyond max_backward_ticks, or forward beyond max_forward_jump_s) does not break the
// timeline: it continues from its maximum plus one frame duration, and the jump is counted and
// flagged, so decode timestamps downstream stay increasing.
//
// Wall clock: the time of a tick is ticks / clock_rate + an offset. The offset starts from the first
// arrival time; afterwards it moves toward its reference (the sender reports' NTP <-> RTP mapping
// when the camera sends usable ones, else arrival times: their minimum during start-up) by at most
// max_slew_ppm of the media time elapsed (startup_slew_ppm during the first startup_s), so
// wall-clock durations stay smooth (Moonfire NVR's 500 ppm rule once settled).
class Timeline {
 public:
  explicit Timeline(TimelineOptions opt = {});

  static constexpr std::int64_t kNoArrival = std::numeric_limits<std::int64_t>::min();

  // The timeline position of an RTP timestamp, in clock ticks. With arrival times (any monotonic
  // microsecond clock), a long forward step that the arrival times confirm is elapsed time (a stalled
  // stream), not a jump, and the timeline continues after a jump by the arrival time elapsed when
  // that is longer than a frame.
  std::int64_t advance(std::uint32_t rtp_timestamp, std::int64_t arrival_us = kNoArrival);
  // Whether the last advance() absorbed a discontinuity.
  bool discontinuity() const { return discontinuity_; }
  bool started() const { return started_; }
  std::int64_t last() const { return last_ticks_; }

  // An RTCP sender report of this stream's source, as received.
  void on_sender_report(std::uint64_t ntp_time, std::uint32_t rtp_time);
  // Microseconds since the Unix epoch of timeline position `ticks` (an access unit's, just returned by
  // advance()), given its arrival time; updates the mapping with this observation.
  std::int64_t wall_clock_us(std::int64_t ticks, std::int64_t arrival_unix_us);
  bool has_sender_report() const { return have_sr_; }

  const TimelineStats& stats() const { return stats_; }
  const TimelineOptions& options() const { return opt_; }
  std::int64_t ticks_to_us(std::int64_t ticks) const;

 private:
  TimelineOptions opt_;
  std::int64_t max_forward_ticks_ = 0;
  bool started_ = false;
  bool discontinuity_ = false;
  std::uint32_t last_raw_ = 0;
  std::int64_t last_ticks_ = 0;
  std::int64_t max_ticks_ = 0;
  bool have_last_arrival_ = false;
  std::int64_t last_arrival_us_ = 0;
  // Wall clock.
  bool have_offset_ = false;
  std::int64_t offset_us_ = 0;       // wall = ticks_to_us(ticks) + offset
  std::int64_t first_ticks_ = 0;     // ticks of the first mapping (the start-up window's origin)
  std::int64_t min_arrival_target_ = 0;  // lowest arrival-based offset seen during start-up
  std::int64_t adjusted_at_ = 0;     // ticks of the last adjustment
  bool have_sr_ = false;             // a usable sender report has been seen
  bool sr_pending_ = false;          // received, checked and mapped at the next wall_clock_us()
  std::uint64_t sr_ntp_ = 0;
  std::uint32_t sr_rtp_ = 0;
  std::int64_t sr_target_us_ = 0;    // the offset the last usable sender report implies
  TimelineStats stats_;
};

}  // namespace vms::rtp
