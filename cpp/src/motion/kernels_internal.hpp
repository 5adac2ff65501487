// Shared by the kernel translation units: the per-pixel definitions (used by the scalar reference
// and by the SIMD tails) and the tables. Only plain inline functions on integers here, no standard
// library: the SIMD units are compiled for their instruction set, and an inline function they
// instantiate must not be one a baseline unit could pick up (see kernels_simd.inc).
#pragma once

#include "vmscore/motion_kernels.hpp"

namespace vms::motion {
namespace {  // internal linkage: each unit keeps its own copy, compiled for its own target

inline std::uint8_t absdiff(std::uint8_t a, std::uint8_t b) {
  return static_cast<std::uint8_t>(a > b ? a - b : b - a);
}
inline std::uint8_t min3(std::uint8_t a, std::uint8_t b, std::uint8_t c) {
  const std::uint8_t m = a < b ? a : b;
  return m < c ? m : c;
}
inline std::uint8_t max3(std::uint8_t a, std::uint8_t b, std::uint8_t c) {
  const std::uint8_t m = a > b ? a : b;
  return m > c ? m : c;
}
// How far v lies outside [lo, hi] (0 inside).
inline std::uint8_t range_distance(std::uint8_t v, std::uint8_t lo, std::uint8_t hi) {
  if (v > hi) return static_cast<std::uint8_t>(v - hi);
  if (v < lo) return static_cast<std::uint8_t>(lo - v);
  return 0;
}
inline std::uint16_t learn_step(std::uint8_t cur, std::uint16_t bg, int shift) {
  const int delta = (static_cast<int>(cur) << 7) - static_cast<int>(bg);
  return static_cast<std::uint16_t>(static_cast<int>(bg) + (delta >> shift));
}
inline std::uint8_t fixed_to_u8(std::uint16_t bg) { return static_cast<std::uint8_t>((bg + 64) >> 7); }

// The per-pixel definitions of the non-byte-wise kernels from index i on: the scalar kernels run
// them from 0, the SIMD kernels on their tails.
inline void tail_background_update(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                                   std::uint8_t* bg8, std::size_t i, std::size_t n, int shift) {
  for (; i < n; ++i) {
    if (!hold[i]) bg[i] = learn_step(cur[i], bg[i], shift);
    bg8[i] = fixed_to_u8(bg[i]);
  }
}
inline void tail_sum_squares(const std::uint8_t* img, std::size_t i, std::size_t n, std::uint64_t& sum,
                             std::uint64_t& sum_sq) {
  for (; i < n; ++i) {
    sum += img[i];
    sum_sq += static_cast<std::uint32_t>(img[i]) * img[i];
  }
}
inline void tail_flicker_update(std::uint8_t* act, std::uint8_t* clean, std::uint8_t* history,
                               std::size_t i, std::size_t n) {
  for (; i < n; ++i) {
    const bool now = clean[i] != 0;
    const int on = now && (history[i] & 1) && !(history[i] & 2) ? 32 : 0;
    const int decayed = act[i] ? act[i] - 1 : 0;
    const int a = decayed + on > 255 ? 255 : decayed + on;
    act[i] = static_cast<std::uint8_t>(a);
    history[i] = static_cast<std::uint8_t>(((history[i] << 1) & 2) | (now ? 1 : 0));
    if (a > 96) clean[i] = 0;
  }
}
inline std::uint8_t tail_age_update(std::uint8_t* age, const std::uint8_t* cur, const std::uint8_t* prev,
                                    const std::uint8_t* moving, std::uint8_t still, std::size_t i,
                                    std::size_t n, std::uint8_t oldest) {
  for (; i < n; ++i) {
    // Still: one step older. Moving but not still this frame (noise, or it moved): half the age.
    // Not moving: no age.
    const int a = age[i];
    const int next = absdiff(cur[i], prev[i]) <= still ? (a == 255 ? 255 : a + 1) : (a + 1) >> 1;
    age[i] = static_cast<std::uint8_t>(moving[i] ? next : 0);
    if (age[i] > oldest) oldest = age[i];
  }
  return oldest;
}
// Vertical 3-row minimum and maximum of row y of a contiguous image (edges replicated).
inline void vertical_minmax(const std::uint8_t* src, int width, int height, int y, std::uint8_t* vmin,
                            std::uint8_t* vmax, int x) {
  const std::uint8_t* r0 = src + static_cast<std::ptrdiff_t>(y > 0 ? y - 1 : 0) * width;
  const std::uint8_t* r1 = src + static_cast<std::ptrdiff_t>(y) * width;
  const std::uint8_t* r2 = src + static_cast<std::ptrdiff_t>(y + 1 < height ? y + 1 : y) * width;
  for (; x < width; ++x) {
    vmin[x] = min3(r0[x], r1[x], r2[x]);
    vmax[x] = max3(r0[x], r1[x], r2[x]);
  }
}
// One pixel of bg_range_mask from the vertical minima and maxima of its row.
inline bool range_pixel(const std::uint8_t* vmin, const std::uint8_t* vmax, int width, int x, std::uint8_t cur,
                        std::uint8_t thr) {
  const int l = x > 0 ? x - 1 : 0;
  const int r = x + 1 < width ? x + 1 : x;
  return range_distance(cur, min3(vmin[l], vmin[x], vmin[r]), max3(vmax[l], vmax[x], vmax[r])) > thr;
}
inline void tail_column_sums(const std::uint8_t* src, std::ptrdiff_t stride, int x, int width, int rows,
                             std::uint16_t* acc) {
  for (; x < width; ++x) {
    std::uint16_t a = 0;
    const std::uint8_t* p = src + x;
    for (int r = 0; r < rows; ++r, p += stride) a = static_cast<std::uint16_t>(a + *p);
    acc[x] = a;
  }
}

}  // namespace

namespace scalar {
extern const Kernels table;
std::uint64_t absdiff_count(const std::uint8_t* a, std::ptrdiff_t as, const std::uint8_t* b,
                            std::ptrdiff_t bs, int width, int height, std::uint8_t t);
std::uint64_t sad(const std::uint8_t* a, std::ptrdiff_t as, const std::uint8_t* b,
                  std::ptrdiff_t bs, int width, int height);
}  // namespace scalar

#if defined(__x86_64__) || defined(__i386__)
namespace sse2 { extern const Kernels table; }
namespace avx2 { extern const Kernels table; }
namespace avx512 { extern const Kernels table; }
#endif

}  // namespace vms::motion
