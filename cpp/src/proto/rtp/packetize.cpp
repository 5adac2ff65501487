// H.264 (RFC 6184) and H.265 (RFC 7798) packetization: single NAL unit packets, STAP-A / AP for
// small consecutive units, FU-A / FU for units larger than the payload size. See
// vmscore/packetize.hpp. Pure code.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "vmscore/error.hpp"
#include "vmscore/packetize.hpp"

namespace vms::rtp {

Packetizer::Packetizer(Codec codec, PacketizerOptions opt)
    : codec_(codec), opt_(opt), sequence_(opt.first_sequence) {
  if (opt_.max_payload_size < 8 || opt_.max_payload_size > 0xFFFF)
    throw std::invalid_argument("packetizer: max_payload_size must be 8..65535 bytes");
}

void Packetizer::begin(ByteSpan au, std::uint32_t rtp_timestamp, bool annexb) {
  units_.clear();
  unit_ = 0;
  fragment_ = 0;
  au_ = au;
  timestamp_ = rtp_timestamp;
  try {
    if (annexb)
      split_annexb(au, units_);
    else
      split_length_prefixed(au, 4, units_);
    std::erase_if(units_, [](const NalRange& u) { return u.size == 0; });
    for (const NalRange& u : units_) {
      classify_nal(codec_, au.subspan(u.offset, u.size));  // a header that can be sent
      if (opt_.single_nal_only && u.size > opt_.max_payload_size)
        throw MuxError("packetizer: a NAL unit is larger than the payload size in single NAL unit mode");
    }
  } catch (...) {
    units_.clear();
    throw;
  }
}

std::size_t Packetizer::header(bool marker, std::uint8_t* out) {
  Header h;
  h.marker = marker;
  h.payload_type = opt_.payload_type;
  h.sequence = sequence_++;
  h.timestamp = timestamp_;
  h.ssrc = opt_.ssrc;
  write_header(h, std::span<std::uint8_t>(out, kHeaderSize));
  return kHeaderSize;
}

std::size_t Packetizer::next(std::span<std::uint8_t> out) {
  if (unit_ >= units_.size()) return 0;
  if (out.size() < max_packet_size())
    throw std::length_error("packetizer: output buffer smaller than max_packet_size()");
  const NalRange& u = units_[unit_];
  if (fragment_ > 0 || u.size > opt_.max_payload_size) return write_fragment(u, out.data());
  if (opt_.aggregate) {
    // As many following units as fit in one STAP-A / AP, each with its 16-bit size.
    std::size_t total = codec_ == Codec::H264 ? 1 : 2;
    std::size_t count = 0;
    for (std::size_t j = unit_; j < units_.size(); ++j) {
      const std::size_t need = 2 + units_[j].size;
      if (total + need > opt_.max_payload_size) break;
      total += need;
      ++count;
    }
    if (count >= 2) return write_aggregate(count, out.data());
  }
  return write_single(u, out.data());
}

std::size_t Packetizer::write_single(const NalRange& u, std::uint8_t* out) {
  ++unit_;
  std::size_t n = header(unit_ == units_.size(), out);
  std::memcpy(out + n, au_.data() + u.offset, u.size);
  return n + u.size;
}

std::size_t Packetizer::write_aggregate(std::size_t count, std::uint8_t* out) {
  const std::size_t first = unit_;
  unit_ += count;
  std::size_t n = header(unit_ == units_.size(), out);
  std::uint8_t* hdr = out + n;
  if (codec_ == Codec::H264) {
    // F: any unit's; NRI: the most important unit's (RFC 6184 §5.7).
    std::uint8_t f = 0, nri = 0;
    for (std::size_t j = first; j < unit_; ++j) {
      const std::uint8_t b = au_[units_[j].offset];
      f |= b & 0x80;
      nri = std::max<std::uint8_t>(nri, b & 0x60);
    }
    hdr[0] = static_cast<std::uint8_t>(f | nri | 24);
    n += 1;
  } else {
    // F: any unit's; LayerId and TID: the lowest (RFC 7798 §4.4.2).
    std::uint8_t f = 0, layer = 63, tid = 7;
    for (std::size_t j = first; j < unit_; ++j) {
      const std::uint8_t* b = au_.data() + units_[j].offset;
      f |= b[0] & 0x80;
      layer = std::min<std::uint8_t>(layer, static_cast<std::uint8_t>(((b[0] & 1) << 5) | (b[1] >> 3)));
      tid = std::min<std::uint8_t>(tid, b[1] & 7);
    }
    hdr[0] = static_cast<std::uint8_t>(f | (48 << 1) | (layer >> 5));
    hdr[1] = static_cast<std::uint8_t>(((layer & 0x1F) << 3) | tid);
    n += 2;
  }
  for (std::size_t j = first; j < unit_; ++j) {
    const NalRange& u = units_[j];
    out[n] = static_cast<std::uint8_t>(u.size >> 8);
    out[n + 1] = static_cast<std::uint8_t>(u.size);
    std::memcpy(out + n + 2, au_.data() + u.offset, u.size);
    n += 2 + u.size;
  }
  return n;
}

std::size_t Packetizer::write_fragment(const NalRange& u, std::uint8_t* out) {
  const std::uint8_t* nal = au_.data() + u.offset;
  const bool h264 = codec_ == Codec::H264;
  const std::size_t header_size = h264 ? 1 : 2;  // the NAL header, carried in the FU headers
  const std::size_t overhead = h264 ? 2 : 3;
  const bool start = fragment_ == 0;
  const std::size_t pos = start ? header_size : fragment_;
  const std::size_t chunk = std::min(u.size - pos, opt_.max_payload_size - overhead);
  const bool end = pos + chunk == u.size;
  fragment_ = end ? 0 : pos + chunk;
  if (end) ++unit_;
  std::size_t n = header(end && unit_ == units_.size(), out);
  const std::uint8_t se = static_cast<std::uint8_t>((start ? 0x80 : 0) | (end ? 0x40 : 0));
  if (h264) {
    out[n] = static_cast<std::uint8_t>((nal[0] & 0xE0) | 28);  // FU indicator: F, NRI, FU-A
    out[n + 1] = static_cast<std::uint8_t>(se | (nal[0] & 0x1F));
  } else {
    out[n] = static_cast<std::uint8_t>((nal[0] & 0x81) | (49 << 1));  // payload header: F, FU, LayerId
    out[n + 1] = nal[1];                                               // LayerId, TID
    out[n + 2] = static_cast<std::uint8_t>(se | ((nal[0] >> 1) & 0x3F));
  }
  n += overhead;
  std::memcpy(out + n, nal + pos, chunk);
  return n + chunk;
}

}  // namespace vms::rtp
