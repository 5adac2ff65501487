// CPU feature detection for kernel dispatch (see vmscore/simd.hpp). __builtin_cpu_supports checks
// both the CPU and the OS (XSAVE state for AVX registers), as libyuv's xgetbv check does.
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "vmscore/simd.hpp"

namespace vms::simd {

Level detected() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return Level::Avx512;
  if (__builtin_cpu_supports("avx2")) return Level::Avx2;
  if (__builtin_cpu_supports("sse2")) return Level::Sse2;
  return Level::Scalar;
#elif defined(__aarch64__)
  return Level::Neon;  // NEON is part of the ARMv8-A baseline
#else
  return Level::Scalar;
#endif
}

const char* name(Level level) {
  switch (level) {
    case Level::Scalar: return "scalar";
    case Level::Sse2: return "sse2";
    case Level::Avx2: return "avx2";
    case Level::Avx512: return "avx512";
    case Level::Neon: return "neon";
  }
  return "scalar";
}

Level active() {
  static const Level level = [] {
    const Level best = detected();
    const char* forced = std::getenv("VMSCORE_SIMD");
    if (!forced || !*forced) return best;
    for (Level l : {Level::Scalar, Level::Sse2, Level::Avx2, Level::Avx512, Level::Neon}) {
      if (std::strcmp(forced, name(l)) != 0) continue;
      // Only ever lower: forcing NEON on x86 or AVX-512 on an AVX2 machine would crash.
      const bool same_family = (l == Level::Neon) == (best == Level::Neon) || l == Level::Scalar;
      if (same_family && static_cast<int>(l) <= static_cast<int>(best)) return l;
      return best;
    }
    return best;
  }();
  return level;
}

}  // namespace vms::simd
