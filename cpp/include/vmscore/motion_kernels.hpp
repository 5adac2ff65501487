// The motion analysis kernels: the few passes over luma that the detector is made of, each with a
// scalar reference and SIMD versions (SSE2, AVX2, AVX-512BW on x86-64) that give bit-identical
// results. A table per level; kernels() is the one the CPU and VMSCORE_SIMD select.
//
// Planes are 8-bit luma: a pointer, a row stride in bytes (any, also larger than the width) and a
// size. "Contiguous" kernels work on the detector's own buffers (stride == width). No kernel
// allocates; scratch space is passed in.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmscore/simd.hpp"

namespace vms::motion {

struct Kernels {
  simd::Level level;

  // Count of pixels with |a - b| > t.
  std::uint64_t (*absdiff_count)(const std::uint8_t* a, std::ptrdiff_t a_stride, const std::uint8_t* b,
                                 std::ptrdiff_t b_stride, int width, int height, std::uint8_t t);

  // Sum of |a - b|.
  std::uint64_t (*sad)(const std::uint8_t* a, std::ptrdiff_t a_stride, const std::uint8_t* b,
                       std::ptrdiff_t b_stride, int width, int height);

  // The fused stage, over n contiguous pixels: the distance of cur outside the background range
  // [lo, hi], compared with the per-pixel threshold thr; mask = 255 where it is above, else 0.
  // Returns the count of 255s.
  std::uint64_t (*range_mask)(const std::uint8_t* cur, const std::uint8_t* lo, const std::uint8_t* hi,
                              const std::uint8_t* thr, std::uint8_t* mask, std::size_t n);

  // range_mask against the 3x3 minimum and maximum of bg (edges replicated), computed on the fly
  // over a contiguous width x height image: the fused difference stage of the detector. scratch
  // holds 2 * width bytes.
  std::uint64_t (*bg_range_mask)(const std::uint8_t* cur, const std::uint8_t* bg, const std::uint8_t* thr,
                                 std::uint8_t* mask, int width, int height, std::uint8_t* scratch);

  // 3x3 minimum (lo) and maximum (hi) of a contiguous width x height image, edges replicated.
  // Either output may be null. scratch holds 2 * width bytes. Outputs must not alias src.
  void (*minmax3x3)(const std::uint8_t* src, int width, int height, std::uint8_t* lo,
                    std::uint8_t* hi, std::uint8_t* scratch);

  // Selective running average in 8.7 fixed point over n contiguous pixels: where hold == 0,
  // bg += ((cur << 7) - bg) >> shift (arithmetic shift); bg8 = (bg + 64) >> 7 everywhere.
  // hold is the mask of moving pixels, which are not learnt.
  void (*background_update)(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                            std::uint8_t* bg8, std::size_t n, int shift);

  // Sum over the image of |I(x+1,y) - I(x,y)| + |I(x,y+1) - I(x,y)|: a sharpness measure.
  std::uint64_t (*gradient_energy)(const std::uint8_t* img, std::ptrdiff_t stride, int width,
                                   int height);

  // Sum and sum of squares of n contiguous pixels.
  void (*sum_squares)(const std::uint8_t* img, std::size_t n, std::uint64_t* sum,
                      std::uint64_t* sum_sq);

  // Flicker bookkeeping over n contiguous pixels. clean is a mask (0 or nonzero); history holds
  // the mask of the two frames before (bit 0: the last one, bit 1: the one before). A switch-on
  // is a pixel on now and in the last frame after being off before it: something that stays a
  // moment, like a swaying branch, not a raindrop passing. activity = min(255, max(activity - 1,
  // 0) + 32 per switch-on); history = (history << 1 & 2) | (clean != 0); then clean = 0 where
  // activity > 96.
  void (*flicker_update)(std::uint8_t* activity, std::uint8_t* clean, std::uint8_t* history,
                         std::size_t n);

  // Age of changed pixels that stay still: where moving == 0, age = 0; else where
  // |cur - prev| <= still, age = min(age + 1, 255); else age = (age + 1) >> 1 (a noisy frame
  // halves the age instead of resetting it). Returns the largest age.
  std::uint8_t (*age_update)(std::uint8_t* age, const std::uint8_t* cur, const std::uint8_t* prev,
                             const std::uint8_t* moving, std::uint8_t still, std::size_t n);

  // Column sums of `rows` consecutive rows (rows <= 257): acc[x] = sum of src[r * stride + x].
  void (*column_sums)(const std::uint8_t* src, std::ptrdiff_t stride, int width, int rows,
                      std::uint16_t* acc);
};

// The kernels for the active level (simd::active()).
const Kernels& kernels();

// The kernels of one level; nullptr when this CPU or build cannot run it.
const Kernels* kernels_for(simd::Level level);

// Box-average downscale by an integer factor: dst is (width / factor) x (height / factor),
// contiguous; the right and bottom remainders are left out. acc holds `width` uint16 values.
void downscale(const Kernels& k, const std::uint8_t* src, std::ptrdiff_t stride, int width,
               int height, int factor, std::uint8_t* dst, std::uint16_t* acc);

}  // namespace vms::motion
