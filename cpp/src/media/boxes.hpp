// Boxes that the fMP4 init segment and the progressive MP4 header write alike (ISO/IEC 14496-12
// §8.2.2 mvhd, §8.3.2 tkhd, §8.4.2 mdhd, §8.4.3 hdlr, §12.1.2 vmhd, §8.7.1 dinf) for one video
// track at 90 kHz.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

#include "vmscore/bytes.hpp"

namespace vms::media {

inline void unity_matrix(ByteWriter& w) {
  static constexpr std::uint32_t kMatrix[9] = {0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000};
  for (std::uint32_t v : kMatrix) w.u32(v);
}

// Starts mvhd, tkhd or mdhd: creation and modification times (0: unknown), then `middle` (the
// timescale, or tkhd's track_ID followed by 4 reserved bytes), then the duration. Version 0, or 1
// when the duration needs 64 bits. Returns the offset for end_box.
inline std::size_t begin_timed_box(ByteWriter& w, const char (&type)[5], std::uint32_t flags,
                                   std::uint32_t middle, std::uint64_t duration) {
  const bool v1 = duration > std::numeric_limits<std::uint32_t>::max();
  const bool tkhd = std::string_view(type) == "tkhd";
  const std::size_t at = w.begin_full_box(type, v1 ? 1 : 0, flags);
  if (v1) {
    w.u64(0);
    w.u64(0);
  } else {
    w.u32(0);
    w.u32(0);
  }
  w.u32(middle);
  if (tkhd) w.u32(0);
  if (v1)
    w.u64(duration);
  else
    w.u32(static_cast<std::uint32_t>(duration));
  return at;
}

// The rest of mvhd after its duration: rate 1.0, volume 1.0, the matrix, next_track_ID 2.
inline void mvhd_rest(ByteWriter& w) {
  w.u32(0x00010000);
  w.u16(0x0100);
  w.zeros(10);
  unity_matrix(w);
  w.zeros(24);  // pre_defined
  w.u32(2);
}

// The rest of tkhd after its duration; the presentation size is 16.16 fixed point.
inline void tkhd_rest(ByteWriter& w, std::uint32_t width_16_16, std::uint32_t height_16_16) {
  w.zeros(8);
  w.u16(0);  // layer
  w.u16(0);  // alternate_group
  w.u16(0);  // volume (video)
  w.u16(0);
  unity_matrix(w);
  w.u32(width_16_16);
  w.u32(height_16_16);
}

// The rest of mdhd after its duration: language "und".
inline void mdhd_rest(ByteWriter& w) {
  w.u16(0x55C4);
  w.u16(0);
}

// hdlr for video.
inline void video_handler(ByteWriter& w) {
  const std::size_t hdlr = w.begin_full_box("hdlr", 0, 0);
  w.u32(0);
  w.fourcc("vide");
  w.zeros(12);
  static constexpr char kHandlerName[] = "VideoHandler";
  w.raw(kHandlerName, sizeof kHandlerName);  // with its NUL
  w.end_box(hdlr);
}

// vmhd and dinf, the first boxes of minf: media data in this file.
inline void video_media_info(ByteWriter& w) {
  const std::size_t vmhd = w.begin_full_box("vmhd", 0, 1);
  w.zeros(8);  // graphicsmode, opcolor
  w.end_box(vmhd);
  const std::size_t dinf = w.begin_box("dinf");
  const std::size_t dref = w.begin_full_box("dref", 0, 0);
  w.u32(1);
  const std::size_t url = w.begin_full_box("url ", 0, 1);
  w.end_box(url);
  w.end_box(dref);
  w.end_box(dinf);
}

}  // namespace vms::media
