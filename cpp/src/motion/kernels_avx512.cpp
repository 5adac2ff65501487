// AVX-512BW kernels (64 lanes): comparisons into mask registers, counted with popcnt.
#include "kernels_internal.hpp"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* as a pass-through operand).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,popcnt,avx2")

namespace vms::motion::avx512 {
namespace {

struct V {
  using T = __m512i;
  using Acc = std::uint64_t;
  static constexpr int N = 64;
  static T load(const void* p) { return _mm512_loadu_si512(p); }
  static void store(void* p, T v) { _mm512_storeu_si512(p, v); }
  static T set1(std::uint8_t v) { return _mm512_set1_epi8(static_cast<char>(v)); }
  static T min(T a, T b) { return _mm512_min_epu8(a, b); }
  static T max(T a, T b) { return _mm512_max_epu8(a, b); }
  static T subs(T a, T b) { return _mm512_subs_epu8(a, b); }
  static T adds(T a, T b) { return _mm512_adds_epu8(a, b); }
  static T avg(T a, T b) { return _mm512_avg_epu8(a, b); }
  static T and_(T a, T b) { return _mm512_and_si512(a, b); }
  static T or_(T a, T b) { return _mm512_or_si512(a, b); }
  static T andnot(T a, T b) { return _mm512_andnot_si512(a, b); }
  static T absdiff(T a, T b) { return _mm512_or_si512(_mm512_subs_epu8(a, b), _mm512_subs_epu8(b, a)); }
  static T gt(T a, T b) { return _mm512_movm_epi8(_mm512_cmpgt_epu8_mask(a, b)); }
  static Acc acc_zero() { return 0; }
  static Acc acc_count(Acc acc, T m) {
    return acc + static_cast<std::uint64_t>(_mm_popcnt_u64(_mm512_movepi8_mask(m)));
  }
  static Acc acc_sad(Acc acc, T a, T b) {
    return acc + static_cast<std::uint64_t>(_mm512_reduce_add_epi64(_mm512_sad_epu8(a, b)));
  }
  static std::uint64_t acc_total(Acc acc) { return acc; }
};

void k_background_update(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                         std::uint8_t* bg8, std::size_t n, int shift) {
  const __m128i count = _mm_cvtsi32_si128(shift);
  const __m512i half = _mm512_set1_epi16(64);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i c16 = _mm512_slli_epi16(
        _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur + i))), 7);
    const __mmask32 learn_k =
        _mm256_testn_epi8_mask(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hold + i)),
                               _mm256_set1_epi8(-1));
    const __m512i b = V::load(bg + i);
    const __m512i nb = _mm512_add_epi16(b, _mm512_sra_epi16(_mm512_sub_epi16(c16, b), count));
    const __m512i r = _mm512_mask_blend_epi16(learn_k, b, nb);
    V::store(bg + i, r);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(bg8 + i),
                        _mm512_cvtepi16_epi8(_mm512_srli_epi16(_mm512_add_epi16(r, half), 7)));
  }
  tail_background_update(cur, hold, bg, bg8, i, n, shift);
}

void k_sum_squares(const std::uint8_t* img, std::size_t n, std::uint64_t* sum,
                   std::uint64_t* sum_sq) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i s = zero, q64 = zero;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(img + i));
    s = _mm512_add_epi64(s, _mm512_cvtepu32_epi64(_mm256_sad_epu8(v8, _mm256_setzero_si256())));
    const __m512i v = _mm512_cvtepu8_epi16(v8);
    const __m512i sq = _mm512_madd_epi16(v, v);  // 16 lanes of at most 130050
    q64 = _mm512_add_epi64(q64, _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(sq)),
                                                 _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(sq, 1))));
  }
  std::uint64_t ts = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(s));
  std::uint64_t tq = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(q64));
  tail_sum_squares(img, i, n, ts, tq);
  *sum = ts;
  *sum_sq = tq;
}

void k_column_sums(const std::uint8_t* src, std::ptrdiff_t stride, int width, int rows,
                   std::uint16_t* acc) {
  int x = 0;
  for (; x + 32 <= width; x += 32) {
    __m512i a = _mm512_setzero_si512();
    const std::uint8_t* p = src + x;
    for (int r = 0; r < rows; ++r, p += stride)
      a = _mm512_add_epi16(a, _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
    V::store(acc + x, a);
  }
  tail_column_sums(src, stride, x, width, rows, acc);
}

}  // namespace

#define LEVEL simd::Level::Avx512
#include "kernels_simd.inc"
#undef LEVEL

}  // namespace vms::motion::avx512

#pragma GCC pop_options
#endif
