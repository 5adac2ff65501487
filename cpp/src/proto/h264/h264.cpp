// H.264 (ITU-T H.264, 08/2021): NAL header (§7.3.1), sequence parameter set (§7.3.2.1.1) with VUI
// (Annex E.1.1), picture parameter set id (§7.3.2.2), the AVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 §5.3.3.1) and the RFC 6381 "avc1.PPCCLL" codec string.
// Pure code; every read is bounds-checked by BitReader and throws vms::BitstreamError.
#include "proto/h264/h264.hpp"

#include <cstdio>
#include <string>

#include "proto/nal/bitreader.hpp"
#include "vmscore/error.hpp"

namespace vms::h264 {

NalHeader classify(ByteSpan nal) {
  if (nal.empty()) throw BitstreamError("H.264 NAL unit is empty");
  if (nal[0] & 0x80) throw BitstreamError("H.264 NAL unit has forbidden_zero_bit set");
  NalHeader h;
  h.type = nal[0] & 0x1F;
  switch (h.type) {
    case kIdr: h.kind = NalKind::Keyframe; break;
    case kSlice:
    case kSliceDataA:
    case 3:
    case 4: h.kind = NalKind::Slice; break;
    case kSei: h.kind = NalKind::Sei; break;
    case kSps: h.kind = NalKind::Sps; break;
    case kPps: h.kind = NalKind::Pps; break;
    case kAud: h.kind = NalKind::Aud; break;
    case kEndOfSequence: h.kind = NalKind::EndOfSequence; break;
    case kEndOfStream: h.kind = NalKind::EndOfStream; break;
    case kFiller: h.kind = NalKind::Filler; break;
    default: h.kind = NalKind::Other; break;
  }
  h.is_vcl = h.type >= 1 && h.type <= 5;
  if (h.is_vcl) {
    // Data partitions B and C (3, 4) carry no slice header start; they continue partition A.
    if (h.type == 3 || h.type == 4) {
      h.is_first_slice = false;
    } else {
      if (nal.size() < 2) throw BitstreamError("H.264 slice NAL unit has no slice header");
      // first_mb_in_slice is ue(v): it is 0 exactly when its first bit is 1. The byte after the
      // header can never be an emulation-prevention byte, so no unescaping is needed.
      h.is_first_slice = (nal[1] & 0x80) != 0;
    }
  }
  return h;
}

namespace {

bool has_chroma_info(std::uint8_t profile_idc) {
  switch (profile_idc) {
    case 100: case 110: case 122: case 244: case 44: case 83: case 86:
    case 118: case 128: case 138: case 139: case 134: case 135:
      return true;
    default:
      return false;
  }
}

void skip_scaling_list(BitReader& r, int size) {
  int last = 8, next = 8;
  for (int j = 0; j < size; ++j) {
    if (next != 0) {
      const std::int32_t delta = r.se();
      if (delta < -128 || delta > 127) r.fail("delta_scale out of range");
      next = (last + delta + 256) % 256;
    }
    last = next == 0 ? last : next;
  }
}

void skip_hrd_parameters(BitReader& r) {
  const std::uint32_t cpb_cnt = ue_max(r, 31, "cpb_cnt_minus1 out of range") + 1;
  r.skip(8);  // bit_rate_scale, cpb_size_scale
  for (std::uint32_t i = 0; i < cpb_cnt; ++i) {
    r.ue();  // bit_rate_value_minus1
    r.ue();  // cpb_size_value_minus1
    r.skip(1);
  }
  r.skip(20);  // four delay/offset lengths
}

void parse_vui(BitReader& r, SpsInfo& s) {
  if (r.flag()) {  // aspect_ratio_info_present_flag
    const std::uint32_t idc = r.u(8);
    if (idc == 255) {
      s.sar_width = static_cast<std::uint16_t>(r.u(16));
      s.sar_height = static_cast<std::uint16_t>(r.u(16));
    } else {
      sample_aspect_ratio_from_idc(idc, s.sar_width, s.sar_height);
    }
  }
  if (r.flag()) r.skip(1);  // overscan
  if (r.flag()) {           // video_signal_type_present_flag
    r.skip(4);
    if (r.flag()) r.skip(24);  // colour description
  }
  if (r.flag()) {  // chroma_loc_info_present_flag
    ue_max(r, 5, "chroma_sample_loc_type_top_field out of range");
    ue_max(r, 5, "chroma_sample_loc_type_bottom_field out of range");
  }
  if (r.flag()) {  // timing_info_present_flag
    s.num_units_in_tick = r.u(32);
    s.time_scale = r.u(32);
    s.fixed_frame_rate = r.flag();
    s.timing_info_present = s.num_units_in_tick > 0 && s.time_scale > 0;
  }
  const bool nal_hrd = r.flag();
  if (nal_hrd) skip_hrd_parameters(r);
  const bool vcl_hrd = r.flag();
  if (vcl_hrd) skip_hrd_parameters(r);
  if (nal_hrd || vcl_hrd) r.skip(1);  // low_delay_hrd_flag
  r.skip(1);                          // pic_struct_present_flag
  if (r.flag()) {                     // bitstream_restriction_flag
    r.skip(1);
    r.ue();
    r.ue();
    r.ue();
    r.ue();
    s.max_num_reorder_frames = static_cast<int>(ue_max(r, 16, "max_num_reorder_frames out of range"));
    r.ue();  // max_dec_frame_buffering
  }
}

}  // namespace

SpsInfo parse_sps(ByteSpan nal) {
  const NalHeader h = classify(nal);
  if (h.type != kSps && h.type != kSubsetSps)
    throw BitstreamError("H.264 SPS: NAL unit type is " + std::to_string(h.type) + ", not 7");
  Bytes rbsp;
  unescape_rbsp(nal.subspan(1), rbsp);
  BitReader r(rbsp, "H.264 SPS");
  SpsInfo s;
  s.codec = Codec::H264;
  s.profile_idc = static_cast<std::uint8_t>(r.u(8));
  s.profile_compatibility = r.u(8);
  s.level_idc = static_cast<std::uint8_t>(r.u(8));
  s.sps_id = ue_max(r, 31, "seq_parameter_set_id out of range");
  bool separate_colour_plane = false;
  if (has_chroma_info(s.profile_idc)) {
    s.chroma_format_idc = static_cast<std::uint8_t>(ue_max(r, 3, "chroma_format_idc out of range"));
    if (s.chroma_format_idc == 3) separate_colour_plane = r.flag();
    s.bit_depth_luma = static_cast<std::uint8_t>(8 + ue_max(r, 6, "bit_depth_luma out of range"));
    s.bit_depth_chroma = static_cast<std::uint8_t>(8 + ue_max(r, 6, "bit_depth_chroma out of range"));
    r.skip(1);     // qpprime_y_zero_transform_bypass_flag
    if (r.flag()) {  // seq_scaling_matrix_present_flag
      const int lists = s.chroma_format_idc != 3 ? 8 : 12;
      for (int i = 0; i < lists; ++i)
        if (r.flag()) skip_scaling_list(r, i < 6 ? 16 : 64);
    }
  }
  ue_max(r, 12, "log2_max_frame_num_minus4 out of range");
  const std::uint32_t poc_type = ue_max(r, 2, "pic_order_cnt_type out of range");
  if (poc_type == 0) {
    ue_max(r, 12, "log2_max_pic_order_cnt_lsb_minus4 out of range");
  } else if (poc_type == 1) {
    r.skip(1);
    r.se();
    r.se();
    const std::uint32_t cycle = ue_max(r, 255, "num_ref_frames_in_pic_order_cnt_cycle out of range");
    for (std::uint32_t i = 0; i < cycle; ++i) r.se();
  }
  ue_max(r, 16, "max_num_ref_frames out of range");
  r.skip(1);  // gaps_in_frame_num_value_allowed_flag
  // 16888 samples is past every level limit (level 6.2: 139264 macroblocks of a square frame).
  const std::uint32_t width_mbs = ue_max(r, 1055, "pic_width_in_mbs out of range") + 1;
  const std::uint32_t height_map_units = ue_max(r, 1055, "pic_height_in_map_units out of range") + 1;
  s.frame_mbs_only = r.flag();
  if (!s.frame_mbs_only) r.skip(1);  // mb_adaptive_frame_field_flag
  r.skip(1);                         // direct_8x8_inference_flag
  s.coded_width = width_mbs * 16;
  s.coded_height = (s.frame_mbs_only ? 1u : 2u) * height_map_units * 16;
  if (r.flag()) {  // frame_cropping_flag
    const std::uint32_t chroma_array_type = separate_colour_plane ? 0 : s.chroma_format_idc;
    const std::uint32_t sub_w = (chroma_array_type == 1 || chroma_array_type == 2) ? 2 : 1;
    const std::uint32_t sub_h = chroma_array_type == 1 ? 2 : 1;
    const std::uint32_t unit_x = chroma_array_type == 0 ? 1 : sub_w;
    const std::uint32_t unit_y = (chroma_array_type == 0 ? 1 : sub_h) * (s.frame_mbs_only ? 1 : 2);
    const std::uint32_t l = ue_max(r, s.coded_width, "frame_crop_left_offset out of range");
    const std::uint32_t rt = ue_max(r, s.coded_width, "frame_crop_right_offset out of range");
    const std::uint32_t t = ue_max(r, s.coded_height, "frame_crop_top_offset out of range");
    const std::uint32_t b = ue_max(r, s.coded_height, "frame_crop_bottom_offset out of range");
    s.crop_left = l * unit_x;
    s.crop_right = rt * unit_x;
    s.crop_top = t * unit_y;
    s.crop_bottom = b * unit_y;
    if (s.crop_left + s.crop_right >= s.coded_width || s.crop_top + s.crop_bottom >= s.coded_height)
      throw BitstreamError("H.264 SPS: frame cropping removes the whole picture");
  }
  s.width = s.coded_width - s.crop_left - s.crop_right;
  s.height = s.coded_height - s.crop_top - s.crop_bottom;
  if (r.flag()) {  // vui_parameters_present_flag
    // Cameras in the field send truncated VUI (the stream decodes; decoders ignore the rest), so a
    // VUI that ends early keeps what was read before it and drops only the VUI fields.
    SpsInfo with_vui = s;
    try {
      parse_vui(r, with_vui);
      s = with_vui;
    } catch (const BitstreamError&) {
    }
  }
  return s;
}

std::uint32_t pps_id(ByteSpan nal) {
  const NalHeader h = classify(nal);
  if (h.type != kPps)
    throw BitstreamError("H.264 PPS: NAL unit type is " + std::to_string(h.type) + ", not 8");
  Bytes rbsp;
  unescape_rbsp(nal.subspan(1), rbsp);
  BitReader r(rbsp, "H.264 PPS");
  return ue_max(r, 255, "pic_parameter_set_id out of range");
}

Bytes make_avcc(const ParameterSets& ps) {
  if (ps.sps.empty() || ps.pps.empty())
    throw BitstreamError("avcC: needs at least one SPS and one PPS");
  if (ps.sps.size() > 31 || ps.pps.size() > 255) throw BitstreamError("avcC: too many parameter sets");
  const SpsInfo s = parse_sps(ps.sps.front());
  Bytes out;
  ByteWriter w(out);
  w.u8(1);  // configurationVersion
  w.u8(s.profile_idc);
  w.u8(static_cast<std::uint8_t>(s.profile_compatibility));
  w.u8(s.level_idc);
  w.u8(0xFF);  // reserved 6 bits + lengthSizeMinusOne = 3
  w.u8(static_cast<std::uint8_t>(0xE0 | ps.sps.size()));
  for (const Bytes& sps : ps.sps) {
    if (sps.size() > 0xFFFF) throw BitstreamError("avcC: SPS larger than 65535 bytes");
    w.u16(static_cast<std::uint16_t>(sps.size()));
    w.raw(sps);
  }
  w.u8(static_cast<std::uint8_t>(ps.pps.size()));
  for (const Bytes& pps : ps.pps) {
    if (pps.size() > 0xFFFF) throw BitstreamError("avcC: PPS larger than 65535 bytes");
    w.u16(static_cast<std::uint16_t>(pps.size()));
    w.raw(pps);
  }
  // ISO/IEC 14496-15 §5.3.3.1.2 (2014 and later): the chroma and bit-depth fields follow for every
  // profile but Baseline, Main and Extended. FFmpeg writes the same.
  if (s.profile_idc != 66 && s.profile_idc != 77 && s.profile_idc != 88) {
    w.u8(static_cast<std::uint8_t>(0xFC | s.chroma_format_idc));
    w.u8(static_cast<std::uint8_t>(0xF8 | (s.bit_depth_luma - 8)));
    w.u8(static_cast<std::uint8_t>(0xF8 | (s.bit_depth_chroma - 8)));
    w.u8(0);  // numOfSequenceParameterSetExt
  }
  return out;
}

std::string codec_string(ByteSpan sps_nal) {
  const SpsInfo s = parse_sps(sps_nal);
  char buf[16];
  std::snprintf(buf, sizeof buf, "avc1.%02x%02x%02x", s.profile_idc,
                static_cast<unsigned>(s.profile_compatibility & 0xFF), s.level_idc);
  return buf;
}

}  // namespace vms::h264
