// The RTP fixed header (RFC 3550 §5.1), CSRC list, header extension (§5.3.1) and padding.
// Pure code; see vmscore/rtp.hpp.
#include <stdexcept>
#include <string>

#include "vmscore/error.hpp"
#include "vmscore/rtp.hpp"

namespace vms::rtp {

Packet parse_packet(ByteSpan data) {
  if (data.size() < kHeaderSize)
    throw BitstreamError("RTP: packet of " + std::to_string(data.size()) +
                         " bytes is shorter than the 12-byte header");
  const std::uint8_t b0 = data[0];
  if ((b0 >> 6) != 2)
    throw BitstreamError("RTP: version " + std::to_string(b0 >> 6) + " (expected 2)");
  Packet p;
  p.data = data;
  const bool padding = (b0 & 0x20) != 0;
  p.has_extension = (b0 & 0x10) != 0;
  p.csrc_count = b0 & 0x0F;
  p.marker = (data[1] & 0x80) != 0;
  p.payload_type = data[1] & 0x7F;
  p.sequence = load_be16(data.data() + 2);
  p.timestamp = load_be32(data.data() + 4);
  p.ssrc = load_be32(data.data() + 8);

  std::size_t pos = kHeaderSize;
  std::size_t end = data.size();
  if (padding) {
    // The last byte counts the padding, itself included (§5.1), so 0 is malformed.
    const std::uint8_t n = data[end - 1];
    if (n == 0) throw BitstreamError("RTP: padding bit set with a padding count of 0");
    if (n > end - pos) throw BitstreamError("RTP: padding longer than the packet");
    p.padding = n;
    end -= n;
  }
  const std::size_t csrc_bytes = std::size_t(p.csrc_count) * 4;
  if (csrc_bytes > end - pos) throw BitstreamError("RTP: CSRC list runs past the packet");
  p.csrcs = data.subspan(pos, csrc_bytes);
  pos += csrc_bytes;
  if (p.has_extension) {
    if (end - pos < 4) throw BitstreamError("RTP: header extension runs past the packet");
    p.extension_profile = load_be16(data.data() + pos);
    const std::size_t words = load_be16(data.data() + pos + 2);
    pos += 4;
    if (words * 4 > end - pos) throw BitstreamError("RTP: header extension runs past the packet");
    p.extension = data.subspan(pos, words * 4);
    pos += words * 4;
  }
  p.payload = data.subspan(pos, end - pos);
  return p;
}

void write_header(const Header& h, std::span<std::uint8_t> out) {
  if (out.size() < kHeaderSize) throw std::length_error("RTP: header buffer shorter than 12 bytes");
  out[0] = 0x80;  // version 2, no padding, no extension, no CSRC
  out[1] = static_cast<std::uint8_t>((h.marker ? 0x80 : 0) | (h.payload_type & 0x7F));
  out[2] = static_cast<std::uint8_t>(h.sequence >> 8);
  out[3] = static_cast<std::uint8_t>(h.sequence);
  for (int i = 0; i < 4; ++i) {
    out[std::size_t(4 + i)] = static_cast<std::uint8_t>(h.timestamp >> (24 - 8 * i));
    out[std::size_t(8 + i)] = static_cast<std::uint8_t>(h.ssrc >> (24 - 8 * i));
  }
}

}  // namespace vms::rtp
