// Reading fragmented MP4 (ISO/IEC 14496-12 §4.2 boxes, §8.2-8.8 moov, §8.8.4-8.8.12 moof; ISO/IEC
// 14496-15 §5.3.3.1 avcC, §8.3.3.1 hvcC) and scanning segment files for their complete fragments.
#include "vmscore/fmp4_reader.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>

#include "vmscore/error.hpp"

namespace vms::fmp4 {
namespace {

// A bounds-checked big-endian reader over one box body; `what` names the box in errors.
class Cursor {
 public:
  Cursor(ByteSpan data, const char* what) : data_(data), what_(what) {}

  std::size_t left() const { return data_.size() - pos_; }
  std::uint8_t u8() { return take(1)[0]; }
  std::uint16_t u16() { return load_be16(take(2).data()); }
  std::uint32_t u24() {
    const ByteSpan b = take(3);
    return (std::uint32_t(b[0]) << 16) | (std::uint32_t(b[1]) << 8) | b[2];
  }
  std::uint32_t u32() { return load_be32(take(4).data()); }
  std::uint64_t u64() {
    const std::uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  ByteSpan take(std::size_t n) {
    if (n > left()) fail("truncated");
    const ByteSpan out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  void skip(std::size_t n) { take(n); }
  [[noreturn]] void fail(const std::string& detail) const {
    throw BitstreamError(std::string(what_) + ": " + detail);
  }

 private:
  ByteSpan data_;
  std::size_t pos_ = 0;
  const char* what_;
};

struct Child {
  std::uint32_t type;
  ByteSpan all;   // header included
  ByteSpan body;  // after the header
};

// The boxes that tile `body` exactly.
std::vector<Child> children(ByteSpan body, const char* parent) {
  std::vector<Child> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const ByteSpan rest = body.subspan(pos);
    const std::optional<BoxHeader> h = read_box_header(rest);
    if (!h) throw BitstreamError(std::string(parent) + ": truncated box header inside");
    if (h->size > rest.size())
      throw BitstreamError(std::string(parent) + ": box '" + fourcc_name(h->type) +
                           "' runs past its parent");
    const auto size = static_cast<std::size_t>(h->size);
    out.push_back({h->type, rest.first(size), rest.subspan(h->header_size, size - h->header_size)});
    pos += size;
  }
  return out;
}

const Child* find_child(const std::vector<Child>& boxes, std::uint32_t type) {
  for (const Child& c : boxes)
    if (c.type == type) return &c;
  return nullptr;
}

const Child& need_child(const std::vector<Child>& boxes, std::uint32_t type, const char* parent) {
  const Child* c = find_child(boxes, type);
  if (!c) throw BitstreamError(std::string(parent) + ": no '" + fourcc_name(type) + "' box");
  return *c;
}

// The one box of this type: a segment has one track, a fragment one track fragment.
const Child& single_child(const std::vector<Child>& boxes, std::uint32_t type, const char* parent,
                          const char* what) {
  const Child* found = nullptr;
  for (const Child& c : boxes) {
    if (c.type != type) continue;
    if (found) throw BitstreamError(std::string(parent) + ": more than one " + what);
    found = &c;
  }
  if (!found) throw BitstreamError(std::string(parent) + ": no " + what);
  return *found;
}

// version and flags of a full box.
std::uint8_t full_box(Cursor& c, std::uint32_t& flags) {
  const std::uint8_t version = c.u8();
  flags = c.u24();
  return version;
}

void read_units(Cursor& c, std::size_t count, std::vector<Bytes>& out) {
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t n = c.u16();
    if (n == 0) c.fail("empty parameter set");
    const ByteSpan unit = c.take(n);
    out.emplace_back(unit.begin(), unit.end());
  }
}

// AVCDecoderConfigurationRecord: version, profile, compatibility, level, length size, SPS, PPS.
void parse_avcc(ByteSpan body, TrackInfo& t) {
  Cursor c(body, "avcC");
  if (c.u8() != 1) c.fail("configurationVersion is not 1");
  c.skip(3);
  t.nal_length_size = (c.u8() & 0x03u) + 1;
  read_units(c, c.u8() & 0x1Fu, t.parameter_sets.sps);
  read_units(c, c.u8(), t.parameter_sets.pps);
}

// HEVCDecoderConfigurationRecord: 21 bytes of profile and format fields, the length size, then
// arrays of VPS / SPS / PPS / SEI units.
void parse_hvcc(ByteSpan body, TrackInfo& t) {
  Cursor c(body, "hvcC");
  if (c.u8() != 1) c.fail("configurationVersion is not 1");
  c.skip(20);
  t.nal_length_size = (c.u8() & 0x03u) + 1;
  const std::uint8_t arrays = c.u8();
  for (std::uint8_t a = 0; a < arrays; ++a) {
    const std::uint8_t type = c.u8() & 0x3F;
    const std::uint16_t count = c.u16();
    std::vector<Bytes>* into = type == 32   ? &t.parameter_sets.vps
                               : type == 33 ? &t.parameter_sets.sps
                               : type == 34 ? &t.parameter_sets.pps
                                            : nullptr;
    if (into) {
      read_units(c, count, *into);
    } else {
      std::vector<Bytes> ignored;
      read_units(c, count, ignored);
    }
  }
}

void parse_sample_entry(const Child& entry, TrackInfo& t) {
  const std::uint32_t type = entry.type;
  if (type == fourcc("avc1") || type == fourcc("avc3"))
    t.codec = Codec::H264;
  else if (type == fourcc("hvc1") || type == fourcc("hev1"))
    t.codec = Codec::H265;
  else
    throw BitstreamError("stsd: unsupported sample entry '" + fourcc_name(type) +
                         "' (need avc1, avc3, hvc1 or hev1)");
  // VisualSampleEntry: 78 bytes of fixed fields (ISO/IEC 14496-12 §12.1.3), then boxes.
  constexpr std::size_t kVisualFields = 78;
  if (entry.body.size() < kVisualFields) throw BitstreamError("sample entry: truncated");
  const auto boxes = children(entry.body.subspan(kVisualFields), "sample entry");
  t.parameter_sets = {};
  t.parameter_sets.codec = t.codec;
  if (t.codec == Codec::H264)
    parse_avcc(need_child(boxes, fourcc("avcC"), "avc1").body, t);
  else
    parse_hvcc(need_child(boxes, fourcc("hvcC"), "hvc1").body, t);
  if (t.parameter_sets.sps.empty())
    throw BitstreamError(std::string("sample entry: no ") + codec_name(t.codec) + " SPS");
  const SpsInfo sps = parse_sps(t.codec, t.parameter_sets.sps.front());
  t.width = sps.width;
  t.height = sps.height;
  t.codec_string = vms::codec_string(t.codec, t.parameter_sets.sps.front());
  t.sample_entry.assign(entry.all.begin(), entry.all.end());
}

TrackInfo parse_trak(const Child& trak, std::uint32_t& track_id) {
  TrackInfo t;
  const auto boxes = children(trak.body, "trak");
  {
    Cursor c(need_child(boxes, fourcc("tkhd"), "trak").body, "tkhd");
    std::uint32_t flags;
    const std::uint8_t version = full_box(c, flags);
    c.skip(version == 1 ? 16 : 8);
    track_id = c.u32();
    c.skip(4 + (version == 1 ? 8 : 4) + 8 + 8 + 36);  // reserved, duration, ..., matrix
    t.display_width = c.u32();
    t.display_height = c.u32();
  }
  const auto mdia = children(need_child(boxes, fourcc("mdia"), "trak").body, "mdia");
  {
    Cursor c(need_child(mdia, fourcc("mdhd"), "mdia").body, "mdhd");
    std::uint32_t flags;
    const std::uint8_t version = full_box(c, flags);
    c.skip(version == 1 ? 16 : 8);
    t.timescale = c.u32();
    if (t.timescale == 0) c.fail("timescale is 0");
  }
  {
    Cursor c(need_child(mdia, fourcc("hdlr"), "mdia").body, "hdlr");
    c.skip(8);
    const std::uint32_t handler = c.u32();
    if (handler != fourcc("vide"))
      throw BitstreamError("the track is '" + fourcc_name(handler) + "', not video");
  }
  const auto minf = children(need_child(mdia, fourcc("minf"), "mdia").body, "minf");
  const auto stbl = children(need_child(minf, fourcc("stbl"), "minf").body, "stbl");
  Cursor c(need_child(stbl, fourcc("stsd"), "stbl").body, "stsd");
  std::uint32_t flags;
  full_box(c, flags);
  if (c.u32() != 1) c.fail("need exactly one sample entry");
  const auto entries = children(c.take(c.left()), "stsd");
  if (entries.size() != 1) c.fail("need exactly one sample entry");
  parse_sample_entry(entries.front(), t);
  return t;
}

std::string at_byte(std::uint64_t offset) { return " at byte " + std::to_string(offset); }

std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what) {
  if (a > std::numeric_limits<std::uint64_t>::max() - b) throw BitstreamError(what);
  return a + b;
}

}  // namespace

