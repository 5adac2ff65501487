// RTP depacketizers: RTP packets in sequence order in, access units out.
//
// Video: H.264 (RFC 6184 §5.6 single NAL unit, §5.7.1 STAP-A, §5.8 FU-A; packetization modes 0
// and 1) and H.265 (RFC 7798 §4.4.1 single NAL unit, §4.4.2 AP, §4.4.3 FU, with DONL/DOND fields
// when sprop-max-don-diff > 0). Access units come out in decode order as 4-byte length-prefixed NAL
// units (ISO/IEC 14496-15 sample format, what fmp4::Muxer takes with input_annexb = false).
// Audio: AAC (RFC 3640 mpeg4-generic, AU headers as the SDP's fmtp describes them) as one raw AAC
// frame per unit, and G.711 (RFC 3551 PCMU / PCMA) as one unit per packet.
//
// Camera quirks are handled on purpose (retina's catalogue): Annex-B start codes inside payloads,
// FU types changing inside one fragmented NAL unit, FU reserved bits, empty fragments, marker bits
// on SEI / parameter sets / AUDs, timestamps changing inside an access unit, packets of another
// payload type, SDP parameter sets that lie. Each is counted in DepacketizerStats; none is an error.
//
// Pure code: no I/O, threads or clocks. One depacketizer belongs to one thread at a time. Output
// bytes live in buffers the depacketizer owns and reuses, so once warm nothing is allocated per
// packet or per access unit. Malformed packets never throw: they are counted, the access unit they
// belong to is dropped, and video resumes at the next keyframe, so nothing corrupt is delivered.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"
#include "vmscore/rtp.hpp"

namespace vms::rtp {

enum class MediaKind : std::uint8_t { Video, Audio };

// One access unit (a coded picture, or one audio frame). `data` stays valid until the next push()
// or reset() of the depacketizer that returned it.
struct AccessUnit {
  MediaKind kind = MediaKind::Video;
  ByteSpan data;  // video: 4-byte length-prefixed NAL units; audio: one raw frame
  std::uint32_t rtp_timestamp = 0;
  bool keyframe = false;  // H.264 IDR, H.265 IRAP; every audio unit
  // Something is missing between the previous delivered unit and this one (lost packets or dropped
  // units). Never set on the first unit a depacketizer delivers.
  bool gap = false;
  std::uint32_t dropped_frames = 0;  // units assembled (or partly received) but not delivered
  std::uint32_t lost_packets = 0;    // RTP packets reported lost since the previous delivered unit
  // Video: the parameter sets differ from those current at the previous delivered unit (always true
  // for the first one): a new fMP4 init segment is needed.
  bool parameter_sets_changed = false;
  // Video: the parameter sets this unit decodes with (complete), for the init segment. Valid until
  // the next push() or reset(); when one packet completes two units, each has its own.
  const ParameterSets* parameter_sets = nullptr;
};

struct DepacketizerStats {
  std::uint64_t packets = 0;           // pushed
  std::uint64_t ignored_packets = 0;   // another payload type (e.g. ONVIF metadata), or empty
  std::uint64_t repeated_packets = 0;  // the same sequence number twice in a row: dropped
  std::uint64_t lost_packets = 0;      // as reported by the caller
  std::uint64_t access_units = 0;      // delivered
  std::uint64_t dropped_frames = 0;    // not delivered, for any of the reasons below
  std::uint64_t dropped_waiting_keyframe = 0;        // after start, loss or an error
  std::uint64_t dropped_waiting_parameter_sets = 0;  // no complete SPS/PPS(/VPS) yet
  std::uint64_t errors = 0;                 // malformed or unsupported payloads
  std::uint64_t unsupported_packets = 0;    // STAP-B, MTAP16/24, FU-B, PACI (interleaved modes)
  std::uint64_t oversized_access_units = 0; // beyond max_access_unit_bytes or max_nal_units
  // Camera quirks tolerated (counted so a camera's habits can be seen):
  std::uint64_t annexb_payloads = 0;          // start codes inside a payload (V380 and others)
  std::uint64_t fu_type_changes = 0;          // FU type changed inside one NAL unit (Tiandy)
  std::uint64_t fu_reserved_bits = 0;         // FU-A header R bit set
  std::uint64_t empty_fragments = 0;          // FU packets with no data bytes
  std::uint64_t marker_not_at_end = 0;        // marker on SEI / parameter set / AUD: AU continued
  std::uint64_t timestamp_changes_mid_au = 0; // new timestamp after SEI / parameter sets: continued
  std::uint64_t parameter_set_updates = 0;    // in-band VPS/SPS/PPS that changed the current ones
  std::uint64_t sdp_parameter_sets_rejected = 0;  // unparseable units given at construction
};

class Depacketizer {
 public:
  virtual ~Depacketizer() = default;

