// The SIMD level the motion kernels run at, chosen once at start-up from the CPU's flags. The
// environment variable VMSCORE_SIMD (scalar, sse2, avx2, avx512, neon) forces a lower level for
// tests and for comparing paths; a level above what the CPU supports is ignored.
#pragma once

namespace vms::simd {

enum class Level : int { Scalar = 0, Sse2 = 1, Avx2 = 2, Avx512 = 3, Neon = 10 };

Level detected();  // what the CPU supports
Level active();    // what is used: detected(), lowered by VMSCORE_SIMD
const char* name(Level level);

}  // namespace vms::simd
