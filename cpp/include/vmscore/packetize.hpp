// RTP packetizers for H.264 (RFC 6184 §5.6 single NAL unit, §5.7.1 STAP-A, §5.8 FU-A) and H.265
// (RFC 7798 §4.4.1 single NAL unit, §4.4.2 AP, §4.4.3 FU; no DONL), the inverse of
// depacketize.hpp: access units in, RTP packets of at most a given payload size out. Used by the
// camera simulator and the tests.
//
// Pure code; one packetizer belongs to one thread at a time. Packets are written into the caller's
// buffer one at a time and the access unit is not copied, so nothing is allocated per packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"
#include "vmscore/rtp.hpp"

namespace vms::rtp {

struct PacketizerOptions {
  // RTP payload bytes per packet at most: the path MTU minus the IP, UDP and RTP headers (or less
  // for RTP over TCP, which has no MTU but keeps packets small for latency).
  std::size_t max_payload_size = 1400;
  std::uint8_t payload_type = 96;
  std::uint32_t ssrc = 0;
  std::uint16_t first_sequence = 0;
  // Packetization mode 1: small consecutive units share a STAP-A / AP. false: single NAL unit
  // packets and fragments only.
  bool aggregate = true;
  // Packetization mode 0: single NAL unit packets only; a unit larger than max_payload_size is
  // refused (MuxError) rather than fragmented.
  bool single_nal_only = false;
};

class Packetizer {
 public:
  // Throws std::invalid_argument when max_payload_size is below 8 or above 65535.
  Packetizer(Codec codec, PacketizerOptions opt = {});

  // Starts an access unit: Annex-B (annexb) or 4-byte length-prefixed NAL units, every packet of it
  // with `rtp_timestamp`. The bytes must stay valid until next() has returned 0. Throws
  // BitstreamError for malformed framing or NAL headers; an unfinished access unit is abandoned.
  void begin(ByteSpan au, std::uint32_t rtp_timestamp, bool annexb);
  // Writes the next packet (RTP header and payload) to `out`, which must hold max_packet_size()
  // bytes; returns its size, or 0 when the access unit is complete. The marker bit is set on the
  // last packet of the access unit.
  std::size_t next(std::span<std::uint8_t> out);

  std::size_t max_packet_size() const { return kHeaderSize + opt_.max_payload_size; }
  std::uint16_t next_sequence() const { return sequence_; }
  const PacketizerOptions& options() const { return opt_; }

 private:
  std::size_t write_single(const NalRange& u, std::uint8_t* out);
  std::size_t write_aggregate(std::size_t count, std::uint8_t* out);
  std::size_t write_fragment(const NalRange& u, std::uint8_t* out);
  std::size_t header(bool marker, std::uint8_t* out);

  Codec codec_;
  PacketizerOptions opt_;
  std::uint16_t sequence_;
  std::uint32_t timestamp_ = 0;
  ByteSpan au_;
  std::vector<NalRange> units_;
  std::size_t unit_ = 0;      // next unit to send
  std::size_t fragment_ = 0;  // where the next fragment of units_[unit_] starts (0: not started)
};

}  // namespace vms::rtp
