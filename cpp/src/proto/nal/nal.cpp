// Codec-independent NAL unit tools: classification and access-unit boundaries dispatched per codec,
// parameter-set collection, and the SPS summary. See vmscore/nal.hpp for the specs followed.
#include <algorithm>
#include <string>

#include "proto/h264/h264.hpp"
#include "proto/h265/h265.hpp"
#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"

namespace vms {

const char* codec_name(Codec c) { return c == Codec::H264 ? "h264" : "h265"; }

const char* nal_kind_name(NalKind k) {
  switch (k) {
    case NalKind::Keyframe: return "keyframe";
    case NalKind::Slice: return "slice";
    case NalKind::Vps: return "vps";
    case NalKind::Sps: return "sps";
    case NalKind::Pps: return "pps";
    case NalKind::Sei: return "sei";
    case NalKind::Aud: return "aud";
    case NalKind::EndOfSequence: return "end_of_sequence";
    case NalKind::EndOfStream: return "end_of_stream";
    case NalKind::Filler: return "filler";
    case NalKind::Other: return "other";
  }
  return "other";
}

NalHeader classify_nal(Codec codec, ByteSpan nal) {
  return codec == Codec::H264 ? h264::classify(nal) : h265::classify(nal);
}

namespace {

// NAL types that, after the last VCL unit of a picture, open the next access unit
// (H.264 §7.4.1.2.3; H.265 §7.4.2.4.4).
bool opens_access_unit(Codec codec, std::uint8_t type) {
  if (codec == Codec::H264) return (type >= 6 && type <= 9) || (type >= 14 && type <= 18);
  return (type >= 32 && type <= 35) || type == 39 || (type >= 41 && type <= 44) ||
         (type >= 48 && type <= 55);
}

}  // namespace

bool AccessUnitSplitter::starts_new_au(const NalHeader& h) {
  const bool starts =
      seen_vcl_ && (h.is_vcl ? h.is_first_slice : opens_access_unit(codec_, h.type));
  if (starts) seen_vcl_ = false;
  if (h.is_vcl) seen_vcl_ = true;
  seen_any_ = true;
  return starts;
}

void split_access_units(Codec codec, ByteSpan annexb, std::vector<AccessUnitRange>& out) {
  std::vector<NalRange> units;
  split_annexb(annexb, units);
  AccessUnitSplitter splitter(codec);
  const std::size_t first_out = out.size();
  for (const NalRange& u : units) {
    const NalHeader h = classify_nal(codec, annexb.subspan(u.offset, u.size));
    const bool boundary = splitter.starts_new_au(h);
    if (out.size() == first_out) {
      out.push_back({0, 0, false});  // the first access unit owns any leading zero bytes
    } else if (boundary) {
      // The new access unit begins at its first unit's start code, including leading zeros.
      std::size_t begin = u.offset - 3;
      while (begin > out.back().offset && annexb[begin - 1] == 0) --begin;
      out.back().size = begin - out.back().offset;
      out.push_back({begin, 0, false});
    }
    if (h.kind == NalKind::Keyframe) out.back().is_keyframe = true;
  }
  if (out.size() > first_out) out.back().size = annexb.size() - out.back().offset;
}

double SpsInfo::frame_rate() const {
  if (!timing_info_present || num_units_in_tick == 0 || time_scale == 0) return 0.0;
  // H.264 counts field ticks (two per frame, E.2.1); H.265 counts frame ticks.
  const double ticks_per_frame = codec == Codec::H264 ? 2.0 : 1.0;
  return double(time_scale) / (double(num_units_in_tick) * ticks_per_frame);
}

void sample_aspect_ratio_from_idc(std::uint32_t idc, std::uint16_t& sar_width,
                                  std::uint16_t& sar_height) {
  static constexpr std::uint16_t kTable[17][2] = {
      {1, 1},   {1, 1},   {12, 11}, {10, 11}, {16, 11}, {40, 33}, {24, 11}, {20, 11}, {32, 11},
      {80, 33}, {18, 11}, {15, 11}, {64, 33}, {160, 99}, {4, 3},  {3, 2},   {2, 1}};
  const std::uint32_t i = idc <= 16 ? idc : 0;
  sar_width = kTable[i][0];
  sar_height = kTable[i][1];
}

SpsInfo parse_sps(Codec codec, ByteSpan sps_nal) {
  return codec == Codec::H264 ? h264::parse_sps(sps_nal) : h265::parse_sps(sps_nal);
}

bool ParameterSets::complete() const {
  return !sps.empty() && !pps.empty() && (codec == Codec::H264 || !vps.empty());
}

std::uint32_t parameter_set_id(Codec codec, ByteSpan nal) {
  const NalKind kind = classify_nal(codec, nal).kind;
  if (codec == Codec::H264) {
    if (kind == NalKind::Sps) return h264::parse_sps(nal).sps_id;
    if (kind == NalKind::Pps) return h264::pps_id(nal);
  } else {
    if (kind == NalKind::Vps) return h265::vps_id(nal);
    if (kind == NalKind::Sps) return h265::sps_id(nal);
    if (kind == NalKind::Pps) return h265::pps_id(nal);
  }
  throw BitstreamError(std::string("not a parameter set: ") + nal_kind_name(kind));
}

void collect_parameter_sets(Codec codec, ByteSpan data, bool annexb, int length_size,
                            ParameterSets& out) {
  out.codec = codec;
  std::vector<NalRange> units;
  if (annexb)
    split_annexb(data, units);
  else
    split_length_prefixed(data, length_size, units);
  for (const NalRange& u : units) {
    const ByteSpan nal = data.subspan(u.offset, u.size);
    const NalKind kind = classify_nal(codec, nal).kind;
    std::vector<Bytes>* sets = kind == NalKind::Vps   ? &out.vps
                               : kind == NalKind::Sps ? &out.sps
                               : kind == NalKind::Pps ? &out.pps
                                                      : nullptr;
    if (!sets) continue;
    const std::uint32_t id = parameter_set_id(codec, nal);
    auto same_id = std::find_if(sets->begin(), sets->end(),
                                [&](const Bytes& b) { return parameter_set_id(codec, b) == id; });
    // Ids are bounded (15 for VPS/SPS, 63 for PPS), so a stream cannot make the lists grow without end.
    if (same_id != sets->end())
      same_id->assign(nal.begin(), nal.end());
    else
      sets->emplace_back(nal.begin(), nal.end());
  }
}

Bytes make_avcc(const ParameterSets& ps) { return h264::make_avcc(ps); }
Bytes make_hvcc(const ParameterSets& ps) { return h265::make_hvcc(ps); }

std::string codec_string(Codec codec, ByteSpan sps_nal) {
  return codec == Codec::H264 ? h264::codec_string(sps_nal) : h265::codec_string(sps_nal);
}

}  // namespace vms
