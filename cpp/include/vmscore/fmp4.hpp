// Fragmented MP4 (ISO/IEC 14496-12) for one H.264 or H.265 video track at a 90 kHz timescale:
// the init segment (ftyp + moov with mvex/trex and empty sample tables) and media fragments
// (moof: mfhd, traf with tfhd default-base-is-moof, tfdt version 1, trun version 1; then mdat), as
// required by the W3C MSE ISO BMFF byte-stream format and played by ffmpeg and browsers.
//
// Pure code: the muxer hands finished pieces to a Sink; it never does I/O itself. One Muxer belongs
// to one thread at a time. Zero-copy: samples are not copied into the muxer; a fragment is handed
// to the sink as a list of parts (the moof header, 4-byte NAL lengths, and spans of the caller's
// access units), so a file sink writes a GOP with one writev and no user-space copy (Moonfire's
// write path), and a memory sink copies each byte once. Buffers are reused, so after the first
// GOPs no allocation happens per access unit.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
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

// Receives finished output as a list of parts to be written back to back (one writev). The parts
// stay valid until the muxer completes its next fragment (or is destroyed).
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
  // Media time 0 of the output. By default the first unit's dts, so every output starts at 0; a
  // live view sets it so that the muxers it starts for one stream (after a change of parameter
  // sets) continue one timeline. Units with a dts below it are refused.
  std::optional<std::int64_t> origin_dts_90k;
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

  // Adds one access unit in decode order. The muxer keeps a reference to `au`, not a copy: its bytes
  // must stay valid and unchanged until the fragment holding it is complete, i.e. until a later
  // add() returns having completed a fragment (pending_samples() no longer counts it) or flush().
  // Units before the first keyframe are dropped and counted.
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
  std::int64_t pending_samples() const { return static_cast<std::int64_t>(pending_.samples.size()); }

 private:
  struct Sample {
    std::uint32_t size;
    std::int64_t dts;
    std::int64_t pts;
    bool keyframe;
  };
  // A run of sample bytes: a NAL length prefix (from `prefixes`) then bytes of the caller's unit,
  // or, for length-prefixed input, a span of the caller's unit only.
  struct Piece {
    const std::uint8_t* data;
    std::size_t size;
    std::int32_t prefix;  // index into prefixes, or -1
  };
  // One fragment's worth of state. Two alternate: while one is being written out (its parts must
  // stay valid for the sink), the next one fills.
  struct Fragment {
    std::vector<Sample> samples;
    std::vector<Piece> pieces;
    std::vector<std::array<std::uint8_t, 4>> prefixes;
    std::uint64_t payload = 0;  // mdat payload bytes
    Bytes header;               // moof + mdat header
    std::vector<ByteSpan> parts;
    void clear() {
      samples.clear();
      pieces.clear();
      prefixes.clear();
      payload = 0;
    }
  };
  void split(ByteSpan au);
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
  std::vector<NalRange> units_;     // scratch, reused
  std::vector<NalHeader> headers_;  // scratch, reused
  Fragment pending_;                // filling
  Fragment emitted_;                // handed to the sink last
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
