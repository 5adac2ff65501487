// The body of fuzz_depacketize_h264 and fuzz_depacketize_h265: a VideoDepacketizer fed a fuzzed
// sequence of RTP packets, with every access unit it delivers checked, then sent through the
// Packetizer into a second depacketizer that must deliver the same units again.
//
// Input format (seeds in corpus/<target>/ are real 64x64 streams packetized this way):
//   byte 0, config: bit 0 give the real parameter sets of a 64x64 stream as the SDP's; bit 1 accept
//     only payload type 96; bit 2 small limits (2048-byte access units, 8 NAL units); bit 3 H.265
//     DONL fields (sprop-max-don-diff = 1); bits 4-7 the round trip's payload size, 40 + 90 * n.
//   then records until the input ends:
//     ctrl: bit 0 marker; bits 1-2 packets lost before this one {0, 0, 1, 3}; bits 3-4 timestamp
//       step {0, 0, 3000, u32 from the input}; bit 5 payload type 97 (not video); bit 6 the length
//       is u16 (else u8);
//     the timestamp field when bits 3-4 are 3, the length, then that many payload bytes.
//
// Checked for every delivered unit: at most two per packet; well-formed 4-byte length-prefixed NAL
// units with valid headers, no RTP-only type, no start code inside and no trailing zero byte;
// within the size and count limits; the keyframe flag agrees with the units; the first delivered
// unit is a keyframe with parameter_sets_changed and no gap; each unit's parameter sets are
// complete and differ from the previous unit's only when parameter_sets_changed says so. Any
// exception from push() is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.hpp"
#include "vmscore/depacketize.hpp"
#include "vmscore/error.hpp"
#include "vmscore/packetize.hpp"
#include "vmscore/rtp.hpp"

