// H.264 specifics (ITU-T H.264): NAL header, SPS parsing (§7.3.2.1.1, VUI Annex E), avcC and the
// RFC 6381 codec string. Pure code; throws vms::BitstreamError on malformed input.
#pragma once

#include <string>

#include "vmscore/nal.hpp"

namespace vms::h264 {

enum NalType : std::uint8_t {
  kSlice = 1,
  kSliceDataA = 2,
  kIdr = 5,
  kSei = 6,
  kSps = 7,
  kPps = 8,
  kAud = 9,
  kEndOfSequence = 10,
  kEndOfStream = 11,
  kFiller = 12,
  kSpsExt = 13,
  kPrefix = 14,
  kSubsetSps = 15,
  kSliceExt = 20,
};

NalHeader classify(ByteSpan nal);
SpsInfo parse_sps(ByteSpan nal);
std::uint32_t pps_id(ByteSpan nal);  // pic_parameter_set_id of a PPS NAL unit
Bytes make_avcc(const ParameterSets& ps);
std::string codec_string(ByteSpan sps_nal);

}  // namespace vms::h264
