// Clip: an encoded clip packetized once into RTP payloads (RFC 6184 / RFC 7798 through
// vms::rtp::Packetizer), so that cameras serving it write only RTP headers per packet. See
// vmscore/camera_server.hpp.
//
// Threading: make() runs on the caller's thread; the result is immutable and shared freely.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "vmscore/camera_server.hpp"
#include "vmscore/error.hpp"
#include "vmscore/packetize.hpp"

namespace vms::sim {
namespace {

bool is_non_vcl_to_mark(Codec codec, std::uint8_t type) {
  // SEI and parameter sets: the units a camera with the marker_on_sei quirk ends "frames" on.
  if (codec == Codec::H264) return type == 6 || type == 7 || type == 8;
  return type == 32 || type == 33 || type == 34 || type == 39 || type == 40;
}

// The type of the last NAL unit a payload completes, or 0xFF when it completes none (a middle FU
// fragment) or cannot be read.
std::uint8_t last_completed_type(Codec codec, ByteSpan p) {
  if (codec == Codec::H264) {
    if (p.empty()) return 0xFF;
    const std::uint8_t type = p[0] & 0x1F;
    if (type == 28) return p.size() >= 2 && (p[1] & 0x40) ? std::uint8_t(p[1] & 0x1F) : 0xFF;
    if (type == 24) {
      std::uint8_t last = 0xFF;
      for (std::size_t pos = 1; pos + 2 < p.size();) {
        const std::size_t n = load_be16(p.data() + pos);
        if (n == 0 || pos + 2 + n > p.size()) break;
        last = p[pos + 2] & 0x1F;
        pos += 2 + n;
      }
      return last;
    }
    return type;
  }
  if (p.size() < 2) return 0xFF;
  const std::uint8_t type = (p[0] >> 1) & 0x3F;
  if (type == 49) return p.size() >= 3 && (p[2] & 0x40) ? std::uint8_t(p[2] & 0x3F) : 0xFF;
  if (type == 48) {
    std::uint8_t last = 0xFF;
    for (std::size_t pos = 2; pos + 2 < p.size();) {
      const std::size_t n = load_be16(p.data() + pos);
      if (n == 0 || pos + 2 + n > p.size()) break;
      last = (p[pos + 2] >> 1) & 0x3F;
      pos += 2 + n;
    }
    return last;
  }
  return type;
}

}  // namespace

double Clip::bitrate_bps() const {
  return duration_90k_ > 0 ? double(annexb_.size()) * 8.0 * 90000.0 / double(duration_90k_) : 0.0;
}

std::shared_ptr<const Clip> Clip::make(Codec codec, std::span<const ClipFrame> frames,
                                       const ClipOptions& options) {
  if (!(options.fps >= 0.0) || !std::isfinite(options.fps) || options.fps > 1000.0)
    throw std::invalid_argument("clip: fps must be 0 (derive) or a positive frame rate up to 1000");
  if (options.max_payload_size < 64 || options.max_payload_size > 65000)
    throw std::invalid_argument("clip: max_payload_size must be 64..65000 bytes");

  std::size_t first = 0;
  while (first < frames.size() && !frames[first].is_keyframe) ++first;
  if (first == frames.size()) throw BitstreamError("clip: no keyframe among the access units");
  const std::span<const ClipFrame> kept = frames.subspan(first);
  for (std::size_t i = 1; i < kept.size(); ++i)
    if (kept[i].dts_90k <= kept[i - 1].dts_90k)
      throw std::invalid_argument("clip: decode timestamps must increase");

  std::shared_ptr<Clip> clip(new Clip());
  Clip& c = *clip;
  c.codec_ = codec;
  c.max_payload_size_ = options.max_payload_size;
  c.parameter_sets_.codec = codec;
  collect_parameter_sets(codec, kept[0].data, true, 0, c.parameter_sets_);
  if (!c.parameter_sets_.complete())
    throw BitstreamError("clip: the first keyframe carries no complete set of parameter sets");
  const SpsInfo sps = parse_sps(codec, c.parameter_sets_.sps.front());
  c.width_ = sps.width;
  c.height_ = sps.height;

  // Frame duration: the given rate, else the median decode-time step, else the SPS timing.
  if (options.fps > 0) {
    c.frame_duration_90k_ = std::max<std::int64_t>(1, std::llround(90000.0 / options.fps));
  } else if (kept.size() >= 2) {
    std::vector<std::int64_t> steps;
    steps.reserve(kept.size() - 1);
    for (std::size_t i = 1; i < kept.size(); ++i) steps.push_back(kept[i].dts_90k - kept[i - 1].dts_90k);
    std::nth_element(steps.begin(), steps.begin() + std::ptrdiff_t(steps.size() / 2), steps.end());
    c.frame_duration_90k_ = steps[steps.size() / 2];
  } else {
    const double rate = sps.frame_rate();
    c.frame_duration_90k_ = rate > 0 ? std::max<std::int64_t>(1, std::llround(90000.0 / rate)) : 3600;
  }
  c.fps_ = options.fps > 0 ? options.fps : 90000.0 / double(c.frame_duration_90k_);
  const std::int64_t base = kept[0].dts_90k;
  c.duration_90k_ = kept.back().dts_90k - base + c.frame_duration_90k_;

  std::size_t total = 0;
  for (const ClipFrame& f : kept) total += f.data.size();
  c.annexb_.reserve(total);
  // Payloads are a little larger than the NAL units (FU headers) and a little smaller (no start
  // codes); a tenth more covers FU overhead at any payload size this accepts.
  c.payload_.reserve(total + total / 10 + 64);
  c.units_.reserve(kept.size());

  rtp::PacketizerOptions po;
  po.max_payload_size = options.max_payload_size;
  rtp::Packetizer packetizer(codec, po);
  Bytes buf(packetizer.max_packet_size());
  for (const ClipFrame& f : kept) {
    Unit u;
    u.pts_90k = f.pts_90k - base;
    u.dts_90k = f.dts_90k - base;
    u.is_keyframe = f.is_keyframe;
    u.first_packet = static_cast<std::uint32_t>(c.packets_.size());
    u.data_offset = c.annexb_.size();
    u.data_size = f.data.size();
    if (!f.data.empty()) {
      const std::size_t at = c.annexb_.size();
      c.annexb_.resize(at + f.data.size());
      std::copy(f.data.begin(), f.data.end(), c.annexb_.begin() + std::ptrdiff_t(at));
    }
    packetizer.begin(f.data, 0, true);
    while (const std::size_t n = packetizer.next(buf)) {
      const std::size_t size = n - rtp::kHeaderSize;
      if (c.payload_.size() + size > 0xFFFFFFFFu)
        throw std::invalid_argument("clip: more than 4 GiB of payload");
      Packet p;
      p.offset = static_cast<std::uint32_t>(c.payload_.size());
      p.size = static_cast<std::uint16_t>(size);
      p.marker = (buf[1] & 0x80) != 0;
      const ByteSpan payload(buf.data() + rtp::kHeaderSize, size);
      p.ends_in_non_vcl = is_non_vcl_to_mark(codec, last_completed_type(codec, payload));
      const std::size_t at = c.payload_.size();
      c.payload_.resize(at + size);
      std::copy(payload.begin(), payload.end(), c.payload_.begin() + std::ptrdiff_t(at));
      c.packets_.push_back(p);
      u.payload_bytes += static_cast<std::uint32_t>(size);
    }
    u.packet_count = static_cast<std::uint32_t>(c.packets_.size()) - u.first_packet;
    if (u.packet_count == 0) throw BitstreamError("clip: an access unit holds no NAL unit");
    c.max_unit_packets_ = std::max<std::size_t>(c.max_unit_packets_, u.packet_count);
    c.max_unit_bytes_ = std::max(c.max_unit_bytes_, u.data_size);
    c.units_.push_back(u);
  }
  return clip;
}

}  // namespace vms::sim
