// H.264 / H.265 elementary-stream tools shared by both codecs: Annex-B and length-prefixed framing,
// NAL unit classification, access-unit boundaries, sequence parameter sets, decoder configuration
// records (avcC / hvcC) and RFC 6381 codec strings.
//
// Specs: ITU-T H.264 Annex B and §7.4.1.2.3; ITU-T H.265 Annex B and §7.4.2.4.4;
// ISO/IEC 14496-15 (§5.3.3.1 avcC, §8.3.3.1 hvcC, Annex E codec parameters); RFC 6381.
// Pure code: bytes in, structures out. Every function is bounded by its input and throws
// vms::BitstreamError on malformed data; none reads outside the span it is given.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmscore/bytes.hpp"

namespace vms {

enum class Codec : std::uint8_t { H264 = 0, H265 = 1 };

const char* codec_name(Codec c);

// What a NAL unit is, in the terms both codecs share.
enum class NalKind : std::uint8_t {
  Keyframe,       // H.264 IDR slice (5); H.265 IRAP slice (BLA/IDR/CRA, 16..23)
  Slice,          // any other coded slice
  Vps,            // H.265 only (32)
  Sps,            // H.264 7, H.265 33
  Pps,            // H.264 8, H.265 34
  Sei,            // H.264 6, H.265 39/40
  Aud,            // H.264 9, H.265 35
  EndOfSequence,  // H.264 10, H.265 36
  EndOfStream,    // H.264 11, H.265 37
  Filler,         // H.264 12, H.265 38
  Other,
};

const char* nal_kind_name(NalKind k);

struct NalHeader {
  std::uint8_t type = 0;  // nal_unit_type as coded
  NalKind kind = NalKind::Other;
  bool is_vcl = false;
  // For VCL units: the first slice (segment) of a picture. H.264: first_mb_in_slice == 0;
  // H.265: first_slice_segment_in_pic_flag.
  bool is_first_slice = false;
};

// Reads the NAL header (1 byte for H.264, 2 for H.265). Throws on an empty or short unit or a set
// forbidden_zero_bit.
NalHeader classify_nal(Codec codec, ByteSpan nal);

// Byte range of one NAL unit (or one access unit) inside a larger buffer.
struct NalRange {
  std::size_t offset = 0;
  std::size_t size = 0;
};

// Offset of the first 00 00 01 at or after `from`, or data.size() when there is none. Vectorised
// (SSE2, the x86-64 baseline); emulation prevention guarantees the pattern never occurs inside a unit.
std::size_t find_start_code(ByteSpan data, std::size_t from = 0);

// Annex-B: appends the NAL units between start codes (00 00 01, with any leading zeros) to `out`.
// Zero bytes before a start code (trailing_zero_8bits) belong to no unit; empty units are skipped.
// Data that does not begin with a start code (after leading zero bytes) is rejected.
void split_annexb(ByteSpan data, std::vector<NalRange>& out);

// Length-prefixed (AVCC / HVCC sample format): appends the units; length_size is 1, 2 or 4.
// A length running past the end of the data is rejected.
void split_length_prefixed(ByteSpan data, int length_size, std::vector<NalRange>& out);

// Conversions, appending to `out`. Annex-B output uses 4-byte start codes.
void annexb_to_length_prefixed(ByteSpan data, Bytes& out, int length_size = 4);
void length_prefixed_to_annexb(ByteSpan data, int length_size, Bytes& out);

// Finds access-unit boundaries in a sequence of NAL units (H.264 §7.4.1.2.3, H.265 §7.4.2.4.4):
// an AUD, a parameter set, a prefix SEI or a reserved prefix type after the last VCL unit of a picture,
// or the first slice of a new picture, starts a new access unit.
class AccessUnitSplitter {
 public:
  explicit AccessUnitSplitter(Codec codec) : codec_(codec) {}
  // True when `nal` begins a new access unit, i.e. the units seen before it form a complete one.
  // The very first unit does not count as a boundary.
  bool starts_new_au(const NalHeader& h);
  void reset() {
    seen_any_ = false;
    seen_vcl_ = false;
  }

