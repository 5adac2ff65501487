// H.265 RTP depacketization (RFC 7798, with and without DONL) on fuzzed packet sequences; see
// depacketize_target.hpp for the input format and what is checked.
#include "depacketize_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vms::fuzz::run_depacketize_target(vms::Codec::H265, vms::ByteSpan(data, size));
  return 0;
}
