// H.264 sequence parameter set parsing (ITU-T H.264 §7.3.2.1.1 with VUI), the PPS id, the avcC
// record, the "avc1.PPCCLL" codec string and the init segment built on them; see sps_target.hpp.
#include <cstddef>
#include <cstdint>

#include "sps_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vms::fuzz::run_sps_target(vms::Codec::H264, vms::ByteSpan(data, size));
  return 0;
}
