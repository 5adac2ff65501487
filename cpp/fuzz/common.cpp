// See common.hpp.
#include "common.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vmscore/fmp4.hpp"

namespace vms::fuzz {

void check_failed(const char* file, int line, const char* condition) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, condition);
  std::abort();
}

std::uint8_t Input::u8() { return pos_ < data_.size() ? data_[pos_++] : 0; }

std::uint16_t Input::u16() {
  const std::uint16_t hi = u8();
  return static_cast<std::uint16_t>((hi << 8) | u8());
}

std::uint32_t Input::u32() {
  const std::uint32_t hi = u16();
  return (hi << 16) | u16();
}

std::uint64_t Input::u64() {
  const std::uint64_t hi = u32();
  return (hi << 32) | u32();
}

ByteSpan Input::take(std::size_t n) {
  const std::size_t k = n < remaining() ? n : remaining();
  const ByteSpan out = data_.subspan(pos_, k);
  pos_ += k;
  return out;
}

namespace {

// 64x64 testsrc2, libx264 High profile level 1.0.
constexpr std::uint8_t kH264Sps[] = {0x67, 0x64, 0x00, 0x0a, 0xac, 0xd9, 0x44, 0x26,
                                     0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
                                     0x00, 0x03, 0x00, 0x50, 0x3c, 0x48, 0x96, 0x58};
constexpr std::uint8_t kH264Pps[] = {0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0};
// 64x64 testsrc2, libx265 Main profile level 3.
constexpr std::uint8_t kH265Vps[] = {0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60,
                                     0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
                                     0x00, 0x00, 0x03, 0x00, 0x1e, 0x95, 0x98, 0x09};
constexpr std::uint8_t kH265Sps[] = {0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90,
                                     0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x1e, 0xa0, 0x20,
                                     0x81, 0x05, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0, 0x16, 0x80,
                                     0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x05, 0x04};
constexpr std::uint8_t kH265Pps[] = {0x44, 0x01, 0xc1, 0x72, 0xb4, 0x22, 0x40};

template <std::size_t N>
Bytes bytes_of(const std::uint8_t (&a)[N]) {
  return Bytes(a, a + N);
}

std::uint32_t be32(ByteSpan s, std::size_t at) {
  FUZZ_CHECK(at + 4 <= s.size());
  return load_be32(s.data() + at);
}

std::uint16_t be16(ByteSpan s, std::size_t at) {
  FUZZ_CHECK(at + 2 <= s.size());
  return load_be16(s.data() + at);
}

std::uint64_t be64(ByteSpan s, std::size_t at) {
  return (std::uint64_t(be32(s, at)) << 32) | be32(s, at + 4);
}

const Box& only(const std::vector<Box>& boxes, std::size_t index, std::string_view type) {
  FUZZ_CHECK(index < boxes.size());
  FUZZ_CHECK(boxes[index].type == type);
  return boxes[index];
}

// The one box of this type among `boxes`.
const Box& find(const std::vector<Box>& boxes, std::string_view type) {
  const Box* found = nullptr;
  for (const Box& b : boxes) {
    if (b.type != type) continue;
    FUZZ_CHECK(found == nullptr);
    found = &b;
  }
  FUZZ_CHECK(found != nullptr);
  return *found;
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

}  // namespace

ParameterSets seed_parameter_sets(Codec codec) {
  ParameterSets ps;
  ps.codec = codec;
  if (codec == Codec::H264) {
    ps.sps.push_back(bytes_of(kH264Sps));
    ps.pps.push_back(bytes_of(kH264Pps));
  } else {
    ps.vps.push_back(bytes_of(kH265Vps));
    ps.sps.push_back(bytes_of(kH265Sps));
    ps.pps.push_back(bytes_of(kH265Pps));
  }
  return ps;
}

Bytes seed_parameter_sets_annexb(Codec codec) {
  const ParameterSets ps = seed_parameter_sets(codec);
  Bytes out;
  for (const auto* sets : {&ps.vps, &ps.sps, &ps.pps}) {
    for (const Bytes& unit : *sets) {
      out.insert(out.end(), {0, 0, 0, 1});
      out.insert(out.end(), unit.begin(), unit.end());
    }
  }
  return out;
}

bool same_bytes(ByteSpan a, ByteSpan b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

std::vector<Bytes> annexb_units(ByteSpan data) {
  std::vector<NalRange> ranges;
  split_annexb(data, ranges);
  std::vector<Bytes> out;
  out.reserve(ranges.size());
  for (const NalRange& r : ranges) {
    FUZZ_CHECK(r.size > 0 && r.offset <= data.size() && r.size <= data.size() - r.offset);
    const ByteSpan unit = data.subspan(r.offset, r.size);
    out.emplace_back(unit.begin(), unit.end());
  }
  return out;
}

void check_sps_info(Codec codec, const SpsInfo& s) {
  FUZZ_CHECK(s.codec == codec);
  FUZZ_CHECK(s.width >= 1 && s.height >= 1);
  FUZZ_CHECK(s.width <= s.coded_width && s.height <= s.coded_height);
  FUZZ_CHECK(std::uint64_t(s.crop_left) + s.crop_right + s.width == s.coded_width);
  FUZZ_CHECK(std::uint64_t(s.crop_top) + s.crop_bottom + s.height == s.coded_height);
  FUZZ_CHECK(s.chroma_format_idc <= 3);
  FUZZ_CHECK(s.max_num_reorder_frames >= -1 && s.max_num_reorder_frames <= 16);
  const double fps = s.frame_rate();
  FUZZ_CHECK(std::isfinite(fps) && fps >= 0.0);
  if (codec == Codec::H264) {
    FUZZ_CHECK(s.coded_width % 16 == 0 && s.coded_height % 16 == 0);
    FUZZ_CHECK(s.coded_width <= 1056 * 16 && s.coded_height <= 2 * 1056 * 16);
    FUZZ_CHECK(s.bit_depth_luma >= 8 && s.bit_depth_luma <= 14);
    FUZZ_CHECK(s.bit_depth_chroma >= 8 && s.bit_depth_chroma <= 14);
    FUZZ_CHECK(s.sps_id <= 31);
  } else {
    FUZZ_CHECK(s.coded_width <= 16888 && s.coded_height <= 16888);
    FUZZ_CHECK(s.coded_width % 8 == 0 && s.coded_height % 8 == 0);  // MinCbSizeY is at least 8
    FUZZ_CHECK(s.bit_depth_luma >= 8 && s.bit_depth_luma <= 16);
    FUZZ_CHECK(s.bit_depth_chroma >= 8 && s.bit_depth_chroma <= 16);
    FUZZ_CHECK(s.max_sub_layers >= 1 && s.max_sub_layers <= 7);
    FUZZ_CHECK(s.sps_id <= 15);
    FUZZ_CHECK(s.profile_space <= 3 && s.profile_idc <= 31);
    FUZZ_CHECK(s.frame_mbs_only);
  }
}

void check_codec_string(Codec codec, const SpsInfo& s, std::string_view cs) {
  if (codec == Codec::H264) {
    char want[16];
    std::snprintf(want, sizeof want, "avc1.%02x%02x%02x", s.profile_idc,
                  static_cast<unsigned>(s.profile_compatibility & 0xFF), s.level_idc);
    FUZZ_CHECK(cs == want);
    return;
  }
  // hvc1.[A-C]?<profile>.<hex flags>.<L|H><level>(.<hex byte>){0,6}
  FUZZ_CHECK(cs.substr(0, 5) == "hvc1.");
  std::vector<std::string_view> parts;
  std::size_t from = 5;
  while (true) {
    const std::size_t dot = cs.find('.', from);
    parts.push_back(cs.substr(from, dot == std::string_view::npos ? std::string_view::npos : dot - from));
    if (dot == std::string_view::npos) break;
    from = dot + 1;
  }
  FUZZ_CHECK(parts.size() >= 3 && parts.size() <= 9);
  std::string profile = s.profile_space ? std::string(1, char('A' + s.profile_space - 1)) : "";
  profile += std::to_string(s.profile_idc);
  FUZZ_CHECK(parts[0] == profile);
  FUZZ_CHECK(!parts[1].empty() && parts[1].size() <= 8 && is_hex(parts[1]));
  FUZZ_CHECK(parts[2] == (s.tier_flag ? "H" : "L") + std::to_string(s.level_idc));
  for (std::size_t i = 3; i < parts.size(); ++i)
    FUZZ_CHECK(parts[i].size() == 2 && is_hex(parts[i]));
}

void check_decoder_config(const ParameterSets& ps, ByteSpan rec) {
  must_not_throw("check_decoder_config", [&] {
    const SpsInfo s = parse_sps(ps.codec, ps.sps.front());  // succeeded in make_avcc / make_hvcc
    std::size_t at = 0;
    auto u8 = [&]() -> std::uint8_t {
      FUZZ_CHECK(at < rec.size());
      return rec[at++];
    };
    auto unit = [&](const Bytes& want) {
      const std::size_t n = be16(rec, at);
      at += 2;
      FUZZ_CHECK(n == want.size() && at + n <= rec.size());
      FUZZ_CHECK(same_bytes(rec.subspan(at, n), want));
      at += n;
    };
    FUZZ_CHECK(u8() == 1);  // configurationVersion
    if (ps.codec == Codec::H264) {
      FUZZ_CHECK(u8() == s.profile_idc);
      FUZZ_CHECK(u8() == (s.profile_compatibility & 0xFF));
      FUZZ_CHECK(u8() == s.level_idc);
      FUZZ_CHECK(u8() == 0xFF);
      FUZZ_CHECK(u8() == (0xE0 | ps.sps.size()));
      for (const Bytes& u : ps.sps) unit(u);
      FUZZ_CHECK(u8() == ps.pps.size());
      for (const Bytes& u : ps.pps) unit(u);
      // The chroma and bit-depth extension: required for these High profiles, absent for
      // Baseline, Main and Extended; editions of ISO/IEC 14496-15 differ on the other profiles.
      const bool high = s.profile_idc == 100 || s.profile_idc == 110 || s.profile_idc == 122 ||
                        s.profile_idc == 144;
      const bool legacy = s.profile_idc == 66 || s.profile_idc == 77 || s.profile_idc == 88;
      FUZZ_CHECK(!(high && at == rec.size()) && !(legacy && at != rec.size()));
      if (at != rec.size()) {
        FUZZ_CHECK(u8() == (0xFC | s.chroma_format_idc));
        FUZZ_CHECK(u8() == (0xF8 | (s.bit_depth_luma - 8)));
        FUZZ_CHECK(u8() == (0xF8 | (s.bit_depth_chroma - 8)));
        FUZZ_CHECK(u8() == 0);
      }
    } else {
      FUZZ_CHECK(rec.size() >= 23);
      FUZZ_CHECK(same_bytes(rec.subspan(1, 12), ByteSpan(s.general_ptl, 12)));
      at = 13;
      FUZZ_CHECK(be16(rec, at) == (0xF000 | s.min_spatial_segmentation));
      at += 2;
      FUZZ_CHECK((u8() & 0xFC) == 0xFC);  // parallelismType
      FUZZ_CHECK(u8() == (0xFC | s.chroma_format_idc));
      FUZZ_CHECK(u8() == (0xF8 | (s.bit_depth_luma - 8)));
      FUZZ_CHECK(u8() == (0xF8 | (s.bit_depth_chroma - 8)));
      at += 2;  // avgFrameRate
      FUZZ_CHECK((u8() & 0x03) == 0x03);  // lengthSizeMinusOne
      FUZZ_CHECK(u8() == 3);              // numOfArrays
      const std::vector<Bytes>* arrays[3] = {&ps.vps, &ps.sps, &ps.pps};
      for (int i = 0; i < 3; ++i) {
        FUZZ_CHECK(u8() == (0x80 | (32 + i)));
        FUZZ_CHECK(be16(rec, at) == arrays[i]->size());
        at += 2;
        for (const Bytes& u : *arrays[i]) unit(u);
      }
    }
    FUZZ_CHECK(at == rec.size());
  });
}

std::vector<Box> walk_boxes(ByteSpan data) {
  std::vector<Box> out;
  std::size_t at = 0;
  while (at < data.size()) {
    FUZZ_CHECK(data.size() - at >= 8);
    const std::uint32_t size = be32(data, at);
    FUZZ_CHECK(size >= 8 && size <= data.size() - at);
    const ByteSpan all = data.subspan(at, size);
    out.push_back({std::string_view(reinterpret_cast<const char*>(all.data()) + 4, 4),
                   all.subspan(8), all});
    at += size;
  }
  return out;
}

void check_init_segment(const ParameterSets& ps, ByteSpan init) {
  must_not_throw("check_init_segment", [&] {
    const SpsInfo s = parse_sps(ps.codec, ps.sps.front());
    const auto top = walk_boxes(init);
    FUZZ_CHECK(top.size() == 2);
    only(top, 0, "ftyp");
    const auto moov = walk_boxes(only(top, 1, "moov").body);
    find(moov, "mvhd");
    FUZZ_CHECK(be32(find(walk_boxes(find(moov, "mvex").body), "trex").body, 4) == 1);  // track_ID
    const auto trak = walk_boxes(find(moov, "trak").body);
    const ByteSpan tkhd = find(trak, "tkhd").body;
    FUZZ_CHECK(tkhd.size() == 84 && be32(tkhd, 80) == s.height << 16);
    const auto mdia = walk_boxes(find(trak, "mdia").body);
    FUZZ_CHECK(be32(find(mdia, "mdhd").body, 12) == fmp4::kTimescale);
    find(mdia, "hdlr");
    const auto minf = walk_boxes(find(mdia, "minf").body);
    find(minf, "vmhd");
    walk_boxes(find(walk_boxes(find(minf, "dinf").body), "dref").body.subspan(8));
    const auto stbl = walk_boxes(find(minf, "stbl").body);
    for (const char* empty : {"stts", "stsc", "stco", "stsz"})
      FUZZ_CHECK(be32(find(stbl, empty).body, std::string_view(empty) == "stsz" ? 8 : 4) == 0);
    const ByteSpan stsd = find(stbl, "stsd").body;
    FUZZ_CHECK(stsd.size() >= 8 && be32(stsd, 4) == 1);
    const auto entries = walk_boxes(stsd.subspan(8));
    FUZZ_CHECK(entries.size() == 1);
    const ByteSpan entry = only(entries, 0, ps.codec == Codec::H264 ? "avc1" : "hvc1").body;
    FUZZ_CHECK(entry.size() >= 78);
    FUZZ_CHECK(be16(entry, 24) == s.width && be16(entry, 26) == s.height);
    const auto children = walk_boxes(entry.subspan(78));
    const ByteSpan record = only(children, 0, ps.codec == Codec::H264 ? "avcC" : "hvcC").body;
    check_decoder_config(ps, record);
    FUZZ_CHECK(same_bytes(record, ps.codec == Codec::H264 ? make_avcc(ps) : make_hvcc(ps)));
    // pasp exactly when the samples are not square.
    const bool square = s.sar_width == s.sar_height || s.sar_width == 0 || s.sar_height == 0;
    std::size_t pasp_boxes = 0;
    for (const Box& b : children) {
      if (b.type != "pasp") continue;
      ++pasp_boxes;
      FUZZ_CHECK(b.body.size() == 8);
      FUZZ_CHECK(be32(b.body, 0) == s.sar_width && be32(b.body, 4) == s.sar_height);
    }
    FUZZ_CHECK(pasp_boxes == (square ? 0u : 1u));
  });
}

FragmentSummary check_fragments(Codec codec, ByteSpan data) {
  FragmentSummary sum;
  must_not_throw("check_fragments", [&] {
    const auto top = walk_boxes(data);
    FUZZ_CHECK(top.size() % 2 == 0);
    bool have_base = false;
    std::uint64_t last_base = 0;
    for (std::size_t f = 0; f < top.size(); f += 2) {
      const Box& moof = only(top, f, "moof");
      const Box& mdat = only(top, f + 1, "mdat");
      const auto parts = walk_boxes(moof.body);
      const ByteSpan mfhd = find(parts, "mfhd").body;
      FUZZ_CHECK(mfhd.size() == 8 && be32(mfhd, 4) == sum.fragments + 1);
      const auto traf = walk_boxes(find(parts, "traf").body);
      const ByteSpan tfhd = find(traf, "tfhd").body;
      // default-base-is-moof, no base_data_offset, track 1
      FUZZ_CHECK(tfhd.size() >= 8 && (be32(tfhd, 0) & 0x020001) == 0x020000 && be32(tfhd, 4) == 1);
      const ByteSpan tfdt = find(traf, "tfdt").body;
      FUZZ_CHECK(tfdt.size() == 12 && tfdt[0] == 1);
      const std::uint64_t base = be64(tfdt, 4);
      FUZZ_CHECK(have_base ? base > last_base : base == 0);
      have_base = true;
      last_base = base;

      const ByteSpan trun = find(traf, "trun").body;
      FUZZ_CHECK(trun.size() >= 12 && trun[0] == 1);
      const std::uint32_t flags = be32(trun, 0) & 0xFFFFFF;
      FUZZ_CHECK((flags & ~0x000800u) == 0x000701u);
      const std::size_t entry = (flags & 0x000800) ? 16 : 12;
      const std::uint32_t count = be32(trun, 4);
      FUZZ_CHECK(count >= 1);
      FUZZ_CHECK(trun.size() == 12 + std::size_t(count) * entry);
      // data_offset is relative to the moof (default-base-is-moof): the first payload byte.
      FUZZ_CHECK(be32(trun, 8) == moof.all.size() + 8);

      std::size_t at = 0;
      const ByteSpan payload = mdat.body;
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::size_t e = 12 + std::size_t(i) * entry;
        FUZZ_CHECK(be32(trun, e) > 0);  // duration
        const std::uint32_t size = be32(trun, e + 4);
        const std::uint32_t sample_flags = be32(trun, e + 8);
        FUZZ_CHECK(sample_flags == fmp4::kKeyframeFlags || sample_flags == fmp4::kNonKeyframeFlags);
        FUZZ_CHECK(size <= payload.size() - at);
        const ByteSpan sample = payload.subspan(at, size);
        std::vector<NalRange> units;
        split_length_prefixed(sample, 4, units);  // must tile: a throw here is a finding
        bool has_vcl = false;
        for (const NalRange& u : units) {
          const NalHeader h = classify_nal(codec, sample.subspan(u.offset, u.size));
          has_vcl |= h.is_vcl;
          FUZZ_CHECK(h.kind != NalKind::Vps && h.kind != NalKind::Sps && h.kind != NalKind::Pps &&
                     h.kind != NalKind::Aud && h.kind != NalKind::Filler);
        }
        FUZZ_CHECK(has_vcl);
        at += size;
      }
      FUZZ_CHECK(at == payload.size());
      sum.fragments += 1;
      sum.samples += count;
    }
  });
  return sum;
}

}  // namespace vms::fuzz
