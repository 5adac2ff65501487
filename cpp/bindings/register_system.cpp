// System information: SIMD level.
#include "common.hpp"
#include "vmscore/simd.hpp"

namespace vms::bind {

void register_system(py::module_& m) {
  m.def("simd_level", [] { return std::string(simd::name(simd::active())); },
        "The SIMD level the kernels use: the CPU's best, lowered by VMSCORE_SIMD.");
  m.def("simd_detected", [] { return std::string(simd::name(simd::detected())); },
        "The best SIMD level this CPU supports.");
}

}  // namespace vms::bind