std::string fourcc_name(std::uint32_t type) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    const auto ch = static_cast<char>((type >> shift) & 0xFF);
    if (ch < 0x20 || ch > 0x7E) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(type));
      return buf;
    }
    s += ch;
  }
  return s;
}

Bytes make_metadata_box(ByteSpan text) {
  Bytes out;
  const std::uint64_t size = 8 + 16 + text.size();
  if (size > std::numeric_limits<std::uint32_t>::max())
    throw MuxError("segment metadata larger than 4 GiB");
  ByteWriter w(out);
  const std::size_t box = w.begin_box("uuid");
  w.raw(kSegmentMetadataUuid, sizeof kSegmentMetadataUuid);
  w.raw(text);
  w.end_box(box);
  return out;
}

std::optional<BoxHeader> read_box_header(ByteSpan data) {
  if (data.size() < 8) return std::nullopt;
  BoxHeader h;
  h.type = load_be32(data.data() + 4);
  h.size = load_be32(data.data());
  h.header_size = 8;
  if (h.size == 1) {
    if (data.size() < 16) return std::nullopt;
    h.size = (std::uint64_t(load_be32(data.data() + 8)) << 32) | load_be32(data.data() + 12);
    h.header_size = 16;
  } else if (h.size == 0) {
    throw BitstreamError("box '" + fourcc_name(h.type) + "' has size 0 (to the end of the file)");
  }
  if (h.size < h.header_size)
    throw BitstreamError("box '" + fourcc_name(h.type) + "' has size " + std::to_string(h.size) +
                         ", smaller than its header");
  return h;
}

