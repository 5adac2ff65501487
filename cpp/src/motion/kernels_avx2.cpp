// AVX2 kernels (32 lanes).
#include "kernels_internal.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2")

namespace vms::motion::avx2 {
namespace {

struct V {
  using T = __m256i;
  using Acc = __m256i;  // four uint64 lanes
  static constexpr int N = 32;
  static T load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static void store(void* p, T v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
  static T set1(std::uint8_t v) { return _mm256_set1_epi8(static_cast<char>(v)); }
  static T min(T a, T b) { return _mm256_min_epu8(a, b); }
  static T max(T a, T b) { return _mm256_max_epu8(a, b); }
  static T subs(T a, T b) { return _mm256_subs_epu8(a, b); }
  static T adds(T a, T b) { return _mm256_adds_epu8(a, b); }
  static T avg(T a, T b) { return _mm256_avg_epu8(a, b); }
  static T and_(T a, T b) { return _mm256_and_si256(a, b); }
  static T or_(T a, T b) { return _mm256_or_si256(a, b); }
  static T andnot(T a, T b) { return _mm256_andnot_si256(a, b); }
  static T absdiff(T a, T b) { return _mm256_or_si256(_mm256_subs_epu8(a, b), _mm256_subs_epu8(b, a)); }
  static T gt(T a, T b) {
    return _mm256_xor_si256(_mm256_cmpeq_epi8(_mm256_subs_epu8(a, b), _mm256_setzero_si256()),
                            _mm256_set1_epi8(-1));
  }
  static Acc acc_zero() { return _mm256_setzero_si256(); }
  static Acc acc_count(Acc acc, T m) {
    return _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_and_si256(m, _mm256_set1_epi8(1)),
                                                 _mm256_setzero_si256()));
  }
  static Acc acc_sad(Acc acc, T a, T b) { return _mm256_add_epi64(acc, _mm256_sad_epu8(a, b)); }
  static std::uint64_t acc_total(Acc acc) {
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    return static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) +
           static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
  }
};

void k_background_update(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                         std::uint8_t* bg8, std::size_t n, int shift) {
  const __m128i count = _mm_cvtsi32_si128(shift);
  const __m256i half = _mm256_set1_epi16(64);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i c16 = _mm256_slli_epi16(
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + i))), 7);
    const __m256i learn = _mm256_cmpeq_epi16(
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hold + i))),
        _mm256_setzero_si256());
    const __m256i b = V::load(bg + i);
    const __m256i nb = _mm256_add_epi16(b, _mm256_sra_epi16(_mm256_sub_epi16(c16, b), count));
    const __m256i r = _mm256_blendv_epi8(b, nb, learn);
    V::store(bg + i, r);
    const __m256i o = _mm256_srli_epi16(_mm256_add_epi16(r, half), 7);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(bg8 + i),
                     _mm_packus_epi16(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1)));
  }
  tail_background_update(cur, hold, bg, bg8, i, n, shift);
}

void k_sum_squares(const std::uint8_t* img, std::size_t n, std::uint64_t* sum,
                   std::uint64_t* sum_sq) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i s = zero, q64 = zero, q32 = zero;
  std::size_t i = 0, run = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = V::load(img + i);
    s = _mm256_add_epi64(s, _mm256_sad_epu8(v, zero));
    const __m256i lo = _mm256_unpacklo_epi8(v, zero), hi = _mm256_unpackhi_epi8(v, zero);
    q32 = _mm256_add_epi32(q32, _mm256_add_epi32(_mm256_madd_epi16(lo, lo), _mm256_madd_epi16(hi, hi)));
    if (++run == 4096) {
      q64 = _mm256_add_epi64(q64, _mm256_add_epi64(_mm256_unpacklo_epi32(q32, zero),
                                                   _mm256_unpackhi_epi32(q32, zero)));
      q32 = zero;
      run = 0;
    }
  }
  q64 = _mm256_add_epi64(q64, _mm256_add_epi64(_mm256_unpacklo_epi32(q32, zero),
                                               _mm256_unpackhi_epi32(q32, zero)));
  std::uint64_t ts = V::acc_total(s), tq = V::acc_total(q64);
  tail_sum_squares(img, i, n, ts, tq);
  *sum = ts;
  *sum_sq = tq;
}

void k_column_sums(const std::uint8_t* src, std::ptrdiff_t stride, int width, int rows,
                   std::uint16_t* acc) {
  int x = 0;
  for (; x + 16 <= width; x += 16) {
    __m256i a = _mm256_setzero_si256();
    const std::uint8_t* p = src + x;
    for (int r = 0; r < rows; ++r, p += stride)
      a = _mm256_add_epi16(a, _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    V::store(acc + x, a);
  }
  tail_column_sums(src, stride, x, width, rows, acc);
}

}  // namespace

#define LEVEL simd::Level::Avx2
#include "kernels_simd.inc"
#undef LEVEL

}  // namespace vms::motion::avx2

#pragma GCC pop_options
#endif