  // Feeds one RTP packet (sequence order; duplicates and late packets already removed) with the
  // number of packets lost right before it (SequenceTracker / ReorderWindow). Returns the units this
  // packet completed, oldest first: 0 to 2 for video (a timestamp change completes the previous
  // access unit, the marker bit the current one), any number of audio frames.
  virtual std::span<const AccessUnit> push(const Packet& packet, std::uint32_t lost) = 0;
  // Drops any partial unit (a reconnect, a new SSRC): video resumes at the next keyframe.
  virtual void reset() = 0;
  virtual MediaKind kind() const = 0;

  const DepacketizerStats& stats() const { return stats_; }
  // Why the last error was counted (a static string), or "" when none was.
  const char* last_error() const { return last_error_; }

 protected:
  // Whether the packet repeats the previous one's sequence number. Duplicates are the sequence
  // tracker's to remove, but one that slips through would splice a fragment in twice.
  bool repeated(const Packet& p) {
    if (have_sequence_ && p.sequence == sequence_) {
      ++stats_.repeated_packets;
      return true;
    }
    have_sequence_ = true;
    sequence_ = p.sequence;
    return false;
  }

  DepacketizerStats stats_;
  const char* last_error_ = "";

 private:
  bool have_sequence_ = false;
  std::uint16_t sequence_ = 0;
};

struct VideoDepacketizerOptions {
  // The SDP's payload type; packets of other types are ignored and counted. -1 accepts any.
  int payload_type = -1;
  // H.265 sprop-max-don-diff (RFC 7798 §7.1): above 0, packets carry DONL/DOND fields. They are
  // skipped; units are kept in transmission order (cameras do not interleave).
  int max_don_diff = 0;
  std::size_t max_access_unit_bytes = 16u << 20;
  std::size_t max_nal_units = 2048;  // per access unit
};

class VideoDepacketizer final : public Depacketizer {
 public:
  // `sdp` holds the parameter sets from the SDP (sprop-parameter-sets, sprop-vps/sps/pps), possibly
  // incomplete, empty or wrong: units that do not parse are dropped (and counted), Annex-B start
  // codes inside them are split, and in-band parameter sets replace them as soon as they arrive.
  VideoDepacketizer(Codec codec, const ParameterSets& sdp = {}, VideoDepacketizerOptions opt = {});

  std::span<const AccessUnit> push(const Packet& packet, std::uint32_t lost) override;
  void reset() override;
  MediaKind kind() const override { return MediaKind::Video; }

  Codec codec() const { return codec_; }
  // The current parameter sets (those of the last unit delivered, plus any in-band ones seen
  // since). AccessUnit::parameter_sets gives each delivered unit's.
  const ParameterSets& parameter_sets() const { return ps_; }
  const VideoDepacketizerOptions& options() const { return opt_; }

 private:
  struct Nal {
    std::uint32_t offset = 0;  // of its 4-byte length prefix in cur_
    std::uint32_t size = 0;
    std::uint8_t type = 0;
    NalKind kind = NalKind::Other;
    bool is_vcl = false;
    bool is_first_slice = false;
  };

  bool parse_h264(const Packet& p);
  bool parse_h265(const Packet& p);
  bool add_fragment(bool start, bool end, std::uint8_t type, const std::uint8_t* header,
                    std::size_t header_size, ByteSpan data);
  bool add_annexb(ByteSpan data);
  bool add_unit(ByteSpan unit);
  bool begin_nal(const std::uint8_t* header, std::size_t header_size);
  bool append(ByteSpan data);
  bool finish_nal();
  bool record_unit(std::size_t prefix_offset);
  bool fail(const char* why);
  void start_au(std::uint32_t timestamp);
  void drop_au();
  bool can_end_au() const;
  void finish_au();
  void update_parameter_sets();
  void keep_delivered_parameter_sets();
  void deliver(bool keyframe);

