// fMP4 media fragments (ISO/IEC 14496-12 §8.8: moof, mfhd, traf, tfhd, tfdt, trun; mdat) built from
// access units in decode order. A fragment is cut at every keyframe (one per GOP) and optionally
// at a maximum duration. Sample durations come from the next sample's decode time, so a fragment
// is emitted when the unit after it arrives (or on flush).
#include <algorithm>
#include <limits>
#include <string>

#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"

namespace vms::fmp4 {
namespace {

bool kept_in_sample(NalKind k) {
  // Parameter sets live in the init segment (avc1/hvc1); AUDs and filler carry nothing a decoder
  // of an MP4 sample needs.
  return k != NalKind::Vps && k != NalKind::Sps && k != NalKind::Pps && k != NalKind::Aud &&
         k != NalKind::Filler;
}

const std::vector<Bytes>& sets_of(const ParameterSets& ps, NalKind kind) {
  return kind == NalKind::Vps ? ps.vps : kind == NalKind::Sps ? ps.sps : ps.pps;
}

}  // namespace

Muxer::Muxer(ParameterSets ps, MuxerOptions opt, Sink& sink)
    : ps_(std::move(ps)), opt_(opt), sink_(sink) {
  if (opt_.fragment_duration_90k < 0) throw MuxError("fragment duration must not be negative");
  if (opt_.default_duration_90k == 0) throw MuxError("default sample duration must be positive");
  if (ps_.complete()) build_init();
}

void Muxer::build_init() {
  init_ = make_init_segment(ps_);
  sps_ = parse_sps(ps_.codec, ps_.sps.front());
  codec_string_ = vms::codec_string(ps_.codec, ps_.sps.front());
}

void Muxer::split(ByteSpan au) {
  units_.clear();
  headers_.clear();
  if (opt_.input_annexb)
    split_annexb(au, units_);
  else
    split_length_prefixed(au, 4, units_);
  for (const NalRange& u : units_) headers_.push_back(classify_nal(ps_.codec, au.subspan(u.offset, u.size)));
}

bool Muxer::add(ByteSpan au, std::int64_t pts, std::int64_t dts, bool keyframe) {
  split(au);
  return add_units(au, pts, dts, keyframe);
}

bool Muxer::add_detect(ByteSpan au, std::int64_t pts, std::int64_t dts) {
  split(au);
  bool keyframe = false;
  for (const NalHeader& h : headers_) keyframe |= h.kind == NalKind::Keyframe;
  return add_units(au, pts, dts, keyframe);
}

void Muxer::check_parameter_sets(ByteSpan au) {
  for (std::size_t i = 0; i < units_.size(); ++i) {
    const NalKind kind = headers_[i].kind;
    if (kind != NalKind::Vps && kind != NalKind::Sps && kind != NalKind::Pps) continue;
    const ByteSpan nal = au.subspan(units_[i].offset, units_[i].size);
    const std::uint32_t id = parameter_set_id(ps_.codec, nal);
    bool same = false, found = false;
    for (const Bytes& known : sets_of(ps_, kind)) {
      if (parameter_set_id(ps_.codec, known) != id) continue;
      found = true;
      same = known.size() == nal.size() && std::equal(known.begin(), known.end(), nal.begin());
      break;
    }
    if (!same)
      throw ParametersChangedError(std::string("in-band ") + nal_kind_name(kind) + " id " +
                                   std::to_string(id) +
                                   (found ? " differs from" : " is not in") +
                                   " the init segment: start a new file");
  }
}

bool Muxer::add_units(ByteSpan au, std::int64_t pts, std::int64_t dts, bool keyframe) {
  const bool first = !init_written_;
  if (first && !keyframe) {
    // A decoder cannot start anywhere else; a live viewer or a new file begins at a keyframe.
    ++stats_.dropped_before_keyframe;
    return false;
  }

  // Everything is checked before any state changes, so a rejected unit leaves the muxer as it was.
  std::uint64_t sample_size = 0;
  bool has_slice = false;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    has_slice |= headers_[i].is_vcl;
    if (kept_in_sample(headers_[i].kind)) sample_size += 4 + units_[i].size;
  }
  if (!has_slice) throw BitstreamError("access unit contains no coded slice");
  if (sample_size > std::numeric_limits<std::uint32_t>::max())
    throw MuxError("access unit larger than 4 GiB");
  // Bounding timestamps keeps every difference below (gaps, composition offsets, rebasing) free of
  // overflow; 2^62 ticks at 90 kHz is over a million years.
  constexpr std::int64_t kMaxTimestamp = std::int64_t(1) << 62;
  if (pts <= -kMaxTimestamp || pts >= kMaxTimestamp || dts <= -kMaxTimestamp || dts >= kMaxTimestamp)
    throw MuxError("timestamp out of range: pts " + std::to_string(pts) + ", dts " + std::to_string(dts));
  if (have_last_dts_) {
    if (dts <= last_dts_)
      throw MuxError("decode timestamps must increase: " + std::to_string(dts) + " after " +
                     std::to_string(last_dts_));
    if (dts - last_dts_ > std::int64_t(std::numeric_limits<std::uint32_t>::max()))
      throw MuxError("gap between decode timestamps too large for one sample duration");
  }
  if (opt_.origin_dts_90k && dts < *opt_.origin_dts_90k)
    throw MuxError("decode timestamp " + std::to_string(dts) + " before the output's origin " +
                   std::to_string(*opt_.origin_dts_90k));
  const std::int64_t cto = pts - dts;
  if (cto < std::numeric_limits<std::int32_t>::min() || cto > std::numeric_limits<std::int32_t>::max())
    throw MuxError("presentation and decode timestamps are too far apart");

