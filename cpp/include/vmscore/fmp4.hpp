// Fragmented MP4 (ISO/IEC 14496-12) for one H.264 or H.265 video track at a 90 kHz timescale:
// the init segment (ftyp + moov with mvex/trex and empty sample tables) and media fragments
// (moof: mfhd, traf with tfhd default-base-is-moof, tfdt version 1, trun version 1; then mdat), as
// required by the W3C MSE ISO BMFF byte-stream format and played by ffmpeg and browsers.
//
// Pure code: the muxer hands finished pieces to a Sink; it never does I/O itself. One Muxer belongs
// to one thread at a time. Buffers are reused, so after the first GOPs no allocation happens per
// access unit.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace vms::fmp4 {

constexpr std::uint32_t kTimescale = 90000;
constexpr std::uint32_t kKeyframeFlags = 0x02000000;     // depends_on=2 (I), sync sample
constexpr std::uint32_t kNonKeyframeFlags = 0x01010000;  // depends_on=1, non-sync

// The init segment (ftyp + moov) for a track described by complete parameter sets.
Bytes make_init_segment(const ParameterSets& ps);

// Receives finished output as a list of parts to be written back to back (one writev).
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(std::span<const ByteSpan> parts) = 0;
};

// Collects output in memory (for live viewers, tests and Python callers).
class BytesSink final : public Sink {
 public:
  void write(std::span<const ByteSpan> parts) override {
    for (ByteSpan p : parts) data.insert(data.end(), p.begin(), p.end());
  }
  Bytes data;
};

struct MuxerOptions {
  // 0: one fragment per GOP. >0: a fragment is also cut when it reaches this duration, so long
  // GOPs still reach the disk (or a live viewer) in time; 1 gives one fragment per frame.
  std::int64_t fragment_duration_90k = 0;
  // Duration of a final sample that nothing follows and that has no predecessor to copy from.
  std::uint32_t default_duration_90k = 3000;
  // Access units arrive in Annex-B; otherwise 4-byte length-prefixed.
  bool input_annexb = true;
};

// Where a fragment landed, for a recording index (seeking) and for live viewers.
struct FragmentInfo {
  std::uint32_t sequence = 0;
  std::uint64_t offset = 0;       // bytes from the start of the output (the init segment included)
  std::uint64_t size = 0;         // moof + mdat
  std::int64_t base_dts_90k = 0;  // tfdt, after rebasing
  std::int64_t duration_90k = 0;
  std::uint32_t samples = 0;
  bool starts_with_keyframe = false;
};

struct MuxerStats {
  std::uint64_t bytes = 0;
  std::uint64_t fragments = 0;
  std::uint64_t samples = 0;
  std::uint64_t dropped_before_keyframe = 0;
};

class Muxer {
 public:
  // `ps` may be incomplete: the init segment is then built from the parameter sets carried in-band
  // by the first keyframe.
  Muxer(ParameterSets ps, MuxerOptions opt, Sink& sink);

  // Adds one access unit in decode order. Units before the first keyframe are dropped and counted.
  // Parameter sets, AUDs and filler are taken out of the samples (they live in the init segment);
  // an in-band parameter set that differs from the init segment's throws ParametersChangedError
  // before anything is changed, so the caller can start a new file with this unit.
  // Returns true when the unit was taken (false when dropped before the first keyframe).
  // Timestamps are 90 kHz; dts must increase; pts - dts must fit 32 bits signed.
  bool add(ByteSpan au, std::int64_t pts, std::int64_t dts, bool keyframe);
  // As add(), but tells whether the unit holds a keyframe slice by looking at its NAL units.
  bool add_detect(ByteSpan au, std::int64_t pts, std::int64_t dts);
  // Completes the pending fragment, if any.
  void flush();

  bool has_init() const { return !init_.empty(); }
  ByteSpan init_segment() const { return init_; }
  const ParameterSets& parameter_sets() const { return ps_; }
  const SpsInfo& sps() const { return sps_; }
  const std::string& codec_string() const { return codec_string_; }
  const FragmentInfo& last_fragment() const { return last_; }
  const MuxerStats& stats() const { return stats_; }
  std::int64_t pending_samples() const { return static_cast<std::int64_t>(samples_.size()); }

 private:
  struct Sample {
    std::uint32_t size;
    std::int64_t dts;
    std::int64_t pts;
    bool keyframe;
  };
  bool add_units(ByteSpan au, std::int64_t pts, std::int64_t dts, bool keyframe);
  void check_parameter_sets(ByteSpan au);
  void build_init();
  void emit_fragment(std::int64_t next_dts, bool have_next);

  ParameterSets ps_;
  MuxerOptions opt_;
  Sink& sink_;
  Bytes init_;
  SpsInfo sps_;
  std::string codec_string_;
  std::vector<NalRange> units_;  // scratch, reused
  std::vector<Sample> samples_;  // the pending fragment
  Bytes payload_;                // its mdat payload
  Bytes header_;                 // moof + mdat header of the fragment being emitted
  bool init_written_ = false;
  bool have_last_dts_ = false;
  std::int64_t last_dts_ = 0;
  std::int64_t base_dts_ = 0;  // first dts, subtracted so every output starts at time 0
  std::uint32_t sequence_ = 0;
  std::uint32_t last_duration_ = 0;
  std::uint64_t offset_ = 0;
  FragmentInfo last_;
  MuxerStats stats_;
};

}  // namespace vms::fmp4