  Codec codec_;
  VideoDepacketizerOptions opt_;
  ParameterSets ps_;
  bool inband_seen_[3] = {false, false, false};  // VPS, SPS, PPS arrived in-band

  // The access unit being assembled.
  Bytes cur_;
  std::vector<Nal> nals_;
  bool au_active_ = false;
  std::uint32_t au_ts_ = 0;
  bool discard_ = false;       // the rest of this access unit is thrown away
  bool in_fu_ = false;         // a fragmented NAL unit is incomplete
  std::size_t nal_start_ = 0;  // offset of the open NAL unit's length prefix
  std::uint8_t fu_type_ = 0;
  bool uncertain_start_ = true;  // this access unit may be missing its first packets

  // Delivery state.
  bool need_keyframe_ = true;
  bool skip_rasl_ = false;  // H.265: after resuming at a CRA, its RASL pictures cannot be decoded
  bool delivered_any_ = false;
  bool gap_pending_ = false;  // reset() was called
  bool ps_changed_ = true;
  std::uint32_t pending_lost_ = 0;
  std::uint32_t pending_dropped_ = 0;

  ParameterSets ps_held_;  // the first unit's sets when the second unit of a push changes them
  Bytes scratch_;
  std::array<Bytes, 2> out_bytes_;
  std::array<AccessUnit, 2> out_;
  std::size_t out_count_ = 0;
};

// RFC 3640 §4.1 fmtp parameters of an mpeg4-generic stream (AAC-hbr: sizelength=13,
// indexlength=3, indexdeltalength=3; AAC-lbr: 6, 2, 2).
struct AacOptions {
  int payload_type = -1;
  int size_length = 13;
  int index_length = 3;
  int index_delta_length = 3;
  int cts_delta_length = 0;
  int dts_delta_length = 0;
  bool random_access_indication = false;
  int stream_state_indication = 0;
  int auxiliary_data_size_length = 0;
  std::uint32_t samples_per_frame = 1024;  // 960 for some AAC-LD streams
  std::size_t max_frame_bytes = 8191;      // what a 13-bit AU-size can say
};

class AacDepacketizer final : public Depacketizer {
 public:
  // Throws std::invalid_argument for field lengths RFC 3640 does not allow (size_length 0..32 etc.).
  explicit AacDepacketizer(AacOptions opt = {});
  std::span<const AccessUnit> push(const Packet& packet, std::uint32_t lost) override;
  void reset() override;
  MediaKind kind() const override { return MediaKind::Audio; }

 private:
  struct Header {
    std::uint32_t size;
    std::uint32_t index;
  };
  void emit(ByteSpan frame, std::uint32_t timestamp);
  void finish_outputs();
  void drop_fragment();

  AacOptions opt_;
  std::vector<Header> headers_;
  Bytes buf_;
  std::vector<std::size_t> offsets_;
  std::vector<AccessUnit> out_;
  Bytes frag_;  // a frame fragmented over several packets (§3.2.3)
  bool in_frag_ = false;
  std::uint32_t frag_size_ = 0;
  std::uint32_t frag_ts_ = 0;
  std::uint32_t pending_lost_ = 0;
  std::uint32_t pending_dropped_ = 0;
  bool delivered_any_ = false;
};

// PCMU / PCMA (RFC 3551 §4.5.14): every packet is one unit, passed through.
class G711Depacketizer final : public Depacketizer {
 public:
  explicit G711Depacketizer(int payload_type = -1) : payload_type_(payload_type) {}
  std::span<const AccessUnit> push(const Packet& packet, std::uint32_t lost) override;
  void reset() override {}
  MediaKind kind() const override { return MediaKind::Audio; }

 private:
  int payload_type_;
  Bytes buf_;
  AccessUnit out_;
  std::uint32_t pending_lost_ = 0;
  bool delivered_any_ = false;
};

}  // namespace vms::rtp