InitSegment parse_init_segment(ByteSpan data) {
  const auto first = read_box_header(data);
  if (!first) throw BitstreamError("init segment: truncated (no complete box header)");
  if (first->type != fourcc("ftyp"))
    throw BitstreamError("init segment: starts with '" + fourcc_name(first->type) +
                         "', not ftyp");
  if (first->size > data.size()) throw BitstreamError("init segment: ftyp is truncated");
  const ByteSpan rest = data.subspan(static_cast<std::size_t>(first->size));
  const auto second = read_box_header(rest);
  if (!second) throw BitstreamError("init segment: truncated after ftyp (no moov)");
  if (second->type != fourcc("moov"))
    throw BitstreamError("init segment: '" + fourcc_name(second->type) + "' after ftyp, not moov");
  if (second->size > rest.size())
    throw BitstreamError("init segment: moov is truncated (needs " +
                         std::to_string(second->size - rest.size()) + " more bytes)");
  const ByteSpan moov = rest.subspan(second->header_size,
                                     static_cast<std::size_t>(second->size - second->header_size));

  InitSegment out;
  out.size = first->size + second->size;
  const auto boxes = children(moov, "moov");
  std::uint32_t track_id = 0;
  out.track = parse_trak(single_child(boxes, fourcc("trak"), "moov", "track"), track_id);

  const Child* mvex = find_child(boxes, fourcc("mvex"));
  if (!mvex) throw BitstreamError("moov: no mvex (not a fragmented MP4)");
  const auto trexes = children(mvex->body, "mvex");
  Cursor c(need_child(trexes, fourcc("trex"), "mvex").body, "trex");
  std::uint32_t flags;
  full_box(c, flags);
  TrackDefaults& d = out.track.defaults;
  d.track_id = c.u32();
  d.sample_description_index = c.u32();
  d.duration = c.u32();
  d.size = c.u32();
  d.flags = c.u32();
  if (d.track_id != track_id)
    throw BitstreamError("trex: track " + std::to_string(d.track_id) + ", but tkhd says " +
                         std::to_string(track_id));
  return out;
}

