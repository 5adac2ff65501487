// Reading the fragmented MP4 the muxer writes (ISO/IEC 14496-12): box headers, the init segment
// (ftyp + moov: codec, size, parameter sets from avcC / hvcC), media fragments (moof: mfhd, tfhd,
// tfdt, trun) and whole segment files, which the recorder writes as
//
//   ftyp + moov | optional uuid box (kSegmentMetadataUuid, UTF-8 JSON) | moof + mdat, ...
//
// and which may end inside a fragment or in garbage after a crash.
//
// Pure code: the scanner asks a ByteSource for the bytes it needs (a file, through pread, in the
// core library; a buffer here) and never asks for mdat payloads. Every function is bounded by its
// input and throws vms::BitstreamError on malformed bytes; none reads outside what it is given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/nal.hpp"

namespace vms::fmp4 {

// Extended type of the top-level uuid box that carries a segment's metadata (JSON text).
inline constexpr std::uint8_t kSegmentMetadataUuid[16] = {0xd5, 0x84, 0x99, 0x83, 0x56, 0x02,
                                                          0x46, 0x07, 0xbc, 0x57, 0xf7, 0x63,
                                                          0xda, 0x9d, 0x47, 0xeb};

// The uuid box holding `text` (any bytes; the recorder writes UTF-8 JSON).
Bytes make_metadata_box(ByteSpan text);

constexpr std::uint32_t fourcc(const char (&cc)[5]) {
  return (std::uint32_t(std::uint8_t(cc[0])) << 24) | (std::uint32_t(std::uint8_t(cc[1])) << 16) |
         (std::uint32_t(std::uint8_t(cc[2])) << 8) | std::uint32_t(std::uint8_t(cc[3]));
}
// 'moof' when printable, else 0x followed by eight hex digits: for error messages.
std::string fourcc_name(std::uint32_t type);

struct BoxHeader {
  std::uint32_t type = 0;
  std::uint64_t size = 0;         // the whole box, header included
  std::uint32_t header_size = 0;  // 8, or 16 with a 64-bit size
};

// The header of the box at the start of `data`, or nullopt when `data` is too short to hold it
// (8 bytes, 16 with a 64-bit size). Throws for a size smaller than the header and for size 0
// ("to the end of the file"), which nothing here writes.
std::optional<BoxHeader> read_box_header(ByteSpan data);

// Sample defaults of a track (trex), used where a fragment's tfhd and trun leave a field out.
struct TrackDefaults {
  std::uint32_t track_id = 1;
  std::uint32_t sample_description_index = 1;
  std::uint32_t duration = 0;
  std::uint32_t size = 0;
  std::uint32_t flags = 0;
};

// What an init segment says about its one video track.
struct TrackInfo {
  Codec codec = Codec::H264;
  std::string codec_string;  // RFC 6381, from the SPS
  std::uint32_t width = 0;   // from the SPS, after cropping
  std::uint32_t height = 0;
  std::uint32_t display_width = 0;  // tkhd, 16.16 fixed point as stored
  std::uint32_t display_height = 0;
  std::uint32_t timescale = 0;      // mdhd
  std::uint32_t nal_length_size = 4;
  ParameterSets parameter_sets;     // from avcC / hvcC
  Bytes sample_entry;               // the avc1 / avc3 / hvc1 / hev1 box, verbatim
  TrackDefaults defaults;           // trex
};

struct InitSegment {
  std::uint64_t size = 0;  // ftyp + moov
  TrackInfo track;
};

// ftyp then moov with exactly one video track, an avcC or hvcC sample entry and mvex/trex (a
// fragmented file). `data` may go on past the moov.
InitSegment parse_init_segment(ByteSpan data);

constexpr std::uint32_t kSampleIsNonSync = 0x00010000;

struct FragmentSample {
  std::uint64_t offset = 0;  // absolute: from the start of the file (or buffer) the moof is in
  std::uint32_t size = 0;
  std::uint32_t duration = 0;
  std::int32_t composition_offset = 0;
  std::uint32_t flags = 0;
  bool keyframe() const { return (flags & kSampleIsNonSync) == 0; }
};

struct Fragment {
  std::uint32_t sequence = 0;
  std::uint64_t base_dts = 0;  // tfdt
  std::uint64_t duration = 0;  // sum of the sample durations
  std::vector<FragmentSample> samples;
  std::uint64_t data_begin = 0;  // where the sample bytes start and end (absolute)
  std::uint64_t data_end = 0;
};

// Bounds a fragment's sample count, so hostile counts cannot exhaust memory.
constexpr std::uint32_t kMaxFragmentSamples = 1u << 20;

// A moof box (header included) that starts at `moof_offset` in its file: one traf for the track
// of `defaults` with tfdt and one or more truns, at least one sample. Sample offsets are made
// absolute (default-base-is-moof, base-data-offset, or the moof's start) and every sample must be
// one byte or more inside [data_begin, data_end), its mdat's payload; so a fragment has no more
// samples than its mdat has bytes.
Fragment parse_moof(ByteSpan moof, std::uint64_t moof_offset, const TrackDefaults& defaults,
                    std::uint64_t data_begin, std::uint64_t data_end);

// Where the scanner gets bytes. read() returns exactly n bytes at offset; the scanner only asks
// inside [0, size()). The span stays valid until the next read().
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::uint64_t size() const = 0;
  virtual ByteSpan read(std::uint64_t offset, std::size_t n) = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(ByteSpan data) : data_(data) {}
  std::uint64_t size() const override { return data_.size(); }
  ByteSpan read(std::uint64_t offset, std::size_t n) override;

 private:
  ByteSpan data_;
};

// One sample of a scanned segment, on the segment's decode timeline (tfdt).
struct SegmentSample {
  std::uint64_t offset = 0;  // in the file
  std::uint32_t size = 0;
  std::uint32_t duration_90k = 0;
  std::int64_t dts_90k = 0;
  std::int32_t composition_offset_90k = 0;
  bool keyframe = false;
};

struct SegmentScan {
  std::uint64_t file_size = 0;
  std::uint64_t init_size = 0;
  // Just after the last complete fragment (or the init segment and metadata when there is none):
  // what a crashed segment is trimmed to.
  std::uint64_t valid_end = 0;
  std::string metadata;  // the metadata box's payload, empty without one
  TrackInfo track;
  std::vector<FragmentInfo> fragments;  // complete fragments, in file order
  std::vector<SegmentSample> samples;   // filled when asked for
  // The first thing wrong after valid_end ("fragment at byte 1234567 is truncated (mdat needs
  // 65536 more bytes)"), empty when valid_end == file_size.
  std::string problem;
};

// Limits on the boxes the scanner reads into memory; larger ones are a problem in the file.
constexpr std::uint64_t kMaxInitBytes = 1u << 20;
constexpr std::uint64_t kMaxMetadataBytes = 1u << 20;
constexpr std::uint64_t kMaxMoofBytes = 64u << 20;

// Scans a segment: the init segment (its problems throw BitstreamError: such a file is not a
// segment), then top-level boxes up to the first problem, which is described, not thrown. Reads
// box headers and moof boxes only. The track's timescale must be 90 kHz.
SegmentScan scan_segment(ByteSource& source, bool with_samples);

}  // namespace vms::fmp4
