// H.265 specifics (ITU-T H.265): NAL header, SPS parsing (§7.3.2.2, VUI Annex E), hvcC and the
// RFC 6381 codec string (ISO/IEC 14496-15 Annex E). Pure code; throws vms::BitstreamError.
#pragma once

#include <string>

#include "vmscore/nal.hpp"

namespace vms::h265 {

enum NalType : std::uint8_t {
  kTrailN = 0,
  kRaslR = 9,
  kBlaWLp = 16,
  kIdrWRadl = 19,
  kIdrNLp = 20,
  kCraNut = 21,
  kIrapMax = 23,
  kVps = 32,
  kSps = 33,
  kPps = 34,
  kAud = 35,
  kEndOfSequence = 36,
  kEndOfBitstream = 37,
  kFiller = 38,
  kSeiPrefix = 39,
  kSeiSuffix = 40,
  kAp = 48,  // RTP aggregation packet (RFC 7798), never in an elementary stream
  kFu = 49,  // RTP fragmentation unit (RFC 7798)
};

NalHeader classify(ByteSpan nal);
SpsInfo parse_sps(ByteSpan nal);
std::uint32_t vps_id(ByteSpan nal);
std::uint32_t sps_id(ByteSpan nal);
std::uint32_t pps_id(ByteSpan nal);
Bytes make_hvcc(const ParameterSets& ps);
std::string codec_string(ByteSpan sps_nal);

}  // namespace vms::h265
