// H.264 (RFC 6184) and H.265 (RFC 7798) depacketization into access units of 4-byte
// length-prefixed NAL units, with the camera quirks listed in vmscore/depacketize.hpp.
//
// Access-unit boundaries: the marker bit ends an access unit and a new timestamp ends the previous
// one, unless the last NAL unit is one that opens an access unit (parameter set, SEI, AUD...):
// cameras set the marker on SEI and change timestamps between the parameter sets and the slices of
// one picture (retina's can_end_au), so the access unit is extended instead.
//
// Pure code; one depacketizer belongs to one thread at a time.
#include <algorithm>
#include <cstring>
#include <limits>
#include "vmscore/depacketize.hpp"
#include "vmscore/error.hpp"

namespace vms::rtp {
namespace {

std::size_t find_start_code(const std::uint8_t* p, std::size_t n, std::size_t from) {
  return vms::find_start_code(ByteSpan(p, n), from);
}

bool starts_with_start_code(ByteSpan d) {
  return d.size() >= 3 && d[0] == 0 && d[1] == 0 &&
         (d[2] == 1 || (d.size() >= 4 && d[2] == 0 && d[3] == 1));
}

// Calls fn(unit) for each non-empty unit of `data` separated by start codes; bytes before the first
// start code form a unit too. Zero bytes before a start code belong to no unit.
template <typename Fn>
bool for_each_annexb_unit(ByteSpan data, Fn&& fn) {
  const std::size_t n = data.size();
  std::size_t begin = 0;
  while (true) {
    const std::size_t sc = find_start_code(data.data(), n, begin);
    std::size_t end = sc;
    if (sc < n)
      while (end > begin && data[end - 1] == 0) --end;
    if (end > begin && !fn(data.subspan(begin, end - begin))) return false;
    if (sc >= n) return true;
    begin = sc + 3;
  }
}

// NAL unit types that open an access unit when they follow its last VCL unit (H.264 §7.4.1.2.3,
// H.265 §7.4.2.4.4), so they cannot be the last unit of one.
bool opens_access_unit(Codec codec, std::uint8_t type) {
  if (codec == Codec::H264) return (type >= 6 && type <= 9) || (type >= 14 && type <= 18);
  return (type >= 32 && type <= 35) || type == 39 || (type >= 41 && type <= 44) ||
         (type >= 48 && type <= 55);
}

// Types that exist only as RTP payload structures (aggregation, fragmentation) or are undefined:
// never a NAL unit of an access unit, so a packetizer could not send them back unchanged.
bool rtp_only_type(Codec codec, std::uint8_t type) {
  return codec == Codec::H264 ? (type == 0 || type >= 24) : type >= 48;
}

constexpr std::uint8_t kH265IdrWRadl = 19;
constexpr std::uint8_t kH265IdrNLp = 20;

int ps_index(NalKind kind) {
  switch (kind) {
    case NalKind::Vps: return 0;
    case NalKind::Sps: return 1;
    case NalKind::Pps: return 2;
    default: return -1;
  }
}

std::vector<Bytes>& ps_list(ParameterSets& ps, int index) {
  return index == 0 ? ps.vps : index == 1 ? ps.sps : ps.pps;
}
const std::vector<Bytes>& ps_list(const ParameterSets& ps, int index) {
  return index == 0 ? ps.vps : index == 1 ? ps.sps : ps.pps;
}

bool same(ByteSpan a, ByteSpan b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool changes_parameter_sets(const std::vector<Bytes>& list, ByteSpan unit) {
  for (const Bytes& b : list)
    if (same(b, unit)) return false;
  return true;
}

// Adds (or replaces, by id) one parameter set; throws BitstreamError when it does not parse.
// Returns false when an identical unit was already there.
bool put_parameter_set(Codec codec, ParameterSets& ps, int index, ByteSpan unit) {
  std::vector<Bytes>& list = ps_list(ps, index);
  for (const Bytes& b : list)
    if (same(b, unit)) return false;
  const std::uint32_t id = parameter_set_id(codec, unit);
  // The fMP4 init segment needs the whole SPS; H.265's id comes from its first fields only.
  if (index == 1 && codec == Codec::H265) parse_sps(codec, unit);
  for (Bytes& b : list) {
    if (parameter_set_id(codec, b) == id) {
      b.assign(unit.begin(), unit.end());
      return true;
    }
  }
  // Ids are bounded (H.264: 31 SPS, 255 PPS; H.265: 15, 15, 63), so the lists are too.
  list.emplace_back(unit.begin(), unit.end());
  return true;
}

}  // namespace

VideoDepacketizer::VideoDepacketizer(Codec codec, const ParameterSets& sdp,
                                     VideoDepacketizerOptions opt)
    : codec_(codec), opt_(opt) {
  if (opt_.max_nal_units == 0) throw std::invalid_argument("depacketizer: max_nal_units must be positive");
  if (opt_.max_access_unit_bytes < 64 || opt_.max_access_unit_bytes > (std::size_t(1) << 30))
    throw std::invalid_argument("depacketizer: max_access_unit_bytes must be 64 bytes to 1 GiB");
  if (opt_.max_don_diff < 0) throw std::invalid_argument("depacketizer: max_don_diff is negative");
  ps_.codec = codec;
  for (int index = 0; index < 3; ++index) {
    for (const Bytes& given : ps_list(sdp, index)) {
      // sprop-parameter-sets sometimes hold Annex-B start codes (V380) or the wrong kind of unit.
      for_each_annexb_unit(given, [&](ByteSpan unit) {
        try {
          const int kind = ps_index(classify_nal(codec_, unit).kind);
          if (kind < 0) throw BitstreamError("not a parameter set");
          put_parameter_set(codec_, ps_, kind, unit);
        } catch (const BitstreamError&) {
          ++stats_.sdp_parameter_sets_rejected;
        }
        return true;
      });
    }
  }
  nals_.reserve(64);
}

void VideoDepacketizer::reset() {
  if (au_active_ && !discard_) drop_au();
  au_active_ = false;
  discard_ = false;
  in_fu_ = false;
  need_keyframe_ = true;
  uncertain_start_ = true;
  gap_pending_ = true;
  out_count_ = 0;
}

bool VideoDepacketizer::fail(const char* why) {
  ++stats_.errors;
  last_error_ = why;
  if (!discard_) drop_au();
  need_keyframe_ = true;
  uncertain_start_ = true;
  return false;
}

void VideoDepacketizer::drop_au() {
  if (!discard_) {
    ++stats_.dropped_frames;
    if (pending_dropped_ < std::numeric_limits<std::uint32_t>::max()) ++pending_dropped_;
  }
  discard_ = true;
  in_fu_ = false;
  cur_.clear();
  nals_.clear();
}

void VideoDepacketizer::start_au(std::uint32_t timestamp) {
  au_active_ = true;
  au_ts_ = timestamp;
  discard_ = false;
  in_fu_ = false;
  cur_.clear();
  nals_.clear();
}

bool VideoDepacketizer::can_end_au() const {
  return nals_.empty() || !opens_access_unit(codec_, nals_.back().type);
}

bool VideoDepacketizer::begin_nal(const std::uint8_t* header, std::size_t header_size) {
  if (nals_.size() >= opt_.max_nal_units || cur_.size() + 4 + header_size > opt_.max_access_unit_bytes) {
    ++stats_.oversized_access_units;
    return fail("access unit larger than the configured limit (bytes or NAL units)");
  }
  nal_start_ = cur_.size();
  cur_.resize(nal_start_ + 4 + header_size);
  if (header_size) std::memcpy(cur_.data() + nal_start_ + 4, header, header_size);
  return true;
}

bool VideoDepacketizer::append(ByteSpan data) {
  if (data.empty()) return true;
  if (data.size() > opt_.max_access_unit_bytes - cur_.size()) {
    ++stats_.oversized_access_units;
    return fail("access unit larger than the configured limit (bytes or NAL units)");
  }
  // insert, not resize + memcpy: resize would zero-fill bytes about to be overwritten.
  cur_.insert(cur_.end(), data.begin(), data.end());
  return true;
}

bool VideoDepacketizer::record_unit(std::size_t prefix_offset) {
  // A NAL unit never ends in a zero byte (a final cabac_zero_word is followed by 0x03: H.264
  // §7.4.1, H.265 §7.4.2), so trailing zeros are Annex-B trailing_zero_8bits that came along:
  // FFmpeg's RTP muxer sends the first byte of the next access unit's 4-byte start code this way.
  while (cur_.size() > prefix_offset + 4 && cur_.back() == 0) cur_.pop_back();
  const std::size_t size = cur_.size() - prefix_offset - 4;
  if (size == 0) {
    cur_.resize(prefix_offset);  // an empty unit (an empty fragment run) carries nothing
    return true;
  }
  std::uint8_t* prefix = cur_.data() + prefix_offset;
  prefix[0] = static_cast<std::uint8_t>(size >> 24);
  prefix[1] = static_cast<std::uint8_t>(size >> 16);
  prefix[2] = static_cast<std::uint8_t>(size >> 8);
  prefix[3] = static_cast<std::uint8_t>(size);
  NalHeader h;
  try {
    h = classify_nal(codec_, ByteSpan(prefix + 4, size));
  } catch (const BitstreamError&) {
    return fail("malformed NAL unit header");
  }
  if (rtp_only_type(codec_, h.type))
    return fail("NAL unit of a reserved or RTP-only type inside a payload");
  Nal nal;
  nal.offset = static_cast<std::uint32_t>(prefix_offset);
  nal.size = static_cast<std::uint32_t>(size);
  nal.type = h.type;
  nal.kind = h.kind;
  nal.is_vcl = h.is_vcl;
  nal.is_first_slice = h.is_first_slice;
  nals_.push_back(nal);
  return true;
}

bool VideoDepacketizer::add_annexb(ByteSpan data) {
  return for_each_annexb_unit(data, [&](ByteSpan unit) {
    return begin_nal(nullptr, 0) && append(unit) && record_unit(nal_start_);
  });
}

bool VideoDepacketizer::add_unit(ByteSpan unit) {
  if (find_start_code(unit.data(), unit.size(), 0) < unit.size()) {
    ++stats_.annexb_payloads;
    return add_annexb(unit);
  }
  return begin_nal(nullptr, 0) && append(unit) && record_unit(nal_start_);
}

bool VideoDepacketizer::finish_nal() {
  const std::size_t body = nal_start_ + 4;
  if (find_start_code(cur_.data(), cur_.size(), body) < cur_.size()) {
    // Start codes inside a reassembled unit: re-frame its pieces as separate units.
    ++stats_.annexb_payloads;
    scratch_.assign(cur_.begin() + static_cast<std::ptrdiff_t>(body), cur_.end());
    cur_.resize(nal_start_);
    return add_annexb(scratch_);
  }
  return record_unit(nal_start_);
}

bool VideoDepacketizer::parse_h264(const Packet& p) {
  const ByteSpan d = p.payload;
  const std::uint8_t b0 = d[0];
  // F = 1 marks a unit the sender knows to be damaged (RFC 6184 §5.3).
  if (b0 & 0x80) return fail("H.264: forbidden_zero_bit (F) is set");
  const std::uint8_t type = b0 & 0x1F;
  if (type >= 1 && type <= 23) {
    if (in_fu_) return fail("H.264: a NAL unit arrived while a fragmented one is incomplete");
    return add_unit(d);
  }
  switch (type) {
    case 24: {  // STAP-A (§5.7.1): 16-bit size, unit, repeated
      if (in_fu_) return fail("H.264: a STAP-A arrived while a fragmented NAL unit is incomplete");
      std::size_t pos = 1;
      while (pos < d.size()) {
        if (d.size() - pos < 2) return fail("H.264: STAP-A ends inside a unit size");
        const std::size_t n = load_be16(d.data() + pos);
        pos += 2;
        if (n > d.size() - pos) return fail("H.264: STAP-A unit runs past the packet");
        if (n > 0 && !add_unit(d.subspan(pos, n))) return false;
        pos += n;
      }
      return true;
    }
    case 28: {  // FU-A (§5.8)
      if (d.size() < 2) return fail("H.264: FU-A shorter than its two header bytes");
      const std::uint8_t fu = d[1];
      const std::uint8_t nal_header = static_cast<std::uint8_t>((b0 & 0xE0) | (fu & 0x1F));
      // Some cameras set the reserved bit; the unit is fine otherwise.
      if (fu & 0x20) ++stats_.fu_reserved_bits;
      return add_fragment((fu & 0x80) != 0, (fu & 0x40) != 0, fu & 0x1F, &nal_header, 1,
                          d.subspan(2));
    }
    case 25:
    case 26:
    case 27:
    case 29:
      ++stats_.unsupported_packets;
      return fail("H.264: STAP-B, MTAP16, MTAP24 and FU-B (interleaved packetization-mode 2) are not supported");
    default:
      return fail("H.264: reserved NAL unit type (0, 30, 31) in an RTP payload");
  }
}

bool VideoDepacketizer::add_fragment(bool start, bool end, std::uint8_t type, const std::uint8_t* header,
                                     std::size_t header_size, ByteSpan data) {
  if (data.empty()) ++stats_.empty_fragments;  // allowed: some cameras send them
  if (start) {
    if (in_fu_) return fail("FU: a new fragmented NAL unit started before the previous one ended");
    if (!begin_nal(header, header_size)) return false;
    in_fu_ = true;
    fu_type_ = type;
  } else {
    if (!in_fu_) {
      // The start was lost: after a loss (or at the start of the stream) that is expected, not an
      // error; the access unit is dropped either way.
      if (uncertain_start_) {
        drop_au();
        return false;
      }
      return fail("FU: a fragment continues a NAL unit that never started");
    }
    // Tiandy cameras change the type in later fragments; the first fragment's header is kept.
    if (type != fu_type_) ++stats_.fu_type_changes;
  }
  if (!append(data)) return false;
  if (!end) return true;
  in_fu_ = false;
  return finish_nal();
}

bool VideoDepacketizer::parse_h265(const Packet& p) {
  const ByteSpan d = p.payload;
  if (d.size() < 2) return fail("H.265: payload shorter than its 2-byte header");
  if (d[0] & 0x80) return fail("H.265: forbidden_zero_bit (F) is set");
  if ((d[1] & 0x07) == 0) return fail("H.265: nuh_temporal_id_plus1 is 0");
  const std::uint8_t type = (d[0] >> 1) & 0x3F;
  const bool donl = opt_.max_don_diff > 0;
  switch (type) {
    case 48: {  // AP (§4.4.2): [DONL] size unit, then ([DOND] size unit)*
      if (in_fu_) return fail("H.265: an AP arrived while a fragmented NAL unit is incomplete");
      std::size_t pos = 2;
      bool first = true;
      while (pos < d.size()) {
        const std::size_t don = donl ? (first ? 2 : 1) : 0;
        if (d.size() - pos < don + 2) return fail("H.265: AP ends inside a unit size");
        pos += don;
        const std::size_t n = load_be16(d.data() + pos);
        pos += 2;
        if (n > d.size() - pos) return fail("H.265: AP unit runs past the packet");
        if (n > 0 && !add_unit(d.subspan(pos, n))) return false;
        pos += n;
        first = false;
      }
      return true;
    }
    case 49: {  // FU (§4.4.3): payload header, FU header (S E type), [DONL in the first], data
      if (d.size() < 3) return fail("H.265: FU shorter than its three header bytes");
      const std::uint8_t fu = d[2];
      const bool start = (fu & 0x80) != 0;
      std::size_t pos = 3;
      if (start && donl) {
        if (d.size() < 5) return fail("H.265: FU shorter than its DONL field");
        pos += 2;
      }
      const std::uint8_t header[2] = {static_cast<std::uint8_t>((d[0] & 0x81) | ((fu & 0x3F) << 1)), d[1]};
      return add_fragment(start, (fu & 0x40) != 0, fu & 0x3F, header, 2, d.subspan(pos));
    }
    case 50:
      ++stats_.unsupported_packets;
      return fail("H.265: PACI packets are not supported");
    default:  // a single NAL unit (§4.4.1), with a DONL after its header when DON is used
      if (in_fu_) return fail("H.265: a NAL unit arrived while a fragmented one is incomplete");
      if (!donl) return add_unit(d);
      if (d.size() < 4) return fail("H.265: single NAL unit shorter than its DONL field");
      return begin_nal(d.data(), 2) && append(d.subspan(4)) && finish_nal();
  }
}

std::span<const AccessUnit> VideoDepacketizer::push(const Packet& p, std::uint32_t lost) {
  out_count_ = 0;
  ++stats_.packets;
  if (lost > 0) {
    stats_.lost_packets += lost;
    pending_lost_ = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(std::uint64_t(pending_lost_) + lost, std::numeric_limits<std::uint32_t>::max()));
    // Whatever was being assembled may miss packets; what follows may miss its beginning.
    if (au_active_ && !discard_) drop_au();
    need_keyframe_ = true;
    uncertain_start_ = true;
  }
  if ((opt_.payload_type >= 0 && p.payload_type != opt_.payload_type) || p.payload.empty()) {
    ++stats_.ignored_packets;
    return {out_.data(), out_count_};
  }
  if (repeated(p)) return {out_.data(), out_count_};
  if (au_active_ && p.timestamp != au_ts_) {
    if (discard_) {
      au_active_ = false;
    } else if (in_fu_) {
      fail("timestamp changed inside a fragmented NAL unit");
      au_active_ = false;
    } else if (can_end_au()) {
      finish_au();
    } else {
      // Parameter sets or SEI sent with another timestamp than the picture they belong to.
      ++stats_.timestamp_changes_mid_au;
      au_ts_ = p.timestamp;
    }
  }
  if (!au_active_) start_au(p.timestamp);
  if (!discard_) {
    if (starts_with_start_code(p.payload)) {
      // A payload in Annex-B form (V380 and others): a run of start-code-delimited units.
      ++stats_.annexb_payloads;
      if (in_fu_)
        fail("Annex-B data arrived while a fragmented NAL unit is incomplete");
      else
        add_annexb(p.payload);
    } else if (codec_ == Codec::H264) {
      parse_h264(p);
    } else {
      parse_h265(p);
    }
  }
  if (p.marker) {
    if (discard_) {
      au_active_ = false;  // the end of an access unit being thrown away
    } else if (in_fu_) {
      fail("marker bit set inside a fragmented NAL unit");
      au_active_ = false;
    } else if (can_end_au()) {
      finish_au();
    } else {
      ++stats_.marker_not_at_end;
    }
  }
  return {out_.data(), out_count_};
}

void VideoDepacketizer::keep_delivered_parameter_sets() {
  // A unit delivered earlier in this push() still points at ps_, which is about to change.
  if (out_count_ > 0 && out_[0].parameter_sets == &ps_) {
    ps_held_ = ps_;
    out_[0].parameter_sets = &ps_held_;
  }
}

void VideoDepacketizer::update_parameter_sets() {
  for (const Nal& nal : nals_) {
    const int index = ps_index(nal.kind);
    if (index < 0) continue;
    const ByteSpan unit(cur_.data() + nal.offset + 4, nal.size);
    std::vector<Bytes>& list = ps_list(ps_, index);
    try {
      if (!inband_seen_[index]) {
        // The stream's own parameter sets replace the SDP's, which can be stale or wrong.
        inband_seen_[index] = true;
        if (!(list.size() == 1 && same(list.front(), unit))) {
          parameter_set_id(codec_, unit);  // parses before anything is replaced
          if (index == 1 && codec_ == Codec::H265) parse_sps(codec_, unit);
          keep_delivered_parameter_sets();
          list.clear();
        }
      }
      if (changes_parameter_sets(list, unit)) keep_delivered_parameter_sets();
      if (put_parameter_set(codec_, ps_, index, unit)) {
        ps_changed_ = true;
        ++stats_.parameter_set_updates;
      }
    } catch (const BitstreamError&) {
      // Kept out of the current sets; the access unit itself may still decode with the others.
      ++stats_.errors;
      last_error_ = "in-band parameter set does not parse";
    }
  }
}

void VideoDepacketizer::finish_au() {
  au_active_ = false;
  if (nals_.empty()) return;
  if (uncertain_start_) {
    // After a loss, only an access unit that visibly begins (AUD, parameter set, SEI, or the first
    // slice of a picture) can be whole.
    uncertain_start_ = false;
    const Nal& first = nals_.front();
    if (!(first.is_vcl ? first.is_first_slice : opens_access_unit(codec_, first.type))) {
      drop_au();
      discard_ = false;
      return;
    }
  }
  bool has_vcl = false, keyframe = false, leading_only = true, cra = false;
  for (const Nal& nal : nals_) {
    if (!nal.is_vcl) continue;
    has_vcl = true;
    if (nal.kind == NalKind::Keyframe) keyframe = true;
    if (codec_ == Codec::H265) {
      if (nal.type != 8 && nal.type != 9) leading_only = false;  // RASL_N, RASL_R
      if (nal.kind == NalKind::Keyframe && nal.type != kH265IdrWRadl && nal.type != kH265IdrNLp)
        cra = true;  // CRA or BLA: RASL pictures may follow
    }
  }
  update_parameter_sets();
  if (!has_vcl) return;  // parameter sets or SEI without a picture: absorbed above
  auto drop = [&](std::uint64_t& reason) {
    ++reason;
    drop_au();
    discard_ = false;
  };
  if (!ps_.complete()) return drop(stats_.dropped_waiting_parameter_sets);
  if (need_keyframe_ && !keyframe) return drop(stats_.dropped_waiting_keyframe);
  if (skip_rasl_) {
    // RASL pictures reference pictures before the CRA we resumed at: they cannot be decoded.
    if (leading_only) return drop(stats_.dropped_waiting_keyframe);
    skip_rasl_ = false;
  }
  if (need_keyframe_) {
    need_keyframe_ = false;
    skip_rasl_ = cra;
  }
  deliver(keyframe);
}

void VideoDepacketizer::deliver(bool keyframe) {
  const std::size_t k = out_count_++;
  out_bytes_[k].swap(cur_);
  cur_.clear();
  nals_.clear();
  AccessUnit& au = out_[k];
  au.kind = MediaKind::Video;
  au.data = out_bytes_[k];
  au.rtp_timestamp = au_ts_;
  au.keyframe = keyframe;
  au.gap = delivered_any_ && (pending_lost_ > 0 || pending_dropped_ > 0 || gap_pending_);
  au.dropped_frames = pending_dropped_;
  au.lost_packets = pending_lost_;
  au.parameter_sets_changed = ps_changed_;
  au.parameter_sets = &ps_;
  ps_changed_ = false;
  gap_pending_ = false;
  pending_dropped_ = 0;
  pending_lost_ = 0;
  delivered_any_ = true;
  ++stats_.access_units;
}

}  // namespace vms::rtp