Fragment parse_moof(ByteSpan moof, std::uint64_t moof_offset, const TrackDefaults& defaults,
                    std::uint64_t data_begin, std::uint64_t data_end) {
  if (data_end < data_begin) throw BitstreamError("moof: data range ends before it begins");
  const std::uint64_t max_samples = std::min<std::uint64_t>(kMaxFragmentSamples, data_end - data_begin);
  const auto header = read_box_header(moof);
  if (!header || header->type != fourcc("moof") || header->size != moof.size())
    throw BitstreamError("moof: not one whole moof box");
  const auto boxes = children(moof.subspan(header->header_size), "moof");

  Fragment f;
  {
    Cursor c(need_child(boxes, fourcc("mfhd"), "moof").body, "mfhd");
    std::uint32_t flags;
    full_box(c, flags);
    f.sequence = c.u32();
  }
  const auto parts =
      children(single_child(boxes, fourcc("traf"), "moof", "track fragment").body, "traf");

  // tfhd: the track and the defaults it overrides.
  Cursor h(need_child(parts, fourcc("tfhd"), "traf").body, "tfhd");
  std::uint32_t tf_flags;
  full_box(h, tf_flags);
  if (h.u32() != defaults.track_id) h.fail("not the init segment's track");
  std::uint64_t base = moof_offset;
  if (tf_flags & 0x000001) base = h.u64();  // base-data-offset
  std::uint32_t description = defaults.sample_description_index;
  std::uint32_t def_duration = defaults.duration, def_size = defaults.size;
  std::uint32_t def_flags = defaults.flags;
  if (tf_flags & 0x000002) description = h.u32();
  if (tf_flags & 0x000008) def_duration = h.u32();
  if (tf_flags & 0x000010) def_size = h.u32();
  if (tf_flags & 0x000020) def_flags = h.u32();
  if (description != 1) h.fail("sample description index " + std::to_string(description) + ", not 1");

  {
    Cursor c(need_child(parts, fourcc("tfdt"), "traf").body, "tfdt");
    std::uint32_t flags;
    const std::uint8_t version = full_box(c, flags);
    f.base_dts = version == 1 ? c.u64() : c.u32();
    // Bounded like the muxer's timestamps, so sums and differences below cannot overflow.
    if (f.base_dts >= (std::uint64_t(1) << 62)) c.fail("decode time out of range");
  }

  bool first_run = true;
  std::uint64_t next = base;  // a trun without data-offset continues after the previous one
  for (const Child& b : parts) {
    if (b.type != fourcc("trun")) continue;
    Cursor c(b.body, "trun");
    std::uint32_t flags;
    const std::uint8_t version = full_box(c, flags);
    const std::uint32_t count = c.u32();
    std::uint64_t at = next;
    if (flags & 0x000001) {
      const auto data_offset = static_cast<std::int32_t>(c.u32());
      const std::int64_t pos = static_cast<std::int64_t>(base) + data_offset;
      if (base > (std::uint64_t(1) << 62) || pos < 0) c.fail("data offset out of range");
      at = static_cast<std::uint64_t>(pos);
    } else if (first_run) {
      at = base;
    }
    const bool has_first_flags = (flags & 0x000004) != 0;
    const std::uint32_t first_flags = has_first_flags ? c.u32() : 0;
    const std::size_t entry = 4 * (((flags & 0x000100) != 0) + ((flags & 0x000200) != 0) +
                                   ((flags & 0x000400) != 0) + ((flags & 0x000800) != 0));
    if (count > max_samples - f.samples.size())
      c.fail("more samples than bytes in its mdat (or than " + std::to_string(kMaxFragmentSamples) +
             ")");
    if (entry != 0 && c.left() / entry < count) c.fail("sample count larger than the box");
    for (std::uint32_t i = 0; i < count; ++i) {
      FragmentSample s;
      s.duration = (flags & 0x000100) ? c.u32() : def_duration;
      s.size = (flags & 0x000200) ? c.u32() : def_size;
      s.flags = (flags & 0x000400) ? c.u32() : (i == 0 && has_first_flags) ? first_flags : def_flags;
      if (flags & 0x000800) {
        const std::uint32_t v = c.u32();
        // Version 0 stores an unsigned offset; both fit 32 bits signed for what muxers write.
        if (version == 0 && v > std::uint32_t(std::numeric_limits<std::int32_t>::max()))
          c.fail("composition offset out of range");
        s.composition_offset = static_cast<std::int32_t>(v);
      }
      if (s.size == 0) c.fail("sample of 0 bytes");
      s.offset = at;
      at = checked_add(at, s.size, "trun: sample data past 2^64");
      if (s.offset < data_begin || at > data_end) c.fail("samples lie outside the mdat");
      f.duration += s.duration;
      f.samples.push_back(s);
    }
    next = at;
    first_run = false;
  }
  if (f.samples.empty()) throw BitstreamError("moof: fragment has no samples");
  f.data_begin = f.samples.front().offset;
  f.data_end = f.samples.front().offset;
  for (const FragmentSample& s : f.samples) {
    f.data_begin = std::min(f.data_begin, s.offset);
    f.data_end = std::max(f.data_end, s.offset + s.size);
  }
  return f;
}

