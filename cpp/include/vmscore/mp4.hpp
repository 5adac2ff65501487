// Progressive (non-fragmented) MP4 for one video track at 90 kHz (ISO/IEC 14496-12): ftyp, then moov
// first for fast start (mvhd; trak with tkhd, edts/elst, mdia/mdhd/hdlr/minf/vmhd/dinf/stbl with
// stsd, stts, ctts when any composition offset is set, stss unless every sample is a sync sample,
// stsz, stsc, co64), then the mdat header (64-bit size when needed). The samples themselves are not
// here: the caller puts the mdat payload after these bytes, chunk by chunk.
//
// Pure code: sample tables in, bytes out.
#pragma once

#include <cstdint>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace vms::mp4 {

struct Sample {
  std::uint32_t size = 0;
  std::uint32_t duration = 0;  // 90 kHz
  std::int32_t composition_offset = 0;
  bool keyframe = false;
};

// A run of consecutive samples stored back to back in the mdat.
struct Chunk {
  std::uint32_t samples = 0;
  std::uint32_t sample_description = 1;  // 1-based index into Movie::sample_entries
  std::uint64_t payload_offset = 0;      // from the first byte of the mdat payload
};

struct Movie {
  Codec codec = Codec::H264;
  std::vector<Bytes> sample_entries;  // whole avc1 / hvc1 boxes, as in an init segment's stsd
  std::vector<Sample> samples;
  std::vector<Chunk> chunks;  // covering `samples` in order
  std::uint32_t display_width = 0;  // tkhd, 16.16 fixed point
  std::uint32_t display_height = 0;
  // The one edit: play `edit_duration` ticks from media (composition) time `edit_media_time`.
  std::uint64_t edit_media_time = 0;
  std::uint64_t edit_duration = 0;
  std::uint64_t payload_size = 0;  // bytes of mdat payload
};

// ftyp + moov + mdat header. co64 offsets count from the start of these bytes, so the payload must
// follow them directly. Throws MuxError when the tables are inconsistent.
Bytes make_progressive_header(const Movie& movie);

}  // namespace vms::mp4
