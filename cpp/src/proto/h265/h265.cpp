// H.265 / HEVC bitstream tools: NAL unit header (ITU-T H.265 §7.3.1.2, Table 7-1), sequence
// parameter set (§7.3.2.2.1) with profile_tier_level (§7.3.3), scaling_list_data (§7.3.4),
// st_ref_pic_set (§7.3.7, derivation §7.4.8), VUI and HRD parameters (Annex E.2.1-E.2.3), the
// leading part of the picture parameter set (§7.3.2.3.1), the HEVCDecoderConfigurationRecord of
// ISO/IEC 14496-15 §8.3.3.1 and the RFC 6381 codecs parameter of ISO/IEC 14496-15 Annex E.3.
//
// Everything here runs on untrusted camera data: every loop is bounded by a limit from the spec,
// every value that sizes a later read is range-checked, and all bit reads go through
// vms::BitReader, which throws vms::BitstreamError instead of reading past the end.
#include "proto/h265/h265.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include "proto/nal/bitreader.hpp"
#include "vmscore/error.hpp"

namespace vms::h265 {
namespace {

constexpr std::size_t kNalHeaderSize = 2;

// Level 6.2 allows MaxLumaPs = 35651584; §A.4.1 caps each dimension at Sqrt(MaxLumaPs * 8).
constexpr std::uint32_t kMaxPicDimension = 16888;
// MaxDpbSize is at most 16 (§A.4.2), which also bounds the pictures one reference set can name.
constexpr unsigned kMaxDpbSize = 16;
constexpr unsigned kMaxShortTermRefPicSets = 64;
constexpr unsigned kMaxLongTermRefPicsSps = 32;
constexpr unsigned kMaxCpbCount = 32;

std::uint8_t type_of(ByteSpan nal) { return static_cast<std::uint8_t>((nal[0] >> 1) & 0x3F); }

// Validates the two header bytes that every function here relies on before looking further.
void check_header(ByteSpan nal, const char* what) {
  if (nal.size() < kNalHeaderSize)
    throw BitstreamError(std::string(what) + ": NAL unit shorter than its 2-byte header");
  if (nal[0] & 0x80) throw BitstreamError(std::string(what) + ": forbidden_zero_bit is set");
  if ((nal[1] & 0x07) == 0)
    throw BitstreamError(std::string(what) + ": nuh_temporal_id_plus1 is 0");
}

void expect_type(ByteSpan nal, std::uint8_t type, const char* what) {
  check_header(nal, what);
  if (type_of(nal) != type) {
    throw BitstreamError(std::string(what) + ": wrong nal_unit_type " +
                         std::to_string(type_of(nal)) + " (expected " + std::to_string(type) + ")");
  }
}

// Emulation prevention never involves the header: §7.3.1.1 only looks for 0x000003 from byte 2 on.
Bytes payload_rbsp(ByteSpan nal) {
  Bytes rbsp;
  unescape_rbsp(nal.subspan(kNalHeaderSize), rbsp);
  return rbsp;
}

std::int32_t se_range(BitReader& r, std::int32_t lo, std::int32_t hi, const char* field) {
  const std::int32_t v = r.se();
  if (v < lo || v > hi) r.fail(field);
  return v;
}

// profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3. The general part is byte aligned in an
// SPS (it starts at bit 8 of the RBSP), so it is kept verbatim for hvcC and the codec string.
void parse_profile_tier_level(BitReader& r, unsigned max_sub_layers_minus1, SpsInfo& info) {
  for (auto& b : info.general_ptl) b = static_cast<std::uint8_t>(r.u(8));
  const std::uint8_t* p = info.general_ptl;
  info.profile_space = static_cast<std::uint8_t>(p[0] >> 6);
  info.tier_flag = ((p[0] >> 5) & 1) != 0;
  info.profile_idc = static_cast<std::uint8_t>(p[0] & 0x1F);
  info.profile_compatibility = load_be32(p + 1);
  info.level_idc = p[11];

  bool profile_present[8] = {};
  bool level_present[8] = {};
  for (unsigned i = 0; i < max_sub_layers_minus1; ++i) {
    profile_present[i] = r.flag();
    level_present[i] = r.flag();
  }
  // reserved_zero_2bits pad the presence flags to eight sub-layers.
  if (max_sub_layers_minus1 > 0) r.skip(2 * (8 - max_sub_layers_minus1));
  for (unsigned i = 0; i < max_sub_layers_minus1; ++i) {
    // sub_layer profile_space..inbld_flag: 2 + 1 + 5 + 32 + 4 + 43 + 1 bits.
    if (profile_present[i]) r.skip(88);
    if (level_present[i]) r.skip(8);
  }
}

// The part of the SPS before anything depends on chroma format or size; also all that sps_id() and
// codec_string() need.
unsigned parse_sps_head(BitReader& r, SpsInfo& info) {
  r.skip(4);  // sps_video_parameter_set_id
  const unsigned max_sub_layers_minus1 = r.u(3);
  if (max_sub_layers_minus1 > 6) r.fail("sps_max_sub_layers_minus1 out of range (> 6)");
  info.max_sub_layers = static_cast<std::uint8_t>(max_sub_layers_minus1 + 1);
  info.temporal_id_nesting = r.flag();
  parse_profile_tier_level(r, max_sub_layers_minus1, info);
  info.sps_id = ue_max(r, 15, "sps_seq_parameter_set_id out of range (> 15)");
  return max_sub_layers_minus1;
}

void skip_scaling_list_data(BitReader& r) {
  for (unsigned size_id = 0; size_id < 4; ++size_id) {
    // Only the luma and one chroma 32x32 list are coded; the others are inferred (§7.4.5).
    const unsigned step = size_id == 3 ? 3 : 1;
    for (unsigned matrix_id = 0; matrix_id < 6; matrix_id += step) {
      const bool pred_mode = r.flag();
      if (!pred_mode) {
        ue_max(r, size_id == 3 ? matrix_id / 3 : matrix_id,
               "scaling_list_pred_matrix_id_delta out of range");
        continue;
      }
      const unsigned coef_num = std::min(64u, 1u << (4 + (size_id << 1)));
      if (size_id > 1) se_range(r, -7, 247, "scaling_list_dc_coef_minus8 out of range");
      for (unsigned i = 0; i < coef_num; ++i) {
        se_range(r, -128, 127, "scaling_list_delta_coef out of range");
      }
    }
  }
}

// One short-term reference picture set as derived in §7.4.8: the signed POC deltas, S0 (negative,
// nearest first) then S1 (positive, nearest first). Later sets may be predicted from it, and the
// number of flags they carry depends on how many entries it has, so the values must be tracked.
struct StRps {
  unsigned num_negative = 0;
  unsigned num_positive = 0;
  std::array<std::int32_t, kMaxDpbSize> s0{};
  std::array<std::int32_t, kMaxDpbSize> s1{};
  unsigned num_delta_pocs() const { return num_negative + num_positive; }
};

void parse_st_ref_pic_set(BitReader& r, unsigned idx,
                          std::array<StRps, kMaxShortTermRefPicSets>& sets) {
  StRps& out = sets[idx];
  const bool inter_rps_pred = idx != 0 && r.flag();
  if (!inter_rps_pred) {
    out.num_negative = ue_max(r, kMaxDpbSize, "num_negative_pics out of range (> 16)");
    out.num_positive =
        ue_max(r, kMaxDpbSize - out.num_negative,
               "num_positive_pics out of range (num_negative_pics + num_positive_pics > 16)");
    std::int32_t poc = 0;
    for (unsigned i = 0; i < out.num_negative; ++i) {
      poc -= static_cast<std::int32_t>(ue_max(r, 32767, "delta_poc_s0_minus1 out of range")) + 1;
      out.s0[i] = poc;
      r.skip(1);  // used_by_curr_pic_s0_flag
    }
    poc = 0;
    for (unsigned i = 0; i < out.num_positive; ++i) {
      poc += static_cast<std::int32_t>(ue_max(r, 32767, "delta_poc_s1_minus1 out of range")) + 1;
      out.s1[i] = poc;
      r.skip(1);  // used_by_curr_pic_s1_flag
    }
    return;
  }

  // In an SPS delta_idx_minus1 is absent (inferred 0): the reference is always the previous set.
  const StRps& ref = sets[idx - 1];
  const bool sign = r.flag();
  const std::int32_t abs_delta =
      static_cast<std::int32_t>(ue_max(r, 32767, "abs_delta_rps_minus1 out of range")) + 1;
  const std::int32_t delta_rps = sign ? -abs_delta : abs_delta;

  // j indexes ref's S0 entries, then its S1 entries, then ref itself (delta_rps) at NumDeltaPocs.
  const unsigned n = ref.num_delta_pocs();
  std::array<bool, kMaxDpbSize + 1> use_delta{};
  for (unsigned j = 0; j <= n; ++j) {
    const bool used_by_curr = r.flag();
    use_delta[j] = used_by_curr || r.flag();  // use_delta_flag is inferred 1 when absent
  }

  // Equations 7-61 and 7-62. Each candidate lands in S0, S1 or (when its delta becomes 0) nowhere.
  unsigned neg = 0;
  std::array<std::int32_t, kMaxDpbSize> s0{};
  auto add_neg = [&](std::int32_t v) {
    if (neg >= kMaxDpbSize) r.fail("predicted short-term RPS has too many pictures");
    s0[neg++] = v;
  };
  for (unsigned j = ref.num_positive; j-- > 0;) {
    const std::int32_t d = ref.s1[j] + delta_rps;
    if (d < 0 && use_delta[ref.num_negative + j]) add_neg(d);
  }
  if (delta_rps < 0 && use_delta[n]) add_neg(delta_rps);
  for (unsigned j = 0; j < ref.num_negative; ++j) {
    const std::int32_t d = ref.s0[j] + delta_rps;
    if (d < 0 && use_delta[j]) add_neg(d);
  }

  unsigned pos = 0;
  std::array<std::int32_t, kMaxDpbSize> s1{};
  auto add_pos = [&](std::int32_t v) {
    if (neg + pos >= kMaxDpbSize) r.fail("predicted short-term RPS has too many pictures");
    s1[pos++] = v;
  };
  for (unsigned j = ref.num_negative; j-- > 0;) {
    const std::int32_t d = ref.s0[j] + delta_rps;
    if (d > 0 && use_delta[j]) add_pos(d);
  }
  if (delta_rps > 0 && use_delta[n]) add_pos(delta_rps);
  for (unsigned j = 0; j < ref.num_positive; ++j) {
    const std::int32_t d = ref.s1[j] + delta_rps;
    if (d > 0 && use_delta[ref.num_negative + j]) add_pos(d);
  }

  out.num_negative = neg;
  out.num_positive = pos;
  out.s0 = s0;
  out.s1 = s1;
}

void skip_sub_layer_hrd_parameters(BitReader& r, unsigned cpb_cnt, bool sub_pic_params) {
  for (unsigned i = 0; i < cpb_cnt; ++i) {
    r.ue();  // bit_rate_value_minus1
    r.ue();  // cpb_size_value_minus1
    if (sub_pic_params) {
      r.ue();  // cpb_size_du_value_minus1
      r.ue();  // bit_rate_du_value_minus1
    }
    r.skip(1);  // cbr_flag
  }
}

// hrd_parameters(1, max_sub_layers_minus1), Annex E.2.2. Nothing in it is kept, but it sits between
// the timing info and bitstream_restriction, so it has to be walked exactly.
void skip_hrd_parameters(BitReader& r, unsigned max_sub_layers_minus1) {
  const bool nal_hrd = r.flag();
  const bool vcl_hrd = r.flag();
  bool sub_pic_params = false;
  if (nal_hrd || vcl_hrd) {
    sub_pic_params = r.flag();
    // tick_divisor_minus2, du_cpb_removal_delay_increment_length_minus1,
    // sub_pic_cpb_params_in_pic_timing_sei_flag, dpb_output_delay_du_length_minus1
    if (sub_pic_params) r.skip(8 + 5 + 1 + 5);
    r.skip(4 + 4);  // bit_rate_scale, cpb_size_scale
    if (sub_pic_params) r.skip(4);  // cpb_size_du_scale
    // initial_cpb_removal_delay_length_minus1, au_cpb_removal_delay_length_minus1,
    // dpb_output_delay_length_minus1
    r.skip(5 + 5 + 5);
  }
  for (unsigned i = 0; i <= max_sub_layers_minus1; ++i) {
    const bool fixed_pic_rate_general = r.flag();
    // fixed_pic_rate_within_cvs_flag is inferred 1 when the general flag is set.
    const bool fixed_pic_rate_within_cvs = fixed_pic_rate_general || r.flag();
    bool low_delay = false;
    if (fixed_pic_rate_within_cvs) {
      ue_max(r, 2047, "elemental_duration_in_tc_minus1 out of range");
    } else {
      low_delay = r.flag();
    }
    unsigned cpb_cnt = 1;
    if (!low_delay) cpb_cnt = ue_max(r, kMaxCpbCount - 1, "cpb_cnt_minus1 out of range (> 31)") + 1;
    if (nal_hrd) skip_sub_layer_hrd_parameters(r, cpb_cnt, sub_pic_params);
    if (vcl_hrd) skip_sub_layer_hrd_parameters(r, cpb_cnt, sub_pic_params);
  }
}

constexpr std::uint32_t kExtendedSar = 255;

void parse_vui(BitReader& r, unsigned max_sub_layers_minus1, SpsInfo& info) {
  if (r.flag()) {  // aspect_ratio_info_present_flag
    const std::uint32_t idc = r.u(8);
    if (idc != kExtendedSar) {
      sample_aspect_ratio_from_idc(idc, info.sar_width, info.sar_height);
    } else {
      const auto w = static_cast<std::uint16_t>(r.u(16));
      const auto h = static_cast<std::uint16_t>(r.u(16));
      // A zero in either term means "unspecified" (§E.3.1); keep the 1:1 default then.
      if (w != 0 && h != 0) {
        info.sar_width = w;
        info.sar_height = h;
      }
    }
  }
  if (r.flag()) r.skip(1);  // overscan_info_present_flag, overscan_appropriate_flag
  if (r.flag()) {           // video_signal_type_present_flag
    r.skip(3 + 1);          // video_format, video_full_range_flag
    if (r.flag()) r.skip(8 + 8 + 8);  // colour_primaries, transfer_characteristics, matrix_coeffs
  }
  if (r.flag()) {  // chroma_loc_info_present_flag
    ue_max(r, 5, "chroma_sample_loc_type_top_field out of range");
    ue_max(r, 5, "chroma_sample_loc_type_bottom_field out of range");
  }
  // neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
  r.skip(3);
  if (r.flag()) {  // default_display_window_flag: display hint only, the conformance window crops
    for (int i = 0; i < 4; ++i) r.ue();
  }
  if (r.flag()) {  // vui_timing_info_present_flag
    const std::uint32_t num_units_in_tick = r.u(32);
    const std::uint32_t time_scale = r.u(32);
    // Both "shall be greater than 0"; a camera that writes 0 still has a usable SPS, so the
    // timing is dropped rather than the whole stream rejected.
    if (num_units_in_tick != 0 && time_scale != 0) {
      info.timing_info_present = true;
      info.num_units_in_tick = num_units_in_tick;
      info.time_scale = time_scale;
    }
    if (r.flag()) r.ue();  // vui_poc_proportional_to_timing_flag, vui_num_ticks_poc_diff_one_minus1
    if (r.flag()) skip_hrd_parameters(r, max_sub_layers_minus1);  // vui_hrd_parameters_present_flag
  }
  if (r.flag()) {  // bitstream_restriction_flag
    // tiles_fixed_structure_flag, motion_vectors_over_pic_boundaries_flag,
    // restricted_ref_pic_lists_flag
    r.skip(3);
    info.min_spatial_segmentation = static_cast<std::uint16_t>(
        ue_max(r, 4095, "min_spatial_segmentation_idc out of range (> 4095)"));
    ue_max(r, 16, "max_bytes_per_pic_denom out of range");
    ue_max(r, 16, "max_bits_per_min_cu_denom out of range");
    ue_max(r, 15, "log2_max_mv_length_horizontal out of range");
    ue_max(r, 15, "log2_max_mv_length_vertical out of range");
  }
}

// The leading PPS fields up to entropy_coding_sync_enabled_flag (§7.3.2.3.1), for hvcC's
// parallelismType.
struct PpsHead {
  std::uint32_t pps_id = 0;
  std::uint32_t sps_id = 0;
  bool tiles_enabled = false;
  bool entropy_coding_sync_enabled = false;
};

PpsHead parse_pps_head(ByteSpan nal) {
  expect_type(nal, kPps, "H.265 PPS");
  const Bytes rbsp = payload_rbsp(nal);
  BitReader r(rbsp, "H.265 PPS");
  PpsHead pps;
  pps.pps_id = ue_max(r, 63, "pps_pic_parameter_set_id out of range (> 63)");
  pps.sps_id = ue_max(r, 15, "pps_seq_parameter_set_id out of range (> 15)");
  // dependent_slice_segments_enabled_flag, output_flag_present_flag, num_extra_slice_header_bits,
  // sign_data_hiding_enabled_flag, cabac_init_present_flag
  r.skip(1 + 1 + 3 + 1 + 1);
  ue_max(r, 14, "num_ref_idx_l0_default_active_minus1 out of range");
  ue_max(r, 14, "num_ref_idx_l1_default_active_minus1 out of range");
  // The lower bound depends on the SPS bit depth (-(26 + QpBdOffsetY)); use the widest one.
  se_range(r, -(26 + 48), 25, "init_qp_minus26 out of range");
  r.skip(1 + 1);  // constrained_intra_pred_flag, transform_skip_enabled_flag
  if (r.flag()) ue_max(r, 3, "diff_cu_qp_delta_depth out of range");  // cu_qp_delta_enabled_flag
  se_range(r, -12, 12, "pps_cb_qp_offset out of range");
  se_range(r, -12, 12, "pps_cr_qp_offset out of range");
  // pps_slice_chroma_qp_offsets_present_flag, weighted_pred_flag, weighted_bipred_flag,
  // transquant_bypass_enabled_flag
  r.skip(4);
  pps.tiles_enabled = r.flag();
  pps.entropy_coding_sync_enabled = r.flag();
  return pps;
}

void write_array(ByteWriter& w, std::uint8_t type, const std::vector<Bytes>& units,
                 const char* what) {
  if (units.size() > 0xFFFF) throw BitstreamError(std::string("hvcC: too many ") + what + " units");
  // array_completeness = 1: every parameter set of this type is here (required for 'hvc1').
  w.u8(static_cast<std::uint8_t>(0x80 | type));
  w.u16(static_cast<std::uint16_t>(units.size()));
  for (const Bytes& u : units) {
    expect_type(u, type, what);
    if (u.size() > 0xFFFF) throw BitstreamError(std::string("hvcC: ") + what + " unit too large");
    w.u16(static_cast<std::uint16_t>(u.size()));
    w.raw(u.data(), u.size());
  }
}

}  // namespace

NalHeader classify(ByteSpan nal) {
  check_header(nal, "H.265 NAL unit");
  NalHeader h;
  h.type = type_of(nal);
  h.is_vcl = h.type <= 31;
  if (h.is_vcl) {
    h.kind = (h.type >= kBlaWLp && h.type <= kIrapMax) ? NalKind::Keyframe : NalKind::Slice;
    // The first payload byte cannot be an emulation-prevention byte, so it is read as is.
    if (nal.size() < kNalHeaderSize + 1)
      throw BitstreamError("H.265 slice: no slice segment header");
    h.is_first_slice = (nal[kNalHeaderSize] & 0x80) != 0;
    return h;
  }
  switch (h.type) {
    case kVps: h.kind = NalKind::Vps; break;
    case kSps: h.kind = NalKind::Sps; break;
    case kPps: h.kind = NalKind::Pps; break;
    case kAud: h.kind = NalKind::Aud; break;
    case kEndOfSequence: h.kind = NalKind::EndOfSequence; break;
    case kEndOfBitstream: h.kind = NalKind::EndOfStream; break;
    case kFiller: h.kind = NalKind::Filler; break;
    case kSeiPrefix:
    case kSeiSuffix: h.kind = NalKind::Sei; break;
    default: h.kind = NalKind::Other; break;
  }
  return h;
}

SpsInfo parse_sps(ByteSpan nal) {
  expect_type(nal, kSps, "H.265 SPS");
  const Bytes rbsp = payload_rbsp(nal);
  BitReader r(rbsp, "H.265 SPS");
  SpsInfo info;
  info.codec = Codec::H265;
  info.frame_mbs_only = true;
  const unsigned max_sub_layers_minus1 = parse_sps_head(r, info);

  info.chroma_format_idc =
      static_cast<std::uint8_t>(ue_max(r, 3, "chroma_format_idc out of range (> 3)"));
  bool separate_colour_planes = false;
  if (info.chroma_format_idc == 3) separate_colour_planes = r.flag();

  info.coded_width = r.ue();
  info.coded_height = r.ue();
  if (info.coded_width == 0 || info.coded_height == 0) r.fail("zero picture size");
  if (info.coded_width > kMaxPicDimension || info.coded_height > kMaxPicDimension) {
    r.fail("picture size out of range (> 16888)");
  }

  // Table 6-1: separately coded colour planes are each sampled like luma.
  unsigned sub_width = 1, sub_height = 1;
  if (!separate_colour_planes) {
    if (info.chroma_format_idc == 1) sub_width = sub_height = 2;
    if (info.chroma_format_idc == 2) sub_width = 2;
  }
  if (r.flag()) {  // conformance_window_flag
    // 64-bit: each offset may be up to 2^32 - 2 before the check against the picture size.
    const std::uint64_t left = std::uint64_t(r.ue()) * sub_width;
    const std::uint64_t right = std::uint64_t(r.ue()) * sub_width;
    const std::uint64_t top = std::uint64_t(r.ue()) * sub_height;
    const std::uint64_t bottom = std::uint64_t(r.ue()) * sub_height;
    if (left + right >= info.coded_width || top + bottom >= info.coded_height) {
      r.fail("conformance window larger than the picture");
    }
    info.crop_left = static_cast<std::uint32_t>(left);
    info.crop_right = static_cast<std::uint32_t>(right);
    info.crop_top = static_cast<std::uint32_t>(top);
    info.crop_bottom = static_cast<std::uint32_t>(bottom);
  }
  info.width = info.coded_width - info.crop_left - info.crop_right;
  info.height = info.coded_height - info.crop_top - info.crop_bottom;

  info.bit_depth_luma =
      static_cast<std::uint8_t>(ue_max(r, 8, "bit_depth_luma_minus8 out of range (> 8)") + 8);
  info.bit_depth_chroma =
      static_cast<std::uint8_t>(ue_max(r, 8, "bit_depth_chroma_minus8 out of range (> 8)") + 8);
  const unsigned log2_max_poc_lsb =
      ue_max(r, 12, "log2_max_pic_order_cnt_lsb_minus4 out of range (> 12)") + 4;

  // Only the highest sub-layer's values matter here; with the flag clear only those are coded.
  const bool ordering_for_all = r.flag();
  for (unsigned i = ordering_for_all ? 0 : max_sub_layers_minus1; i <= max_sub_layers_minus1; ++i) {
    ue_max(r, kMaxDpbSize - 1, "sps_max_dec_pic_buffering_minus1 out of range (> 15)");
    const unsigned reorder =
        ue_max(r, kMaxDpbSize - 1, "sps_max_num_reorder_pics out of range (> 15)");
    r.ue();  // sps_max_latency_increase_plus1
    if (i == max_sub_layers_minus1) info.max_num_reorder_frames = static_cast<int>(reorder);
  }

  const unsigned log2_min_cb =
      ue_max(r, 3, "log2_min_luma_coding_block_size_minus3 out of range") + 3;
  const unsigned log2_ctb =
      log2_min_cb + ue_max(r, 3, "log2_diff_max_min_luma_coding_block_size out of range");
  if (log2_ctb > 6) r.fail("CTB size out of range (> 64)");
  if (info.coded_width % (1u << log2_min_cb) != 0 || info.coded_height % (1u << log2_min_cb) != 0) {
    r.fail("picture size not a multiple of the minimum coding block size");
  }
  const unsigned log2_min_tb =
      ue_max(r, 3, "log2_min_luma_transform_block_size_minus2 out of range") + 2;
  if (log2_min_tb >= log2_min_cb)
    r.fail("minimum transform block not smaller than minimum coding block");
  const unsigned log2_max_tb =
      log2_min_tb + ue_max(r, 3, "log2_diff_max_min_luma_transform_block_size out of range");
  if (log2_max_tb > std::min(log2_ctb, 5u)) r.fail("maximum transform block size out of range");
  ue_max(r, log2_ctb - log2_min_tb, "max_transform_hierarchy_depth_inter out of range");
  ue_max(r, log2_ctb - log2_min_tb, "max_transform_hierarchy_depth_intra out of range");

  if (r.flag()) {  // scaling_list_enabled_flag
    if (r.flag()) skip_scaling_list_data(r);  // sps_scaling_list_data_present_flag
  }
  r.skip(2);  // amp_enabled_flag, sample_adaptive_offset_enabled_flag
  if (r.flag()) {  // pcm_enabled_flag
    r.skip(4 + 4);  // pcm_sample_bit_depth_luma_minus1, pcm_sample_bit_depth_chroma_minus1
    ue_max(r, 2, "log2_min_pcm_luma_coding_block_size_minus3 out of range");
    ue_max(r, 2, "log2_diff_max_min_pcm_luma_coding_block_size out of range");
    r.skip(1);  // pcm_loop_filter_disabled_flag
  }

  const unsigned num_st_rps =
      ue_max(r, kMaxShortTermRefPicSets, "num_short_term_ref_pic_sets out of range (> 64)");
  std::array<StRps, kMaxShortTermRefPicSets> sets{};
  for (unsigned i = 0; i < num_st_rps; ++i) parse_st_ref_pic_set(r, i, sets);

  if (r.flag()) {  // long_term_ref_pics_present_flag
    const unsigned n =
        ue_max(r, kMaxLongTermRefPicsSps, "num_long_term_ref_pics_sps out of range (> 32)");
    // lt_ref_pic_poc_lsb_sps, used_by_curr_pic_lt_sps_flag
    for (unsigned i = 0; i < n; ++i) r.skip(log2_max_poc_lsb + 1);
  }
  r.skip(2);  // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
  if (r.flag()) parse_vui(r, max_sub_layers_minus1, info);  // vui_parameters_present_flag
  // The SPS extensions that follow carry nothing this library reports.
  return info;
}

std::uint32_t vps_id(ByteSpan nal) {
  expect_type(nal, kVps, "H.265 VPS");
  if (nal.size() < kNalHeaderSize + 1) throw BitstreamError("H.265 VPS: truncated");
  // First payload byte: never an emulation-prevention byte.
  return nal[kNalHeaderSize] >> 4;
}

std::uint32_t sps_id(ByteSpan nal) {
  expect_type(nal, kSps, "H.265 SPS");
  const Bytes rbsp = payload_rbsp(nal);
  BitReader r(rbsp, "H.265 SPS");
  SpsInfo info;
  parse_sps_head(r, info);
  return info.sps_id;
}

std::uint32_t pps_id(ByteSpan nal) {
  expect_type(nal, kPps, "H.265 PPS");
  const Bytes rbsp = payload_rbsp(nal);
  BitReader r(rbsp, "H.265 PPS");
  return ue_max(r, 63, "pps_pic_parameter_set_id out of range (> 63)");
}

Bytes make_hvcc(const ParameterSets& ps) {
  if (ps.vps.empty() || ps.sps.empty() || ps.pps.empty()) {
    throw BitstreamError("hvcC: need at least one VPS, SPS and PPS");
  }
  const SpsInfo sps = parse_sps(ps.sps.front());
  const PpsHead pps = parse_pps_head(ps.pps.front());
  if (sps.bit_depth_luma > 15 || sps.bit_depth_chroma > 15) {
    throw BitstreamError("hvcC: a bit depth of 16 does not fit bitDepthLumaMinus8 (3 bits)");
  }

  // §8.3.3.1.2: parallelismType 0 (mixed or unknown) is required when min_spatial_segmentation_idc
  // is 0; otherwise it tells what the PPS enables.
  std::uint8_t parallelism = 0;
  if (sps.min_spatial_segmentation != 0) {
    if (pps.entropy_coding_sync_enabled && pps.tiles_enabled) {
      parallelism = 0;
    } else if (pps.entropy_coding_sync_enabled) {
      parallelism = 3;  // wavefront
    } else if (pps.tiles_enabled) {
      parallelism = 2;  // tiles
    } else {
      parallelism = 1;  // slices
    }
  }

  std::size_t size = 23 + 3 * 3;  // fixed fields, then three array headers
  for (const auto* units : {&ps.vps, &ps.sps, &ps.pps}) {
    for (const Bytes& u : *units) size += 2 + u.size();
  }
  Bytes out;
  out.reserve(size);
  ByteWriter w(out);
  w.u8(1);  // configurationVersion
  // profile_space/tier/profile_idc, 32 compatibility flags, 48 constraint bits, level: exactly the
  // general part of the SPS's profile_tier_level.
  w.raw(sps.general_ptl, sizeof sps.general_ptl);
  w.u16(static_cast<std::uint16_t>(0xF000 | sps.min_spatial_segmentation));
  w.u8(static_cast<std::uint8_t>(0xFC | parallelism));
  w.u8(static_cast<std::uint8_t>(0xFC | sps.chroma_format_idc));
  w.u8(static_cast<std::uint8_t>(0xF8 | (sps.bit_depth_luma - 8)));
  w.u8(static_cast<std::uint8_t>(0xF8 | (sps.bit_depth_chroma - 8)));
  w.u16(0);  // avgFrameRate: unspecified
  // constantFrameRate = 0 (unknown), numTemporalLayers, temporalIdNested, lengthSizeMinusOne = 3.
  w.u8(static_cast<std::uint8_t>((sps.max_sub_layers << 3) | (sps.temporal_id_nesting ? 0x04 : 0) |
                                 0x03));
  w.u8(3);  // numOfArrays
  write_array(w, kVps, ps.vps, "H.265 VPS");
  write_array(w, kSps, ps.sps, "H.265 SPS");
  write_array(w, kPps, ps.pps, "H.265 PPS");
  return out;
}

// ISO/IEC 14496-15 Annex E.3. Where the spec leaves a choice this follows WebKit's
// createHEVCCodecParametersString, and both WebKit and Chromium (ParseHEVCCodecId) parse it:
// compatibility flags as hex without leading zeros, constraint bytes as two uppercase hex digits,
// and every trailing zero constraint byte omitted ("hvc1.1.6.L93.B0", or "hvc1.1.6.L93" when all
// six are 0). GPAC prints "%X" and always keeps the first byte; both forms parse the same.
std::string codec_string(ByteSpan sps_nal) {
  expect_type(sps_nal, kSps, "H.265 SPS");
  const Bytes rbsp = payload_rbsp(sps_nal);
  BitReader r(rbsp, "H.265 SPS");
  SpsInfo info;
  parse_sps_head(r, info);

  std::uint32_t reversed = 0;
  for (int j = 0; j < 32; ++j) reversed |= ((info.profile_compatibility >> j) & 1u) << (31 - j);

  std::string s = "hvc1.";
  if (info.profile_space != 0) s += static_cast<char>('A' + info.profile_space - 1);
  s += std::to_string(info.profile_idc);
  char buf[16];
  std::snprintf(buf, sizeof buf, ".%X", static_cast<unsigned>(reversed));
  s += buf;
  s += info.tier_flag ? ".H" : ".L";
  s += std::to_string(info.level_idc);

  const std::uint8_t* constraints = info.general_ptl + 5;
  int last = 5;
  while (last >= 0 && constraints[last] == 0) --last;
  for (int i = 0; i <= last; ++i) {
    std::snprintf(buf, sizeof buf, ".%02X", static_cast<unsigned>(constraints[i]));
    s += buf;
  }
  return s;
}

}  // namespace vms::h265