  if (!has_init()) {
    ParameterSets inband;
    inband.codec = ps_.codec;
    collect_parameter_sets(ps_.codec, au, opt_.input_annexb, 4, inband);
    if (!inband.complete())
      throw MuxError(std::string("the first keyframe carries no complete ") +
                     codec_name(ps_.codec) + " parameter sets and none were given");
    ps_ = std::move(inband);
    build_init();
  } else {
    check_parameter_sets(au);
  }

  if (!pending_.samples.empty()) {
    const bool too_long = opt_.fragment_duration_90k > 0 &&
                          dts - pending_.samples.front().dts >= opt_.fragment_duration_90k;
    if (keyframe || too_long) emit_fragment(dts, true);
  }
  if (first) {
    base_dts_ = opt_.origin_dts_90k.value_or(dts);
    const ByteSpan parts[1] = {init_};
    sink_.write(parts);
    offset_ += init_.size();
    stats_.bytes += init_.size();
    init_written_ = true;
  }

  Fragment& f = pending_;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    if (!kept_in_sample(headers_[i].kind)) continue;
    const NalRange& u = units_[i];
    if (opt_.input_annexb) {
      const auto n = static_cast<std::uint32_t>(u.size);
      f.prefixes.push_back({std::uint8_t(n >> 24), std::uint8_t(n >> 16), std::uint8_t(n >> 8),
                            std::uint8_t(n)});
      f.pieces.push_back({au.data() + u.offset, u.size, static_cast<std::int32_t>(f.prefixes.size() - 1)});
    } else {
      // The unit already carries its 4-byte length; consecutive kept units are one run of bytes.
      const std::uint8_t* begin = au.data() + u.offset - 4;
      if (!f.pieces.empty() && f.pieces.back().prefix < 0 &&
          f.pieces.back().data + f.pieces.back().size == begin)
        f.pieces.back().size += 4 + u.size;
      else
        f.pieces.push_back({begin, 4 + u.size, -1});
    }
  }
  f.samples.push_back({static_cast<std::uint32_t>(sample_size), dts, pts, keyframe});
  f.payload += sample_size;
  last_dts_ = dts;
  have_last_dts_ = true;
  return true;
}

void Muxer::flush() {
  if (!pending_.samples.empty()) emit_fragment(0, false);
}

