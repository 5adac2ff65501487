// Kernel dispatch (one table per SIMD level, chosen once) and the downscale built on column sums.
#include <cstring>

#include "kernels_internal.hpp"

namespace vms::motion {

const Kernels* kernels_for(simd::Level level) {
  const simd::Level best = simd::detected();
  switch (level) {
    case simd::Level::Scalar: return &scalar::table;
#if defined(__x86_64__)
    case simd::Level::Sse2: return best >= simd::Level::Sse2 && best != simd::Level::Neon ? &sse2::table : nullptr;
    case simd::Level::Avx2: return best >= simd::Level::Avx2 && best != simd::Level::Neon ? &avx2::table : nullptr;
    case simd::Level::Avx512: return best == simd::Level::Avx512 ? &avx512::table : nullptr;
#endif
    default: return nullptr;  // NEON: the scalar kernels, vectorised by the compiler, serve arm64
  }
}

const Kernels& kernels() {
  static const Kernels* const k = [] {
    const Kernels* t = kernels_for(simd::active());
    return t ? t : &scalar::table;
  }();
  return *k;
}

void downscale(const Kernels& k, const std::uint8_t* src, std::ptrdiff_t stride, int width,
               int height, int factor, std::uint8_t* dst, std::uint16_t* acc) {
  const int ow = width / factor, oh = height / factor;
  if (factor == 1) {
    for (int y = 0; y < oh; ++y)
      std::memcpy(dst + static_cast<std::ptrdiff_t>(y) * ow, src + y * stride, static_cast<std::size_t>(ow));
    return;
  }
  // Rounded division by factor^2 as a multiply and shift, exact for every sum up to 257 * 255 *
  // factor (checked by the tests for every factor the detector uses).
  const std::uint32_t area = static_cast<std::uint32_t>(factor * factor);
  const std::uint32_t inv = ((1u << 24) + area - 1) / area;
  for (int y = 0; y < oh; ++y) {
    k.column_sums(src + static_cast<std::ptrdiff_t>(y) * factor * stride, stride, ow * factor, factor,
                  acc);
    std::uint8_t* out = dst + static_cast<std::ptrdiff_t>(y) * ow;
    const std::uint16_t* a = acc;
    for (int x = 0; x < ow; ++x, a += factor) {
      std::uint32_t s = 0;
      for (int i = 0; i < factor; ++i) s += a[i];
      out[x] = static_cast<std::uint8_t>(((s + area / 2) * inv) >> 24);
    }
  }
}

}  // namespace vms::motion
