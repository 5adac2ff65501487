// H.264 RTP depacketization (RFC 6184) on fuzzed packet sequences; see depacketize_target.hpp for
// the input format and what is checked.
#include "depacketize_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vms::fuzz::run_depacketize_target(vms::Codec::H264, vms::ByteSpan(data, size));
  return 0;
}