void Muxer::emit_fragment(std::int64_t next_dts, bool have_next) {
  // The fragment leaves `pending_`, which starts empty again even if the sink fails: after a failed
  // write the file's state is unknown and the caller abandons it, but the muxer stays usable.
  std::swap(pending_, emitted_);
  pending_.clear();
  Fragment& f = emitted_;
  const std::vector<Sample>& samples = f.samples;
  const std::size_t n = samples.size();
  bool any_cto = false;
  for (const Sample& s : samples) any_cto |= s.pts != s.dts;
  const std::uint64_t mdat_size = 8 + f.payload;
  if (mdat_size > std::numeric_limits<std::uint32_t>::max())
    throw MuxError("fragment larger than 4 GiB: use a shorter fragment duration");

  std::uint32_t last_duration;
  if (have_next)
    last_duration = static_cast<std::uint32_t>(next_dts - samples.back().dts);
  else if (n >= 2)
    last_duration = static_cast<std::uint32_t>(samples[n - 1].dts - samples[n - 2].dts);
  else
    last_duration = last_duration_ ? last_duration_ : opt_.default_duration_90k;

  f.header.clear();
  ByteWriter w(f.header);
  const std::size_t moof = w.begin_box("moof");
  const std::size_t mfhd = w.begin_full_box("mfhd", 0, 0);
  w.u32(++sequence_);
  w.end_box(mfhd);
  const std::size_t traf = w.begin_box("traf");
  const std::size_t tfhd = w.begin_full_box("tfhd", 0, 0x020000);  // default-base-is-moof
  w.u32(1);
  w.end_box(tfhd);
  const std::size_t tfdt = w.begin_full_box("tfdt", 1, 0);  // 64-bit: 32 bits wrap after 13 h
  const std::int64_t base = samples.front().dts - base_dts_;
  w.u64(static_cast<std::uint64_t>(base));
  w.end_box(tfdt);
  // data-offset, sample duration, size, flags, and composition offsets when any differ.
  const std::uint32_t trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | (any_cto ? 0x000800 : 0);
  const std::size_t trun = w.begin_full_box("trun", 1, trun_flags);  // v1: signed offsets
  w.u32(static_cast<std::uint32_t>(n));
  const std::size_t data_offset_at = w.size();
  w.u32(0);
  for (std::size_t i = 0; i < n; ++i) {
    const Sample& s = samples[i];
    w.u32(i + 1 < n ? static_cast<std::uint32_t>(samples[i + 1].dts - s.dts) : last_duration);
    w.u32(s.size);
    w.u32(s.keyframe ? kKeyframeFlags : kNonKeyframeFlags);
    if (any_cto) w.u32(static_cast<std::uint32_t>(static_cast<std::int32_t>(s.pts - s.dts)));
  }
  w.end_box(trun);
  w.end_box(traf);
  w.end_box(moof);
  w.patch_u32(data_offset_at, static_cast<std::uint32_t>(w.size() + 8));
  w.u32(static_cast<std::uint32_t>(mdat_size));
  w.fourcc("mdat");

  f.parts.clear();
  f.parts.emplace_back(f.header);
  for (const Piece& p : f.pieces) {
    if (p.prefix >= 0) f.parts.emplace_back(f.prefixes[static_cast<std::size_t>(p.prefix)]);
    f.parts.emplace_back(p.data, p.size);
  }

  last_.sequence = sequence_;
  last_.offset = offset_;
  last_.size = f.header.size() + f.payload;
  last_.base_dts_90k = base;
  last_.duration_90k = samples.back().dts - samples.front().dts + last_duration;
  last_.samples = static_cast<std::uint32_t>(n);
  last_.starts_with_keyframe = samples.front().keyframe;
  last_duration_ = last_duration;

  sink_.write(f.parts);
  offset_ += last_.size;
  stats_.bytes += last_.size;
  stats_.fragments += 1;
  stats_.samples += n;
}

}  // namespace vms::fmp4
