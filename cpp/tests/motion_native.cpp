// Motion kernels and detectors under the sanitizers: every SIMD level against the scalar kernels on
// odd sizes (the row ends, where out-of-bounds reads would hide), and detectors of odd-sized
// frames with zones, masks, global changes and tampering, two cameras in parallel threads. Exits
// non-zero on the first mismatch; ASan/UBSan/TSan report memory and thread errors.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "vmscore/motion.hpp"

using namespace vms::motion;

namespace {

int failures = 0;

void check(bool ok, const char* what, int w, int h) {
  if (ok) return;
  std::fprintf(stderr, "mismatch: %s at %dx%d\n", what, w, h);
  ++failures;
}

// Exactly-sized heap buffers, so that a read past the end is caught.
std::vector<std::uint8_t> random_bytes(std::mt19937& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

void kernels_match_scalar(const Kernels& k, const Kernels& s, std::mt19937& rng) {
  for (int w : {1, 2, 15, 17, 31, 33, 63, 65, 66, 127, 129, 200}) {
    for (int h : {1, 2, 3, 7}) {
      const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
      auto a = random_bytes(rng, n), b = random_bytes(rng, n), t = random_bytes(rng, n);
      check(k.absdiff_count(a.data(), w, b.data(), w, w, h, 30) == s.absdiff_count(a.data(), w, b.data(), w, w, h, 30),
            "absdiff_count", w, h);
      check(k.sad(a.data(), w, b.data(), w, w, h) == s.sad(a.data(), w, b.data(), w, w, h), "sad", w, h);
      check(k.gradient_energy(a.data(), w, w, h) == s.gradient_energy(a.data(), w, w, h), "gradient", w, h);
      std::vector<std::uint8_t> m1(n), m2(n), scratch(2 * static_cast<std::size_t>(w));
      check(k.bg_range_mask(a.data(), b.data(), t.data(), m1.data(), w, h, scratch.data()) ==
                    s.bg_range_mask(a.data(), b.data(), t.data(), m2.data(), w, h, scratch.data()) &&
                m1 == m2,
            "bg_range_mask", w, h);
      std::vector<std::uint8_t> lo1(n), hi1(n), lo2(n), hi2(n);
      k.minmax3x3(a.data(), w, h, lo1.data(), hi1.data(), scratch.data());
      s.minmax3x3(a.data(), w, h, lo2.data(), hi2.data(), scratch.data());
      check(lo1 == lo2 && hi1 == hi2, "minmax3x3", w, h);
      check(k.range_mask(a.data(), lo1.data(), hi1.data(), t.data(), m1.data(), n) ==
                    s.range_mask(a.data(), lo1.data(), hi1.data(), t.data(), m2.data(), n) &&
                m1 == m2,
            "range_mask", w, h);
      std::vector<std::uint16_t> bg1(n), bg2(n);
      for (std::size_t i = 0; i < n; ++i) bg1[i] = bg2[i] = static_cast<std::uint16_t>(rng() % 32641);
      std::vector<std::uint8_t> b81(n), b82(n);
      k.background_update(a.data(), t.data(), bg1.data(), b81.data(), n, 3);
      s.background_update(a.data(), t.data(), bg2.data(), b82.data(), n, 3);
      check(bg1 == bg2 && b81 == b82, "background_update", w, h);
      std::uint64_t s1, q1, s2, q2;
      k.sum_squares(a.data(), n, &s1, &q1);
      s.sum_squares(a.data(), n, &s2, &q2);
      check(s1 == s2 && q1 == q2, "sum_squares", w, h);
      std::vector<std::uint16_t> acc1(static_cast<std::size_t>(w)), acc2(static_cast<std::size_t>(w));
      k.column_sums(a.data(), w, w, h, acc1.data());
      s.column_sums(a.data(), w, w, h, acc2.data());
      check(acc1 == acc2, "column_sums", w, h);
      auto act1 = random_bytes(rng, n), c1 = random_bytes(rng, n), p1 = random_bytes(rng, n);
      for (auto& x : c1) x = x & 1 ? 255 : 0;
      for (auto& x : p1) x &= 3;  // the history of two frames
      auto act2 = act1, c2 = c1, p2 = p1;
      k.flicker_update(act1.data(), c1.data(), p1.data(), n);
      s.flicker_update(act2.data(), c2.data(), p2.data(), n);
      check(act1 == act2 && c1 == c2 && p1 == p2, "flicker_update", w, h);
      auto age1 = random_bytes(rng, n);
      auto age2 = age1;
      check(k.age_update(age1.data(), a.data(), b.data(), c1.data(), 40, n) ==
                    s.age_update(age2.data(), a.data(), b.data(), c1.data(), 40, n) &&
                age1 == age2,
            "age_update", w, h);
    }
  }
}

// One camera: a textured noisy view, an object crossing, a light switch, a covered lens.
void camera(int w, int h, int analysis_width, unsigned seed, int* motion_frames) {
  std::mt19937 rng(seed);
  Config c;
  c.analysis_width = analysis_width;
  c.learn_s = 1;
  c.tamper_s = 1;
  c.zones.push_back({"left", {{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}, false, 0.8, -1, 0, 2});
  c.zones.push_back({"road", {{0.7, -0.2}, {1.3, -0.2}, {1.3, 1.2}, {0.7, 1.2}}, true, -1, -1, 0, -1});
  Detector d(w, h, c);
  const std::ptrdiff_t stride = w + 7;  // padded rows, as decoders give them
  std::vector<std::uint8_t> base(static_cast<std::size_t>(stride) * static_cast<std::size_t>(h));
  for (auto& b : base) b = static_cast<std::uint8_t>(60 + rng() % 80);
  std::vector<std::uint8_t> frame(base.size());
  int motion = 0;
  for (int i = 0; i < 120; ++i) {
    for (std::size_t p = 0; p < frame.size(); ++p) {
      int v = base[p] + static_cast<int>(rng() % 7) - 3;
      if (i >= 60 && i < 70) v += 70;  // lights on
      if (i >= 90 && i < 105) v = 5;   // covered
      frame[p] = static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
    if (i >= 20 && i < 50) {  // a bright square walking left to right
      const int size = std::max(2, h / 5), x0 = (i - 20) * (w - size) / 30, y0 = h / 3;
      for (int y = y0; y < y0 + size && y < h; ++y)
        for (int x = x0; x < x0 + size && x < w; ++x) frame[static_cast<std::size_t>(y * stride + x)] = 240;
    }
    const Result& r = d.process(frame.data(), stride, i * 0.2);
    motion += r.motion;
  }
  *motion_frames = motion;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  const Kernels* scalar = kernels_for(vms::simd::Level::Scalar);
  for (vms::simd::Level l : {vms::simd::Level::Sse2, vms::simd::Level::Avx2, vms::simd::Level::Avx512}) {
    const Kernels* k = kernels_for(l);
    if (!k) continue;
    kernels_match_scalar(*k, *scalar, rng);
    std::printf("kernels %s: checked\n", vms::simd::name(l));
  }
  // Detectors of different sizes and analysis widths, two at a time in parallel threads.
  struct Cam {
    int w, h, analysis;
    int motion = 0;
  };
  std::vector<Cam> cams = {{37, 23, 0}, {333, 199, 160}, {640, 360, 320}, {301, 171, 0}};
  for (std::size_t i = 0; i < cams.size(); i += 2) {
    std::thread t0(camera, cams[i].w, cams[i].h, cams[i].analysis, 11u + static_cast<unsigned>(i), &cams[i].motion);
    std::thread t1(camera, cams[i + 1].w, cams[i + 1].h, cams[i + 1].analysis, 12u + static_cast<unsigned>(i),
                   &cams[i + 1].motion);
    t0.join();
    t1.join();
  }
  for (const Cam& c : cams) {
    std::printf("camera %dx%d (analysis %d): %d motion frames\n", c.w, c.h, c.analysis, c.motion);
    // The square crosses the "left" zone for several frames; lights and cover must not count.
    if (c.motion < 3 || c.motion > 30) {
      std::fprintf(stderr, "camera %dx%d: %d motion frames, expected 3..30\n", c.w, c.h, c.motion);
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
