// SDP parsing and the codec parameters read from it. parse() may only fail with BitstreamError;
// what it returns must respect its limits and invariants (payload types, encodings upper-case,
// controls resolvable). For every H.264 / H.265 media, parameter_sets() must not throw and may only
// return parameter sets of the right kind that the SPS parser accepts; the fmtp accessors stay in
// range; aac_config() fails only with BitstreamError and then describes a real sampling rate.
//
// Input: byte 0 picks small limits (bit 0: max_lines 16, bit 1: max_line_bytes 64, bit 2:
// max_media 2), the rest is the description.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"
#include "vmscore/rtsp.hpp"
#include "vmscore/sdp.hpp"

using namespace vms;

namespace {

bool is_upper(std::string_view s) {
  for (char c : s)
    if (c >= 'a' && c <= 'z') return false;
  return true;
}

void check_parameter_sets(const sdp::Media& m, Codec codec) {
  std::vector<std::string> warnings;
  ParameterSets ps;
  fuzz::must_not_throw("sdp::parameter_sets", [&] { ps = sdp::parameter_sets(m, &warnings); });
  FUZZ_CHECK(ps.codec == codec);
  if (codec == Codec::H264) FUZZ_CHECK(ps.vps.empty());
  const auto check_list = [&](const std::vector<Bytes>& list, NalKind kind) {
    std::vector<std::uint32_t> ids;
    for (const Bytes& unit : list) {
      fuzz::must_not_throw("a parameter set from fmtp", [&] {
        FUZZ_CHECK(classify_nal(codec, unit).kind == kind);
        const std::uint32_t id = parameter_set_id(codec, unit);
        for (std::uint32_t seen : ids) FUZZ_CHECK(seen != id);  // one unit per id
        ids.push_back(id);
        if (kind == NalKind::Sps) fuzz::check_sps_info(codec, parse_sps(codec, unit));
      });
    }
  };
  check_list(ps.vps, NalKind::Vps);
  check_list(ps.sps, NalKind::Sps);
  check_list(ps.pps, NalKind::Pps);
  FUZZ_CHECK(ps.complete() == (!ps.sps.empty() && !ps.pps.empty() && (codec == Codec::H264 || !ps.vps.empty())));
  // Without a description of its own the same call must warn, not fail.
  fuzz::must_not_throw("sdp::parameter_sets without warnings", [&] { (void)sdp::parameter_sets(m); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  sdp::Limits limits;
  if (data[0] & 1) limits.max_lines = 16;
  if (data[0] & 2) limits.max_line_bytes = 64;
  if (data[0] & 4) limits.max_media = 2;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  sdp::Session s;
  try {
    s = sdp::parse(text, limits);
  } catch (const BitstreamError&) {
    return 0;
  }
  FUZZ_CHECK(s.media.size() <= limits.max_media);
  const std::string base = rtsp::resolve_control("rtsp://cam:554/stream/", s.control);
  FUZZ_CHECK(!base.empty());
  if (const auto v = sdp::live555_version(s.tool)) FUZZ_CHECK(*v <= 99991231);
  for (const sdp::Media& m : s.media) {
    FUZZ_CHECK(!m.type.empty() && !m.formats.empty() && m.port_count >= 1);
    FUZZ_CHECK(m.payload_type >= -1 && m.payload_type <= 127);
    FUZZ_CHECK(is_upper(m.encoding));
    FUZZ_CHECK(m.encoding.empty() == (m.clock_rate == 0));
    if (m.framerate) FUZZ_CHECK(*m.framerate > 0 && *m.framerate <= 1000);
    FUZZ_CHECK(!rtsp::resolve_control(base, m.control).empty());
    const int mode = sdp::packetization_mode(m);
    FUZZ_CHECK(mode >= 0 && mode <= 2);
    if (const auto plid = sdp::profile_level_id(m)) FUZZ_CHECK(*plid <= 0xFFFFFF);
    (void)sdp::sprop_max_don_diff(m);
    if (const auto codec = sdp::video_codec(m)) {
      check_parameter_sets(m, *codec);
    } else {
      bool threw = false;
      try {
        (void)sdp::parameter_sets(m);
      } catch (const BitstreamError&) {
        threw = true;
      }
      FUZZ_CHECK(threw);
    }
    try {
      if (const auto aac = sdp::aac_config(m)) {
        FUZZ_CHECK(m.encoding == "MPEG4-GENERIC");
        FUZZ_CHECK(aac->sample_rate > 0 && aac->channels <= 15 && !aac->audio_specific_config.empty());
      }
    } catch (const BitstreamError&) {
    }
  }
  // Base64 round trip of whatever the description held.
  const auto raw = sdp::base64_decode(text.substr(0, 256));
  if (raw) {
    const auto again = sdp::base64_decode(sdp::base64_encode(*raw));
    FUZZ_CHECK(again && *again == *raw);
  }
  return 0;
}