namespace vms::fuzz {

struct DeliveredUnit {
  Bytes data;
  std::uint32_t timestamp;
  bool keyframe;
};

inline bool has_start_code(ByteSpan nal) {
  for (std::size_t i = 0; i + 2 < nal.size(); ++i)
    if (nal[i] == 0 && nal[i + 1] == 0 && nal[i + 2] == 1) return true;
  return false;
}

inline void check_unit(Codec codec, const rtp::AccessUnit& au, const rtp::VideoDepacketizerOptions& opt) {
  FUZZ_CHECK(au.kind == rtp::MediaKind::Video);
  FUZZ_CHECK(au.data.size() <= opt.max_access_unit_bytes);
  std::size_t pos = 0, count = 0;
  bool keyframe = false, vcl = false;
  while (pos < au.data.size()) {
    FUZZ_CHECK(au.data.size() - pos >= 4);
    const std::size_t n = load_be32(au.data.data() + pos);
    pos += 4;
    FUZZ_CHECK(n > 0 && n <= au.data.size() - pos);
    const ByteSpan nal = au.data.subspan(pos, n);
    pos += n;
    ++count;
    NalHeader h;
    must_not_throw("classify a delivered NAL unit", [&] { h = classify_nal(codec, nal); });
    FUZZ_CHECK(codec == Codec::H264 ? (h.type >= 1 && h.type <= 23) : h.type <= 47);
    FUZZ_CHECK(nal.back() != 0);
    FUZZ_CHECK(!has_start_code(nal));
    if (h.kind == NalKind::Keyframe) keyframe = true;
    if (h.is_vcl) vcl = true;
  }
  FUZZ_CHECK(count > 0 && count <= opt.max_nal_units);
  FUZZ_CHECK(vcl);
  FUZZ_CHECK(au.keyframe == keyframe);
}

inline void run_depacketize_target(Codec codec, ByteSpan data) {
  Input in(data);
  const std::uint8_t config = in.u8();
  ParameterSets sdp;
  sdp.codec = codec;
  if (config & 0x01) sdp = seed_parameter_sets(codec);
  rtp::VideoDepacketizerOptions opt;
  if (config & 0x02) opt.payload_type = 96;
  if (config & 0x04) {
    opt.max_access_unit_bytes = 2048;
    opt.max_nal_units = 8;
  }
  if ((config & 0x08) && codec == Codec::H265) opt.max_don_diff = 1;
  const std::size_t round_trip_payload = 40 + 90 * std::size_t(config >> 4);

  rtp::VideoDepacketizer d(codec, sdp, opt);
  std::vector<DeliveredUnit> delivered;
  ParameterSets first_ps, last_ps;
  std::uint32_t ts = 0;
  std::uint16_t seq = 0;
  Bytes packet;
  std::uint64_t lost_total = 0;
  while (!in.empty()) {
    const std::uint8_t ctrl = in.u8();
    static constexpr std::uint32_t kLost[4] = {0, 0, 1, 3};
    const std::uint32_t lost = kLost[(ctrl >> 1) & 3];
    switch ((ctrl >> 3) & 3) {
      case 2: ts += 3000; break;
      case 3: ts = in.u32(); break;
      default: break;
    }
    const std::size_t len = (ctrl & 0x40) ? in.u16() : in.u8();
    const ByteSpan payload = in.take(len);
    seq = static_cast<std::uint16_t>(seq + 1 + lost);
    packet.assign(rtp::kHeaderSize, 0);
    rtp::Header h;
    h.marker = ctrl & 1;
    h.payload_type = (ctrl & 0x20) ? 97 : 96;
    h.sequence = seq;
    h.timestamp = ts;
    h.ssrc = 1;
    rtp::write_header(h, packet);
    packet.insert(packet.end(), payload.begin(), payload.end());
    rtp::Packet p;
    must_not_throw("parse a well-formed RTP packet", [&] { p = rtp::parse_packet(packet); });
    std::span<const rtp::AccessUnit> out;
    must_not_throw("VideoDepacketizer::push", [&] { out = d.push(p, lost); });
    lost_total += lost;
    FUZZ_CHECK(out.size() <= 2);
    for (const rtp::AccessUnit& au : out) {
      check_unit(codec, au, opt);
      FUZZ_CHECK(au.parameter_sets != nullptr && au.parameter_sets->complete());
      if (delivered.empty()) {
        FUZZ_CHECK(au.keyframe && au.parameter_sets_changed && !au.gap);
        first_ps = *au.parameter_sets;
      } else if (!au.parameter_sets_changed) {
        FUZZ_CHECK(*au.parameter_sets == last_ps);
      }
      last_ps = *au.parameter_sets;
      delivered.push_back({Bytes(au.data.begin(), au.data.end()), au.rtp_timestamp, au.keyframe});
    }
  }
  const rtp::DepacketizerStats& s = d.stats();
  FUZZ_CHECK(s.access_units == delivered.size());
  FUZZ_CHECK(s.lost_packets == lost_total);
  if (delivered.empty()) return;
  // A depacketizer checks that an access unit visibly begins (AUD, parameter set, SEI or first
  // slice) only after a loss or at its start; the first unit delivered here may not have needed to.
  {
    const ByteSpan first = ByteSpan(delivered.front().data).subspan(4);
    const NalHeader h = classify_nal(codec, first);
    const bool opens = codec == Codec::H264
                           ? (h.type >= 6 && h.type <= 9) || (h.type >= 14 && h.type <= 18)
                           : (h.type >= 32 && h.type <= 35) || h.type == 39 || (h.type >= 41 && h.type <= 44);
    if (h.is_vcl ? !h.is_first_slice : !opens) return;
  }

  // Round trip: our packetizer, then a depacketizer that starts from the parameter sets the first
  // one had when it delivered its first unit (it may have learnt them from units it dropped).
  rtp::VideoDepacketizerOptions opt2 = opt;
  opt2.payload_type = -1;
  opt2.max_don_diff = 0;
  rtp::VideoDepacketizer again(codec, first_ps, opt2);
  rtp::PacketizerOptions popt;
  popt.max_payload_size = round_trip_payload;
  rtp::Packetizer packetizer(codec, popt);
  Bytes buf(packetizer.max_packet_size());
  std::size_t k = 0;
  for (const DeliveredUnit& u : delivered) {
    must_not_throw("Packetizer::begin on a delivered unit", [&] { packetizer.begin(u.data, u.timestamp, false); });
    while (true) {
      std::size_t n = 0;
      must_not_throw("Packetizer::next", [&] { n = packetizer.next(buf); });
      if (n == 0) break;
      FUZZ_CHECK(n <= packetizer.max_packet_size());
      rtp::Packet p;
      must_not_throw("parse a packetizer packet", [&] { p = rtp::parse_packet(ByteSpan(buf.data(), n)); });
      for (const rtp::AccessUnit& au : again.push(p, 0)) {
        FUZZ_CHECK(k < delivered.size());
        FUZZ_CHECK(same_bytes(au.data, delivered[k].data));
        FUZZ_CHECK(au.keyframe == delivered[k].keyframe && au.rtp_timestamp == delivered[k].timestamp);
        ++k;
      }
    }
  }
  FUZZ_CHECK(k == delivered.size());
}

}  // namespace vms::fuzz
