// Scalar reference kernels: the definition of every kernel's result, and the path every build has.
// Written for clarity; the SIMD versions must match them bit for bit.
#include "kernels_internal.hpp"

namespace vms::motion::scalar {

std::uint64_t absdiff_count(const std::uint8_t* a, std::ptrdiff_t as, const std::uint8_t* b,
                            std::ptrdiff_t bs, int width, int height, std::uint8_t t) {
  std::uint64_t count = 0;
  for (int y = 0; y < height; ++y, a += as, b += bs)
    for (int x = 0; x < width; ++x) count += absdiff(a[x], b[x]) > t;
  return count;
}

std::uint64_t sad(const std::uint8_t* a, std::ptrdiff_t as, const std::uint8_t* b,
                  std::ptrdiff_t bs, int width, int height) {
  std::uint64_t sum = 0;
  for (int y = 0; y < height; ++y, a += as, b += bs)
    for (int x = 0; x < width; ++x) sum += absdiff(a[x], b[x]);
  return sum;
}

std::uint64_t range_mask(const std::uint8_t* cur, const std::uint8_t* lo, const std::uint8_t* hi,
                         const std::uint8_t* thr, std::uint8_t* mask, std::size_t n) {
  std::uint64_t count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool on = range_distance(cur[i], lo[i], hi[i]) > thr[i];
    mask[i] = on ? 255 : 0;
    count += on;
  }
  return count;
}

std::uint64_t bg_range_mask(const std::uint8_t* cur, const std::uint8_t* bg, const std::uint8_t* thr,
                            std::uint8_t* mask, int width, int height, std::uint8_t* scratch) {
  std::uint64_t count = 0;
  for (int y = 0; y < height; ++y) {
    vertical_minmax(bg, width, height, y, scratch, scratch + width, 0);
    const std::ptrdiff_t row = static_cast<std::ptrdiff_t>(y) * width;
    for (int x = 0; x < width; ++x) {
      const bool on = range_pixel(scratch, scratch + width, width, x, cur[row + x], thr[row + x]);
      mask[row + x] = on ? 255 : 0;
      count += on;
    }
  }
  return count;
}

void minmax3x3(const std::uint8_t* src, int width, int height, std::uint8_t* lo, std::uint8_t* hi,
               std::uint8_t* scratch) {
  std::uint8_t* vmin = scratch;
  std::uint8_t* vmax = scratch + width;
  for (int y = 0; y < height; ++y) {
    vertical_minmax(src, width, height, y, vmin, vmax, 0);
    const std::ptrdiff_t row = static_cast<std::ptrdiff_t>(y) * width;
    for (int x = 0; x < width; ++x) {
      const int l = x > 0 ? x - 1 : 0;
      const int r = x + 1 < width ? x + 1 : x;
      if (lo) lo[row + x] = min3(vmin[l], vmin[x], vmin[r]);
      if (hi) hi[row + x] = max3(vmax[l], vmax[x], vmax[r]);
    }
  }
}

void background_update(const std::uint8_t* cur, const std::uint8_t* hold, std::uint16_t* bg,
                       std::uint8_t* bg8, std::size_t n, int shift) {
  tail_background_update(cur, hold, bg, bg8, 0, n, shift);
}

std::uint64_t gradient_energy(const std::uint8_t* img, std::ptrdiff_t stride, int width,
                              int height) {
  std::uint64_t sum = 0;
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* r = img + y * stride;
    for (int x = 0; x + 1 < width; ++x) sum += absdiff(r[x + 1], r[x]);
    if (y + 1 < height)
      for (int x = 0; x < width; ++x) sum += absdiff(r[x + stride], r[x]);
  }
  return sum;
}

void sum_squares(const std::uint8_t* img, std::size_t n, std::uint64_t* sum, std::uint64_t* sum_sq) {
  std::uint64_t s = 0, q = 0;
  tail_sum_squares(img, 0, n, s, q);
  *sum = s;
  *sum_sq = q;
}

void column_sums(const std::uint8_t* src, std::ptrdiff_t stride, int width, int rows,
                 std::uint16_t* acc) {
  tail_column_sums(src, stride, 0, width, rows, acc);
}

void flicker_update(std::uint8_t* activity, std::uint8_t* clean, std::uint8_t* prev_clean,
                    std::size_t n) {
  tail_flicker_update(activity, clean, prev_clean, 0, n);
}

std::uint8_t age_update(std::uint8_t* age, const std::uint8_t* cur, const std::uint8_t* prev,
                        const std::uint8_t* moving, std::uint8_t still, std::size_t n) {
  return tail_age_update(age, cur, prev, moving, still, 0, n, 0);
}

const Kernels table{simd::Level::Scalar, absdiff_count, sad, range_mask, bg_range_mask, minmax3x3, background_update,
                    gradient_energy, sum_squares, flicker_update, age_update, column_sums};

}  // namespace vms::motion::scalar