ByteSpan MemorySource::read(std::uint64_t offset, std::size_t n) {
  if (offset > data_.size() || n > data_.size() - offset)
    throw BitstreamError("read past the end of the buffer");
  return data_.subspan(static_cast<std::size_t>(offset), n);
}

namespace {

// Walks the top-level boxes after the init segment. Each step either accepts a box (valid_end
// moves past it) or records the problem and stops.
class Scanner {
 public:
  Scanner(ByteSource& src, SegmentScan& out, bool with_samples)
      : src_(src), out_(out), with_samples_(with_samples), size_(src.size()) {}

  void run() {
    std::uint64_t pos = out_.init_size;
    out_.valid_end = pos;
    bool seen_fragment = false;
    while (pos < size_) {
      const std::uint64_t avail = size_ - pos;
      std::optional<BoxHeader> h;
      try {
        h = read_box_header(src_.read(pos, static_cast<std::size_t>(std::min<std::uint64_t>(avail, 16))));
      } catch (const BitstreamError& e) {
        return problem(std::string(e.what()) + at_byte(pos));
      }
      if (!h)
        return problem("truncated box header" + at_byte(pos) + " (" + std::to_string(avail) +
                       " stray bytes at the end)");
      const std::uint32_t type = h->type;
      std::uint64_t step = h->size;
      if (type == fourcc("moof")) {
        step = fragment(pos, *h);
        if (step == 0) return;
        seen_fragment = true;
      } else if (h->size > avail) {
        return problem("box '" + fourcc_name(type) + "'" + at_byte(pos) + " is truncated (needs " +
                       std::to_string(h->size - avail) + " more bytes)");
      } else if (type == fourcc("uuid")) {
        if (!uuid(pos, *h, seen_fragment)) return;
      } else if (type == fourcc("mdat")) {
        return problem("mdat" + at_byte(pos) + " without a moof before it");
      } else if (type != fourcc("free") && type != fourcc("skip") && type != fourcc("styp") &&
                 type != fourcc("sidx") && type != fourcc("prft") && type != fourcc("emsg")) {
        return problem("unexpected box '" + fourcc_name(type) + "'" + at_byte(pos));
      }
      pos += step;
      out_.valid_end = pos;
    }
  }

 private:
  void problem(std::string what) { out_.problem = std::move(what); }

  bool uuid(std::uint64_t pos, const BoxHeader& h, bool seen_fragment) {
    const std::uint64_t body = h.size - h.header_size;
    if (body < 16) {
      problem("uuid box" + at_byte(pos) + " is too short for its extended type");
      return false;
    }
    const ByteSpan ext = src_.read(pos + h.header_size, 16);
    if (!std::equal(ext.begin(), ext.end(), kSegmentMetadataUuid)) return true;  // someone else's
    if (seen_fragment || !out_.metadata.empty()) {
      problem("segment metadata box" + at_byte(pos) + " after the first fragment or repeated");
      return false;
    }
    if (body - 16 > kMaxMetadataBytes) {
      problem("segment metadata box" + at_byte(pos) + " is larger than " +
              std::to_string(kMaxMetadataBytes) + " bytes");
      return false;
    }
    const ByteSpan text = src_.read(pos + h.header_size + 16, static_cast<std::size_t>(body - 16));
    out_.metadata.assign(text.begin(), text.end());
    return true;
  }

