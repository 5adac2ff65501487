// H.265 sequence parameter set parsing (ITU-T H.265 §7.3.2.2 with profile_tier_level, scaling lists,
// short-term reference picture sets, VUI and HRD), the VPS/SPS/PPS ids, the leading PPS fields, the
// hvcC record, the "hvc1..." codec string and the init segment built on them; see sps_target.hpp.
#include <cstddef>
#include <cstdint>

#include "sps_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vms::fuzz::run_sps_target(vms::Codec::H265, vms::ByteSpan(data, size));
  return 0;
}
