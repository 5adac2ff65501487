// SSE2 kernels (16 lanes): the x86-64 baseline, so every x86-64 CPU runs them.
#include "kernels_internal.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("sse2")

namespace vms::motion::sse2 {
namespace {

struct V {
  using T = __m128i;
  using Acc = __m128i;  // two uint64 lanes
  static constexpr int N = 16;
  static T load(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
  static void store(void* p, T v) { _mm_storeu_si128(static_cast<__m128i*>(p), v); }
  static T set1(std::uint8_t v) { return _mm_set1_epi8(static_cast<char>(v)); }
  static T min(T a, T b) { return _mm_min_epu8(a, b); }
  static T max(T a, T b) { return _mm_max_epu8(a, b); }
  static T subs(T a, T b) { return _mm_subs_epu8(a, b); }
  static T adds(T a, T b) { return _mm_adds_epu8(a, b); }
  static T avg(T a, T b) { return _mm_avg_epu8(a, b); }
  static T and_(T a, T b) { return _mm_and_si128(a, b); }
  static T or_(T a, T b) { return _mm_or_si128(a, b); }
  static T andnot(T a, T b) { return _mm_andnot_si128(a, b); }
  static T absdiff(T a, T b) { return _mm_or_si128(_mm_subs_epu8(a, b), _mm_subs_epu8(b, a)); }
  static T gt(T a, T b) {  // a > b  <=>  a - b (saturating) != 0
    return _mm_xor_si128(_mm_cmpeq_epi8(_mm_subs_epu8(a, b), _mm_setzero_si128()), _mm_set1_epi8(-1));
  }
  static Acc acc_zero() { return _mm_setzero_si128(); }
  static Acc acc_count(Acc acc, T m) {
    return _mm_add_epi64(acc, _mm_sad_epu8(_mm_and_si128(m, _mm_set1_epi8(1)), _mm_setzero_si128()));
  }
  static Acc acc_sad(Acc acc, T a, T b) { return _mm_add_epi64(acc, _mm_sad_epu8(a, b)); }
  static std::uint64_t acc_total(Acc acc) {
    return static_cast<std::uint64_t>(_mm_cvtsi128_si64(acc)) +
           static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)));
  }
};

void k_background_update(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                         std::uint8_t* bg8, std::size_t n, int shift) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i count = _mm_cvtsi32_si128(shift);
  const __m128i half = _mm_set1_epi16(64);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i c = V::load(cur + i);
    const __m128i keep = _mm_xor_si128(_mm_cmpeq_epi8(V::load(hold + i), zero), _mm_set1_epi8(-1));  // 0xFF: held
    __m128i out[2];
    for (int h = 0; h < 2; ++h) {
      const __m128i c16 = _mm_slli_epi16(h ? _mm_unpackhi_epi8(c, zero) : _mm_unpacklo_epi8(c, zero), 7);
      const __m128i k16 = h ? _mm_unpackhi_epi8(keep, keep) : _mm_unpacklo_epi8(keep, keep);
      const __m128i b = V::load(bg + i + 8 * h);
      const __m128i nb = _mm_add_epi16(b, _mm_sra_epi16(_mm_sub_epi16(c16, b), count));
      const __m128i r = _mm_or_si128(_mm_and_si128(k16, b), _mm_andnot_si128(k16, nb));
      V::store(bg + i + 8 * h, r);
      out[h] = _mm_srli_epi16(_mm_add_epi16(r, half), 7);
    }
    V::store(bg8 + i, _mm_packus_epi16(out[0], out[1]));
  }
  tail_background_update(cur, hold, bg, bg8, i, n, shift);
}

void k_sum_squares(const std::uint8_t* img, std::size_t n, std::uint64_t* sum,
                   std::uint64_t* sum_sq) {
  const __m128i zero = _mm_setzero_si128();
  __m128i s = zero, q64 = zero, q32 = zero;
  std::size_t i = 0, run = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i v = V::load(img + i);
    s = _mm_add_epi64(s, _mm_sad_epu8(v, zero));
    const __m128i lo = _mm_unpacklo_epi8(v, zero), hi = _mm_unpackhi_epi8(v, zero);
    q32 = _mm_add_epi32(q32, _mm_add_epi32(_mm_madd_epi16(lo, lo), _mm_madd_epi16(hi, hi)));
    if (++run == 4096) {  // each 32-bit lane grows by at most 260100 per step
      q64 = _mm_add_epi64(q64, _mm_add_epi64(_mm_unpacklo_epi32(q32, zero), _mm_unpackhi_epi32(q32, zero)));
      q32 = zero;
      run = 0;
    }
  }
  q64 = _mm_add_epi64(q64, _mm_add_epi64(_mm_unpacklo_epi32(q32, zero), _mm_unpackhi_epi32(q32, zero)));
  std::uint64_t ts = V::acc_total(s), tq = V::acc_total(q64);
  tail_sum_squares(img, i, n, ts, tq);
  *sum = ts;
  *sum_sq = tq;
}

void k_column_sums(const std::uint8_t* src, std::ptrdiff_t stride, int width, int rows,
                   std::uint16_t* acc) {
  const __m128i zero = _mm_setzero_si128();
  int x = 0;
  for (; x + 16 <= width; x += 16) {
    __m128i lo = zero, hi = zero;
    const std::uint8_t* p = src + x;
    for (int r = 0; r < rows; ++r, p += stride) {
      const __m128i v = V::load(p);
      lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, zero));
      hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, zero));
    }
    V::store(acc + x, lo);
    V::store(acc + x + 8, hi);
  }
  tail_column_sums(src, stride, x, width, rows, acc);
}

}  // namespace

#define LEVEL simd::Level::Sse2
#include "kernels_simd.inc"
#undef LEVEL

}  // namespace vms::motion::sse2

#pragma GCC pop_options
#endif