  // The size of the complete fragment (moof + mdat) at `pos`, or 0 after recording its problem.
  std::uint64_t fragment(std::uint64_t pos, const BoxHeader& moof) {
    const std::string where = "fragment" + at_byte(pos);
    const std::uint64_t avail = size_ - pos;
    if (moof.size > kMaxMoofBytes) {
      problem(where + ": moof of " + std::to_string(moof.size) + " bytes is too large");
      return 0;
    }
    if (moof.size > avail) {
      problem(where + " is truncated (moof needs " + std::to_string(moof.size - avail) +
              " more bytes)");
      return 0;
    }
    // The moof and the next box's header in one read.
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(avail, moof.size + 16));
    const ByteSpan bytes = src_.read(pos, want);
    // The mdat first: its payload bounds the samples the moof may describe.
    const std::uint64_t mdat_at = pos + moof.size;
    std::optional<BoxHeader> mdat;
    try {
      mdat = read_box_header(bytes.subspan(static_cast<std::size_t>(moof.size)));
    } catch (const BitstreamError& e) {
      problem(where + ": " + e.what());
      return 0;
    }
    if (!mdat) {
      problem(where + " is truncated (no complete mdat header after the moof)");
      return 0;
    }
    if (mdat->type != fourcc("mdat")) {
      problem(where + ": '" + fourcc_name(mdat->type) + "' after the moof, not mdat");
      return 0;
    }
    const std::uint64_t mdat_avail = size_ - mdat_at;
    if (mdat->size > mdat_avail) {
      problem(where + " is truncated (mdat needs " + std::to_string(mdat->size - mdat_avail) +
              " more bytes)");
      return 0;
    }
    const std::uint64_t end = mdat_at + mdat->size;
    Fragment f;
    try {
      f = parse_moof(bytes.first(static_cast<std::size_t>(moof.size)), pos, out_.track.defaults,
                     mdat_at + mdat->header_size, end);
    } catch (const BitstreamError& e) {
      problem(where + ": " + e.what());
      return 0;
    }
    if (!out_.fragments.empty()) {
      const FragmentInfo& prev = out_.fragments.back();
      const auto prev_end = static_cast<std::uint64_t>(prev.base_dts_90k + prev.duration_90k);
      if (f.base_dts < prev_end) {
        problem(where + ": decode time " + std::to_string(f.base_dts) +
                " goes back before the previous fragment's end " + std::to_string(prev_end));
        return 0;
      }
    }
    FragmentInfo info;
    info.sequence = f.sequence;
    info.offset = pos;
    info.size = end - pos;
    info.base_dts_90k = static_cast<std::int64_t>(f.base_dts);
    info.duration_90k = static_cast<std::int64_t>(f.duration);
    info.samples = static_cast<std::uint32_t>(f.samples.size());
    info.starts_with_keyframe = f.samples.front().keyframe();
    out_.fragments.push_back(info);
    if (with_samples_) {
      std::int64_t dts = info.base_dts_90k;
      for (const FragmentSample& s : f.samples) {
        out_.samples.push_back({s.offset, s.size, s.duration, dts, s.composition_offset, s.keyframe()});
        dts += s.duration;
      }
    }
    return info.size;
  }

  ByteSource& src_;
  SegmentScan& out_;
  bool with_samples_;
  std::uint64_t size_;
};

}  // namespace

SegmentScan scan_segment(ByteSource& source, bool with_samples) {
  SegmentScan out;
  out.file_size = source.size();
  // ftyp and moov headers first, so exactly the init segment is read, and a huge one is refused.
  std::uint64_t head = 0;
  for (const std::uint32_t type : {fourcc("ftyp"), fourcc("moov")}) {
    if (head >= out.file_size) break;
    const std::uint64_t avail = out.file_size - head;
    const auto h = read_box_header(source.read(head, static_cast<std::size_t>(std::min<std::uint64_t>(avail, 16))));
    if (!h) break;
    if (h->type != type) {
      head += 16;  // enough for parse_init_segment to name what it found instead
      break;
    }
    if (h->size > kMaxInitBytes - head)
      throw BitstreamError("init segment: larger than " + std::to_string(kMaxInitBytes) + " bytes");
    head += h->size;
  }
  InitSegment init = parse_init_segment(source.read(0, static_cast<std::size_t>(std::min(head, out.file_size))));
  if (init.track.timescale != kTimescale)
    throw BitstreamError("init segment: timescale " + std::to_string(init.track.timescale) +
                         ", not 90000");
  out.init_size = init.size;
  out.track = std::move(init.track);
  Scanner(source, out, with_samples).run();
  return out;
}

}  // namespace vms::fmp4