 private:
  Codec codec_;
  bool seen_any_ = false;
  bool seen_vcl_ = false;
};

// Splits an Annex-B elementary stream into access units (byte ranges that include their start codes).
struct AccessUnitRange {
  std::size_t offset = 0;
  std::size_t size = 0;
  bool is_keyframe = false;
};
void split_access_units(Codec codec, ByteSpan annexb, std::vector<AccessUnitRange>& out);

// Removes emulation-prevention bytes (00 00 03 -> 00 00) from any run of NAL unit bytes into `out`
// (replaced). Callers pass the bytes after the NAL header; the header never contains the pattern.
void unescape_rbsp(ByteSpan nal, Bytes& out);

// What a sequence parameter set says about the video, for both codecs.
struct SpsInfo {
  Codec codec = Codec::H264;
  std::uint32_t sps_id = 0;
  // H.264: profile_idc, constraint_set flags byte, level_idc.
  // H.265: general_profile_idc, general_profile_compatibility_flags, general_level_idc.
  std::uint8_t profile_idc = 0;
  std::uint32_t profile_compatibility = 0;
  std::uint8_t level_idc = 0;
  std::uint8_t profile_space = 0;  // H.265
  bool tier_flag = false;          // H.265: high tier
  std::uint8_t chroma_format_idc = 1;
  std::uint8_t bit_depth_luma = 8;
  std::uint8_t bit_depth_chroma = 8;
  std::uint32_t coded_width = 0;   // whole macroblocks / coding blocks, before cropping
  std::uint32_t coded_height = 0;
  std::uint32_t width = 0;         // after the frame cropping / conformance window
  std::uint32_t height = 0;
  std::uint32_t crop_left = 0, crop_right = 0, crop_top = 0, crop_bottom = 0;  // in luma samples
  bool frame_mbs_only = true;      // H.264; H.265 always true
  std::uint16_t sar_width = 1;     // sample aspect ratio (1:1 when not signalled)
  std::uint16_t sar_height = 1;
  bool timing_info_present = false;
  std::uint32_t num_units_in_tick = 0;
  std::uint32_t time_scale = 0;
  bool fixed_frame_rate = false;   // H.264 fixed_frame_rate_flag (false for H.265)
  // H.264: VUI bitstream_restriction, -1 when absent. H.265: sps_max_num_reorder_pics of the
  // highest sub-layer (always present).
  int max_num_reorder_frames = -1;
  std::uint8_t max_sub_layers = 1; // H.265
  bool temporal_id_nesting = true; // H.265
  std::uint16_t min_spatial_segmentation = 0;  // H.265 VUI
  // The 12 bytes of the H.265 general profile_tier_level (profile space..level), verbatim.
  std::uint8_t general_ptl[12] = {};

  // Frames per second from VUI timing, or 0 when the stream does not say.
  double frame_rate() const;
};

SpsInfo parse_sps(Codec codec, ByteSpan sps_nal);

// Table E-1 (the same in H.264 and H.265): the sample aspect ratio of aspect_ratio_idc 1..16.
// Unspecified (0) and reserved values leave 1:1.
void sample_aspect_ratio_from_idc(std::uint32_t idc, std::uint16_t& sar_width,
                                  std::uint16_t& sar_height);

// Parameter sets of one stream, each a complete NAL unit (with header, escaped as in the stream).
struct ParameterSets {
  Codec codec = Codec::H264;
  std::vector<Bytes> vps;  // H.265 only
  std::vector<Bytes> sps;
  std::vector<Bytes> pps;

  bool complete() const;  // at least one SPS and PPS (and VPS for H.265)
  bool operator==(const ParameterSets&) const = default;
};

// The id of a VPS, SPS or PPS NAL unit (vps/seq/pic_parameter_set_id). Throws for other units.
std::uint32_t parameter_set_id(Codec codec, ByteSpan nal);

// Collects parameter sets from an Annex-B or length-prefixed access unit (empty if none).
// Later units with the same id replace earlier ones.
void collect_parameter_sets(Codec codec, ByteSpan data, bool annexb, int length_size,
                            ParameterSets& out);

// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1), lengthSizeMinusOne = 3.
Bytes make_avcc(const ParameterSets& ps);
// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1), lengthSizeMinusOne = 3.
Bytes make_hvcc(const ParameterSets& ps);
// RFC 6381 codecs parameter as browsers expect it, for example "avc1.64001f" or "hvc1.1.6.L93.B0".
std::string codec_string(Codec codec, ByteSpan sps_nal);

}  // namespace vms
