// The per-camera motion detector. The frame is box-downscaled once to the analysis size; every
// later step works on that small image with the kernels of vmscore/motion_kernels.hpp:
//
//   background range   [lo, hi] = 3x3 min / max of the background: a shift of up to one analysis
//                      pixel (camera jitter) or a swaying edge stays inside the range
//   fused difference   distance outside the range > per-pixel threshold -> raw mask, count
//   global change      most of the image changed: re-baseline (lights, IR switch, camera turned)
//   camera shake       a shift of the whole image found by SAD search: compared shifted instead
//   temporal filter    changed now and near a pixel changed in the previous frame (rain, snow);
//                      large compact components it took away are put back (a fast runner)
//   despeckle          3x3 opening
//   flicker filter     pixels that keep switching on for a moment are ignored (leaves, flags)
//   blobs              run-based connected components, none one pixel thick; a blob that
//                      correlates with the background (same texture, other brightness) is
//                      light, not an object
//   zones              per-zone minimum area, changed fraction and persistence
//   background update  selective running average; changed pixels that stay still are absorbed
//   tamper             darkness, glare, cover, defocus (sharpness against the camera's own
//                      baseline) and scene change (correlation with a long-term reference)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "vmscore/motion.hpp"

namespace vms::motion {

namespace {

constexpr int kShakeRange = 2;
constexpr std::size_t kMaxBlobs = 256;
constexpr std::uint8_t kExcluded = 0, kDefaultClass = 1;

double clamp01(double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

// Noise multiplier of a sensitivity: 0 -> 6, 1 -> 2.
double k_of(double sensitivity) { return 6.0 - 4.0 * clamp01(sensitivity); }

int round_int(double v) { return static_cast<int>(std::lround(v)); }

// Whether any byte is set (a loop the compiler vectorises).
bool any_nonzero(const std::uint8_t* __restrict p, std::size_t n) {
  std::uint8_t acc = 0;
  for (std::size_t i = 0; i < n; ++i) acc |= p[i];
  return acc != 0;
}

// Per-pixel bookkeeping loops, written for the compiler's vectoriser: restrict pointers, a local
// count, byte arithmetic only (a byte store could otherwise alias the detector's own members).
// dst = a & ~b (masks of 0 / 255); returns the number of set bytes of dst.
std::size_t and_not_into(std::uint8_t* __restrict dst, const std::uint8_t* __restrict a,
                         const std::uint8_t* __restrict b, std::size_t n) {
  std::size_t c = 0;
  for (std::size_t i = 0; i < n; ++i) {
    dst[i] = static_cast<std::uint8_t>(a[i] & ~b[i]);
    c += dst[i] >> 7;
  }
  return c;
}

void and_into(std::uint8_t* __restrict dst, const std::uint8_t* __restrict a, const std::uint8_t* __restrict b,
              std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = a[i] & b[i];
}

}  // namespace

Detector::Detector(int width, int height, Config config)
    : width_(width), height_(height), cfg_(std::move(config)), k_(kernels()) {
  if (width < 16 || height < 16 || width > 16384 || height > 16384)
    throw std::invalid_argument("frame size must be between 16x16 and 16384x16384, got " +
                                std::to_string(width) + "x" + std::to_string(height));
  if (cfg_.analysis_width < 0) throw std::invalid_argument("analysis_width must be >= 0");
  if (!(cfg_.min_area >= 0 && cfg_.min_area < 1)) throw std::invalid_argument("min_area must be in [0, 1)");
  if (cfg_.persistence < 1) throw std::invalid_argument("persistence must be >= 1");
  if (!(cfg_.background_s > 0) || !(cfg_.static_s > 0) || !(cfg_.learn_s >= 0) || !(cfg_.tamper_s > 0) ||
      !(cfg_.scene_adopt_s > 0))
    throw std::invalid_argument("times must be positive");
  if (!(cfg_.global_change > 0 && cfg_.global_change <= 1))
    throw std::invalid_argument("global_change must be in (0, 1]");
  if (cfg_.min_threshold < 1 || cfg_.min_threshold > 254)
    throw std::invalid_argument("min_threshold must be in 1..254");
  f_ = cfg_.analysis_width == 0 ? 1 : std::max(1, width / cfg_.analysis_width);
  if (cfg_.analysis_width && width / f_ > cfg_.analysis_width) ++f_;
  f_ = std::min(f_, 15);
  aw_ = width / f_;
  ah_ = height / f_;
  if (aw_ < 8 || ah_ < 8) throw std::invalid_argument("analysis image would be smaller than 8x8");
  n_ = static_cast<std::size_t>(aw_) * static_cast<std::size_t>(ah_);
  // Noise, global motion and shake are estimated on a sample of 4000 to 8000 pixels whatever the size.
  sample_step_ = std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n_) / 8000.0))));
  cf_ = std::clamp(aw_ / 80, 1, 15);
  cw_ = aw_ / cf_;
  ch_ = ah_ / cf_;

  for (auto* v : {&cur_, &prev_, &bg8_, &lo_, &hi_, &thr_, &raw_, &prev_raw_, &tmp_, &clean_, &prev_clean_,
                  &activity_, &age_, &zeros_, &klass_, &gone_})
    v->assign(n_, 0);
  coarse_.assign(static_cast<std::size_t>(cw_) * static_cast<std::size_t>(ch_), 0);
  gone_rows_.assign(static_cast<std::size_t>(ah_), 0);
  ref_.assign(coarse_.size(), 0);
  scratch_.assign(2 * static_cast<std::size_t>(std::max(aw_, cw_)) + 64, 0);
  bg_.assign(n_, 0);
  flicker_rows_.assign(static_cast<std::size_t>(ah_), 1);
  age_rows_.assign(static_cast<std::size_t>(ah_), 1);
  acc_.assign(static_cast<std::size_t>(width) + 64, 0);
  // More runs than this means the mask is noise; such a frame is treated as a global change.
  max_runs_ = n_ / 8 + static_cast<std::size_t>(ah_);
  runs_.reserve(max_runs_);
  stats_.reserve(max_runs_);
  blob_of_root_.assign(max_runs_, -1);
  build_zones();
  res_.zones.reserve(zones_.size());
  for (const auto& z : zones_) res_.zones.push_back(ZoneHit{z.cfg.name, false, false, 0, 0, 0});
  res_.blobs.reserve(kMaxBlobs);
  blob_zone_px_.assign(kMaxBlobs * zones_.size(), 0);
}

void Detector::build_zones() {
  // Classes: 0 excluded, 1 the detector's own sensitivity, 2.. one per include zone.
  class_k_ = {0.0, k_of(cfg_.sensitivity)};
  std::fill(klass_.begin(), klass_.end(), kDefaultClass);
  std::vector<const ZoneConfig*> includes, excludes;
  for (const auto& z : cfg_.zones) {
    if (z.polygon.size() < 3) throw std::invalid_argument("zone '" + z.name + "' needs at least 3 points");
    for (const auto& [x, y] : z.polygon)
      if (!std::isfinite(x) || !std::isfinite(y))
        throw std::invalid_argument("zone '" + z.name + "' has a coordinate that is not a number");
    (z.exclude ? excludes : includes).push_back(&z);
  }
  if (includes.size() > 200) throw std::invalid_argument("at most 200 include zones");
  ZoneConfig whole{"frame", {{0, 0}, {1, 0}, {1, 1}, {0, 1}}, false, -1, -1, 0, -1};
  if (includes.empty()) includes.push_back(&whole);

  // Scanline spans of a polygon at analysis resolution: a pixel is inside when its centre is.
  auto spans_of = [&](const ZoneConfig& z, std::vector<int>& row_start, std::vector<Span>& spans) {
    row_start.assign(static_cast<std::size_t>(ah_) + 1, 0);
    spans.clear();
    std::vector<double> xs;
    const std::size_t m = z.polygon.size();
    for (int y = 0; y < ah_; ++y) {
      row_start[static_cast<std::size_t>(y)] = static_cast<int>(spans.size());
      const double py = (y + 0.5) / ah_;
      xs.clear();
      for (std::size_t i = 0; i < m; ++i) {
        const auto [x0, y0] = z.polygon[i];
        const auto [x1, y1] = z.polygon[(i + 1) % m];
        if ((y0 <= py) != (y1 <= py)) xs.push_back(x0 + (py - y0) / (y1 - y0) * (x1 - x0));
      }
      std::sort(xs.begin(), xs.end());
      for (std::size_t i = 0; i + 1 < xs.size(); i += 2) {
        // Pixel x is inside when xs[i] <= (x + 0.5) / aw < xs[i + 1].
        const int a = std::clamp(static_cast<int>(std::ceil(xs[i] * aw_ - 0.5)), 0, aw_);
        const int b = std::clamp(static_cast<int>(std::ceil(xs[i + 1] * aw_ - 0.5)), 0, aw_);
        if (b > a) spans.push_back({a, b});
      }
    }
    row_start[static_cast<std::size_t>(ah_)] = static_cast<int>(spans.size());
  };

  const double image_px = static_cast<double>(n_);
  zones_.clear();
  for (const ZoneConfig* z : includes) {
    ZoneState s;
    s.cfg = *z;
    spans_of(*z, s.row_start, s.spans);
    for (const Span& sp : s.spans) s.area_px += sp.x1 - sp.x0;
    const double min_area = z->min_area >= 0 ? z->min_area : cfg_.min_area;
    s.min_area_px = std::max(2, round_int(min_area * image_px));
    s.persistence = z->persistence >= 1 ? z->persistence : cfg_.persistence;
    const double k = k_of(z->sensitivity >= 0 ? z->sensitivity : cfg_.sensitivity);
    // The pixel's class is the most sensitive zone covering it.
    std::size_t cls = 0;
    for (std::size_t c = 1; c < class_k_.size(); ++c)
      if (class_k_[c] == k) cls = c;
    if (!cls) {
      cls = class_k_.size();
      class_k_.push_back(k);
    }
    for (int y = 0; y < ah_; ++y)
      for (int i = s.row_start[static_cast<std::size_t>(y)]; i < s.row_start[static_cast<std::size_t>(y) + 1]; ++i)
        for (int x = s.spans[static_cast<std::size_t>(i)].x0; x < s.spans[static_cast<std::size_t>(i)].x1; ++x) {
          std::uint8_t& c = klass_[static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_) + static_cast<std::size_t>(x)];
          if (c == kDefaultClass || class_k_[cls] < class_k_[c]) c = static_cast<std::uint8_t>(cls);
        }
    zones_.push_back(std::move(s));
  }
  for (const ZoneConfig* z : excludes) {
    std::vector<int> row_start;
    std::vector<Span> spans;
    spans_of(*z, row_start, spans);
    for (int y = 0; y < ah_; ++y)
      for (int i = row_start[static_cast<std::size_t>(y)]; i < row_start[static_cast<std::size_t>(y) + 1]; ++i)
        for (int x = spans[static_cast<std::size_t>(i)].x0; x < spans[static_cast<std::size_t>(i)].x1; ++x)
          klass_[static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_) + static_cast<std::size_t>(x)] = kExcluded;
  }
  active_px_ = static_cast<std::size_t>(std::count_if(klass_.begin(), klass_.end(), [](std::uint8_t c) { return c != kExcluded; }));
  for (auto& z : zones_) {  // masks take pixels out of zones too
    z.area_px = 0;
    for (int y = 0; y < ah_; ++y)
      for (int i = z.row_start[static_cast<std::size_t>(y)]; i < z.row_start[static_cast<std::size_t>(y) + 1]; ++i)
        for (int x = z.spans[static_cast<std::size_t>(i)].x0; x < z.spans[static_cast<std::size_t>(i)].x1; ++x)
          z.area_px += klass_[static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_) + static_cast<std::size_t>(x)] != kExcluded;
  }
}

void Detector::rebuild_thresholds() {
  const double sigma = std::max(noise_, 0.5);
  class_thr_.fill(255);
  for (std::size_t c = 1; c < class_k_.size(); ++c)
    class_thr_[c] = static_cast<std::uint8_t>(std::clamp(round_int(class_k_[c] * sigma), cfg_.min_threshold, 254));
  for (std::size_t i = 0; i < n_; ++i) thr_[i] = class_thr_[klass_[i]];
  thr_global_ = class_thr_[kDefaultClass];
}

void Detector::reset() {
  frames_ = 0;
  noise_ = -1;
  thr_global_ = -1;
  settle_ = 0;
  was_tampered_ = false;
  learned_ = false;
  base_std_ = base_sharp_ = 0;
  tamper_for_.fill(0);
  scene_changed_for_ = 0;
  similarity_ = 1;
  for (auto& z : zones_) z.consecutive = 0;
  for (auto* v : {&prev_raw_, &prev_clean_, &activity_, &age_}) std::fill(v->begin(), v->end(), 0);
  std::fill(flicker_rows_.begin(), flicker_rows_.end(), 1);
  std::fill(age_rows_.begin(), age_rows_.end(), 1);
  res_ = Result{};
  for (const auto& z : zones_) res_.zones.push_back(ZoneHit{z.cfg.name, false, false, 0, 0, 0});
}

void Detector::learn_now(std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) {
    bg_[i] = static_cast<std::uint16_t>(cur_[i] << 7);
    bg8_[i] = cur_[i];
  }
}

void Detector::rebaseline() {
  learn_now(0, n_);
  std::fill(age_.begin(), age_.end(), 0);
  std::fill(prev_raw_.begin(), prev_raw_.end(), 0);
  std::fill(prev_clean_.begin(), prev_clean_.end(), 0);
  std::fill(flicker_rows_.begin(), flicker_rows_.end(), 1);
  std::fill(age_rows_.begin(), age_rows_.end(), 1);
  for (auto& z : zones_) z.consecutive = 0;
}

void Detector::estimate_noise() {
  // Median of |frame - previous frame| over a sample of the pixels. Frame to frame, slow light changes
  // (dusk, a cloud) do not count and objects covering less than half the image do not move the
  // median; for Gaussian noise the median absolute difference of two frames is 0.954 sigma.
  std::array<std::uint32_t, 256> hist{};
  std::uint32_t total = 0;
  for (int y = 0; y < ah_; y += sample_step_) {
    const std::size_t row = static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_);
    for (int x = (y / sample_step_) % sample_step_; x < aw_; x += sample_step_) {
      const std::size_t i = row + static_cast<std::size_t>(x);
      if (klass_[i] == kExcluded) continue;
      const int d = cur_[i] > prev_[i] ? cur_[i] - prev_[i] : prev_[i] - cur_[i];
      ++hist[static_cast<std::size_t>(d)];
      ++total;
    }
  }
  if (!total) return;
  std::uint32_t seen = 0;
  int median = 0;
  for (; median < 255; ++median) {
    seen += hist[static_cast<std::size_t>(median)];
    if (2 * seen >= total) break;
  }
  // Interpolate inside the median's bin so that a noise level below one step is still graded.
  const double below = seen - hist[static_cast<std::size_t>(median)];
  const double within = hist[static_cast<std::size_t>(median)] ? (total / 2.0 - below) / hist[static_cast<std::size_t>(median)] : 0.5;
  const double sigma = (median - 0.5 + std::clamp(within, 0.0, 1.0)) / 0.954;
  // A sudden jump is a change of the view (lights), not noise: one frame moves the estimate by
  // at most half again.
  const double s = noise_ < 0 ? std::max(sigma, 0.3) : std::clamp(sigma, 0.3, 1.5 * noise_);
  noise_ = noise_ < 0 ? s : noise_ + (s - noise_) * (frames_ < 30 ? 0.3 : 0.05);
}

void Detector::follow_gain() {
  // Median of frame / background over a sample of still pixels bright enough to measure, in
  // steps of 1/1024 within +-25%.
  constexpr int kSteps = 512;
  static const std::array<int, 256> recip = [] {  // 2^20 / v: cur * recip >> 10 = 1024 cur / v
    std::array<int, 256> t{};
    for (int v = 1; v < 256; ++v) t[static_cast<std::size_t>(v)] = ((1 << 20) + v / 2) / v;
    return t;
  }();
  std::array<std::uint32_t, kSteps> hist{};
  std::uint32_t total = 0;
  for (int y = 0; y < ah_; y += sample_step_) {
    const std::size_t row = static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_);
    for (int x = (y / sample_step_) % sample_step_; x < aw_; x += sample_step_) {
      const std::size_t i = row + static_cast<std::size_t>(x);
      if (klass_[i] == kExcluded || prev_raw_[i] || bg8_[i] < 24) continue;
      const int bin = ((cur_[i] * recip[bg8_[i]] + (1 << 9)) >> 10) - 1024 + kSteps / 2;
      if (bin < 0 || bin >= kSteps) continue;
      ++hist[static_cast<std::size_t>(bin)];
      ++total;
    }
  }
  if (total < 200) return;
  std::uint32_t seen = 0;
  int median = 0;
  for (; median < kSteps; ++median) {
    seen += hist[static_cast<std::size_t>(median)];
    if (2 * seen >= total) break;
  }
  const double gain = 1.0 + (median - kSteps / 2) / 1024.0;
  if (std::fabs(gain - 1.0) < 0.004) return;  // within the noise of the estimate
  const std::uint32_t q = static_cast<std::uint32_t>(std::lround(gain * 4096.0));
  std::uint16_t* bg = bg_.data();
  std::uint8_t* bg8 = bg8_.data();
  for (std::size_t i = 0; i < n_; ++i) {
    const std::uint32_t v = (bg[i] * q + 2048) >> 12;
    bg[i] = static_cast<std::uint16_t>(v > 255 * 128 ? 255 * 128 : v);
    bg8[i] = static_cast<std::uint8_t>((bg[i] + 64) >> 7);
  }
}

bool Detector::estimate_shake(int& dx, int& dy) {
  const int m = kShakeRange;
  // Every sample_step_-th row is enough to find the shift.
  const int w = aw_ - 2 * m, h = (ah_ - 2 * m + sample_step_ - 1) / sample_step_;
  const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(aw_) * sample_step_;
  const std::uint8_t* c = cur_.data() + static_cast<std::ptrdiff_t>(m) * aw_ + m;
  std::uint64_t best = ~0ull, zero = 0;
  dx = dy = 0;
  for (int sy = -m; sy <= m; ++sy)
    for (int sx = -m; sx <= m; ++sx) {
      const std::uint8_t* b = bg8_.data() + static_cast<std::ptrdiff_t>(m + sy) * aw_ + (m + sx);
      const std::uint64_t s = k_.sad(c, stride, b, stride, w, h);
      if (!sx && !sy) zero = s;
      if (s < best) {
        best = s;
        dx = sx;
        dy = sy;
      }
    }
  // A real shift explains most of the difference; an object moving explains little of it.
  return (dx || dy) && static_cast<double>(best) < 0.8 * static_cast<double>(zero);
}

void Detector::shifted_mask(int dx, int dy) {
  // Compare each pixel with the background at its shifted position; the border strip that has no
  // counterpart is left out.
  k_.minmax3x3(bg8_.data(), aw_, ah_, lo_.data(), hi_.data(), scratch_.data());
  std::fill(raw_.begin(), raw_.end(), 0);
  const int m = kShakeRange;
  for (int y = m; y < ah_ - m; ++y) {
    const std::size_t row = static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_) + static_cast<std::size_t>(m);
    const std::size_t srow = static_cast<std::size_t>(y + dy) * static_cast<std::size_t>(aw_) +
                             static_cast<std::size_t>(m + dx);
    k_.range_mask(cur_.data() + row, lo_.data() + srow, hi_.data() + srow, thr_.data() + row, raw_.data() + row,
                  static_cast<std::size_t>(aw_ - 2 * m));
  }
}

std::size_t Detector::label(const std::uint8_t* mask, const std::uint8_t* rows) {
  // Runs of 255 in mask, 8-connected through overlapping runs of the previous row, merged with
  // union-find; returns the number of runs (stats_ holds the stats of every root). `rows`, when
  // given, marks the rows that may hold something: the others are not read.
  runs_.clear();
  auto find = [&](int i) {
    while (runs_[static_cast<std::size_t>(i)].parent != i) {
      int& p = runs_[static_cast<std::size_t>(i)].parent;
      p = runs_[static_cast<std::size_t>(p)].parent;
      i = p;
    }
    return i;
  };
  std::size_t prev_begin = 0, prev_end = 0;
  for (int y = 0; y < ah_; ++y) {
    const std::uint8_t* row = mask + static_cast<std::size_t>(y) * static_cast<std::size_t>(aw_);
    const std::size_t begin = runs_.size();
    if (rows != nullptr && !rows[y]) {
      prev_begin = prev_end = begin;
      continue;
    }
    // Runs of a row are in x order, so the previous row's runs that touch this one are found by
    // a cursor that only moves forward: linear in the runs, however many a noisy row has.
    std::size_t cursor = prev_begin;
    int x = 0;
    while (x < aw_) {
      // Skip zero bytes eight at a time.
      while (x + 8 <= aw_) {
        std::uint64_t word;
        std::memcpy(&word, row + x, 8);
        if (word) break;
        x += 8;
      }
      while (x < aw_ && !row[x]) ++x;
      if (x >= aw_) break;
      const int x0 = x;
      while (x < aw_ && row[x]) ++x;
      if (runs_.size() == max_runs_) return max_runs_ + 1;
      const int id = static_cast<int>(runs_.size());
      runs_.push_back({y, x0, x, id});
      while (cursor < prev_end && runs_[cursor].x1 < x0) ++cursor;
      // 8-connected: touching diagonally counts ([r.x0, r.x1) touches [x0, x) if r.x1 >= x0 and
      // r.x0 <= x). The last run touched may touch the next run of this row too: not passed.
      for (std::size_t p = cursor; p < prev_end && runs_[p].x0 <= x; ++p) {
        const int a = find(static_cast<int>(p)), b = find(id);
        if (a != b) runs_[static_cast<std::size_t>(std::max(a, b))].parent = std::min(a, b);
      }
    }
    prev_begin = begin;
    prev_end = runs_.size();
  }
  stats_.resize(runs_.size());
  for (std::size_t i = 0; i < runs_.size(); ++i) {
    Run& r = runs_[i];
    r.parent = find(static_cast<int>(i));
    Stats& s = stats_[static_cast<std::size_t>(r.parent)];
    const int len = r.x1 - r.x0;
    if (static_cast<std::size_t>(r.parent) == i) s = Stats{0, r.x0, r.y, r.x1, r.y + 1, 0, 0};
    s.area += len;
    s.x0 = std::min(s.x0, r.x0);
    s.x1 = std::max(s.x1, r.x1);
    s.y1 = std::max(s.y1, r.y + 1);
    s.sx += static_cast<std::int64_t>(len) * (r.x0 + r.x1 - 1);  // twice the sum of x
    s.sy += static_cast<std::int64_t>(len) * r.y;
  }
  return runs_.size();
}

void Detector::rescue_large_blobs(std::size_t removed) {
  // The temporal filter keeps only what is near a change of the previous frame: raindrops and
  // snowflakes land somewhere else every frame. A person running across the view moves further
  // than that between analysed frames too (a runner 7 analysis pixels wide moves 12), and would
  // lose most of its silhouette. What the filter took away (gone_) is labelled: a component that
  // is large, at least 3 pixels wide and tall and fills a third of its box is an object, not
  // weather (drops are thin streaks or specks; many of them merge into a sparse cloud at most),
  // and is put back into the filtered mask (tmp_). A change that stays where it is (the edge of
  // a lamp's pool of light) passed the filter anyway and is not in gone_.
  int min_px = 1 << 30;
  for (const auto& z : zones_) min_px = std::min(min_px, z.min_area_px);
  if (zones_.empty()) return;
  const int large = 2 * min_px;
  if (removed < static_cast<std::size_t>(large)) return;
  // Larger than a twentieth of the view, a sudden change is a light, which the blob stage must
  // see as the filter leaves it (a person that big overlaps its previous place anyway).
  const int huge = static_cast<int>(n_ / 20);
  const std::size_t nruns = label(gone_.data(), gone_rows_.data());
  if (nruns > max_runs_) return;  // a mask of noise: the checks after the filter deal with it
  const std::size_t w = static_cast<std::size_t>(aw_);
  for (std::size_t i = 0; i < nruns; ++i) {
    const Run& r = runs_[i];
    const Stats& s = stats_[static_cast<std::size_t>(r.parent)];
    const int bw = s.x1 - s.x0, bh = s.y1 - s.y0;
    if (s.area < large || s.area > huge || bw < 3 || bh < 3 || 3 * s.area < bw * bh) continue;
    std::memset(tmp_.data() + static_cast<std::size_t>(r.y) * w + static_cast<std::size_t>(r.x0), 255,
                static_cast<std::size_t>(r.x1 - r.x0));
  }
}

void Detector::adopt_reference() {
  for (std::size_t i = 0; i < ref_.size(); ++i) ref_[i] = static_cast<std::uint16_t>(coarse_[i] << 8);
  similarity_ = 1;
}

double Detector::structure_similarity() const {
  // Agreement of edge directions between the coarse frame and the long-term reference: each
  // gradient is normalised (with a floor, so flat areas weigh little), so that lighting that
  // brightens or darkens parts of the view changes little, while a turned camera shows edges
  // where there were none. 1: the same view; near 0: another view.
  double dot = 0, na = 0, nb = 0;
  for (int y = 0; y + 1 < ch_; ++y)
    for (int x = 0; x + 1 < cw_; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(cw_) + static_cast<std::size_t>(x);
      const double ax = coarse_[i + 1] - coarse_[i], ay = coarse_[i + static_cast<std::size_t>(cw_)] - coarse_[i];
      const double bx = (ref_[i + 1] - ref_[i]) / 256.0;
      const double by = (ref_[i + static_cast<std::size_t>(cw_)] - ref_[i]) / 256.0;
      const double ma = std::sqrt(ax * ax + ay * ay) + 2, mb = std::sqrt(bx * bx + by * by) + 2;
      dot += (ax * bx + ay * by) / (ma * mb);
      na += (ax * ax + ay * ay) / (ma * ma);
      nb += (bx * bx + by * by) / (mb * mb);
    }
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 1.0;
}

bool Detector::global_motion(double& dx, double& dy) const {
  // Translation of the whole view since the previous frame, by least squares on the image
  // gradients (Lucas-Kanade over a sample of the pixels): accurate to a few hundredths
  // of a pixel for the sub-pixel jitter of a shaking pole, which the background range hides from
  // the mask but which would smear the background if it were learnt.
  double sxx = 0, sxy = 0, syy = 0, sxt = 0, syt = 0;
  const std::size_t w = static_cast<std::size_t>(aw_);
  for (int y = 1; y + 1 < ah_; y += sample_step_)
    for (int x = 1; x + 1 < aw_; x += sample_step_) {
      const std::size_t i = static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x);
      const double ix = 0.5 * (prev_[i + 1] - prev_[i - 1]);
      const double iy = 0.5 * (prev_[i + w] - prev_[i - w]);
      const double it = static_cast<double>(cur_[i]) - prev_[i];
      sxx += ix * ix;
      sxy += ix * iy;
      syy += iy * iy;
      sxt += ix * it;
      syt += iy * it;
    }
  const double det = sxx * syy - sxy * sxy;
  if (det <= 1e-9 * (sxx + syy) * (sxx + syy) || sxx + syy <= 0) return false;
  dx = -(syy * sxt - sxy * syt) / det;
  dy = -(sxx * syt - sxy * sxt) / det;
  return true;
}

bool Detector::illumination_like(const Stats& s) const {
  // A change of light multiplies the background by a gain that varies smoothly across the
  // region: the ratio frame / background is smooth. An object replaces the background: the ratio
  // has the object's edges and texture. Compare the ratio's own gradient (less what noise alone
  // gives) with how far the ratio is from 1, over the blob's box.
  constexpr double kFloor = 8;  // keeps the ratio stable in near-black areas
  const int pad = 1;
  const int x0 = std::max(0, s.x0 - pad), x1 = std::min(aw_, s.x1 + pad);
  const int y0 = std::max(0, s.y0 - pad), y1 = std::min(ah_, s.y1 + pad);
  const std::size_t w = static_cast<std::size_t>(aw_);
  static const std::array<double, 256> inv = [] {
    std::array<double, 256> t{};
    for (int v = 0; v < 256; ++v) t[static_cast<std::size_t>(v)] = 1.0 / (v + kFloor);
    return t;
  }();
  auto ratio = [&](std::size_t i) { return (cur_[i] + kFloor) * inv[bg8_[i]]; };
  double dev = 0, grad = 0, noise_grad = 0, nn = 0;
  const double sigma = std::max(noise_, 0.5);
  // Large boxes are sampled (about 2000 pixels, each with its right and lower neighbour).
  const int step = std::max(1, static_cast<int>(std::ceil(std::sqrt((x1 - x0) * static_cast<double>(y1 - y0) / 2000.0))));
  for (int y = y0; y < y1; y += step) {
    for (int x = x0; x < x1; x += step) {
      const std::size_t i = static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x);
      const double r = ratio(i);
      dev += std::fabs(r - 1);
      if (x + 1 < x1) grad += std::fabs(ratio(i + 1) - r);
      if (y + 1 < y1) grad += std::fabs(ratio(i + w) - r);
      // Two differences of two noisy pixels each: about 2.3 sigma of |gradient| per pixel.
      noise_grad += 2.3 * sigma * inv[bg8_[i]];
      nn += 1;
    }
  }
  if (dev / nn < 0.02) return false;  // too faint to judge: keep it as motion
  const double excess = std::max(0.0, grad - noise_grad);
  return excess < cfg_.illumination * dev;
}

void Detector::tamper_checks(double dt) {
  // Brightness, contrast and fine detail from pairs of rows spread over the image.
  std::uint64_t sum = 0, sq = 0, fine = 0, px = 0;
  const int step = std::max(2, sample_step_);
  for (int y = 0; y + 1 < ah_; y += step) {
    const std::uint8_t* rows = cur_.data() + static_cast<std::ptrdiff_t>(y) * aw_;
    std::uint64_t s = 0, q = 0;
    k_.sum_squares(rows, 2 * static_cast<std::size_t>(aw_), &s, &q);
    sum += s;
    sq += q;
    fine += k_.gradient_energy(rows, aw_, aw_, 2);
    px += 2 * static_cast<std::uint64_t>(aw_);
  }
  const double nn = static_cast<double>(px);
  const double mean = static_cast<double>(sum) / nn;
  const double var = std::max(0.0, static_cast<double>(sq) / nn - mean * mean);
  const double sd = std::sqrt(var);
  downscale(k_, cur_.data(), aw_, aw_, ah_, cf_, coarse_.data(), acc_.data());
  // Sharpness: fine detail against coarse detail (gradients per pixel of the analysis image and of
  // the coarse image). Lighting scales both alike; a blurred lens takes the fine detail first.
  // Sensor noise adds fine gradients of its own (1.5 differences a pixel here, each about 1.13
  // sigma): taken off, so that a dark, noisy view does not read as sharp.
  const double grad = std::max(0.0, static_cast<double>(fine) / nn - 1.69 * std::max(noise_, 0.0));
  const double coarse_grad = static_cast<double>(k_.gradient_energy(coarse_.data(), cw_, cw_, ch_)) /
                             static_cast<double>(coarse_.size());
  const double sharp = coarse_grad > 0.5 ? grad / coarse_grad : 0;
  res_.mean = mean;
  res_.contrast = sd;
  res_.sharpness = sharp;
  // The camera's own baselines are taken while learning and over its first ten frames (the noise
  // estimate that sharpness depends on needs a few frames to settle).
  if (!learned_ || frames_ <= 10) {
    base_std_ = sd;
    base_sharp_ = sharp;
    adopt_reference();
    return;
  }
  const bool dark = mean < 25 && sd < 15;
  const bool bright = mean > 230 && sd < 15;
  const bool covered = base_std_ > 8 && sd < 0.3 * base_std_;
  // Focus is judged only when the view has contrast well above the noise (not in the dark).
  const bool judge_focus = sd > 10 * std::max(noise_, 0.5);
  const bool defocused = !covered && !dark && !bright && judge_focus && base_sharp_ > 0 && sharp < 0.7 * base_sharp_;
  if (frames_ % 4 == 0) similarity_ = structure_similarity();  // it changes slowly; it costs
  const bool turned = !covered && !dark && !bright && !defocused && similarity_ < 0.32;
  const bool cond[5] = {dark, bright, covered, defocused, turned};
  std::uint32_t flags = 0;
  for (int i = 0; i < 5; ++i) {
    tamper_for_[static_cast<std::size_t>(i)] = cond[i] ? tamper_for_[static_cast<std::size_t>(i)] + dt : 0;
    if (cond[i] && tamper_for_[static_cast<std::size_t>(i)] >= cfg_.tamper_s) flags |= 1u << i;
  }
  if (flags & kSceneChanged) {
    scene_changed_for_ += dt;
    if (scene_changed_for_ >= cfg_.scene_adopt_s) {  // the camera stays where it was turned to
      adopt_reference();
      base_std_ = sd;
      base_sharp_ = sharp;
      scene_changed_for_ = 0;
      tamper_for_[4] = 0;
    }
  } else {
    scene_changed_for_ = 0;
  }
  res_.tamper = flags;
  const bool any = dark || bright || covered || defocused || turned;
  if (!any && mean >= 30 && judge_focus) {
    // Baselines follow the camera slowly (about a minute), only while nothing is wrong and the
    // view is bright enough to measure.
    const double a = std::min(1.0, dt / 60.0);
    base_std_ += (sd - base_std_) * a;
    base_sharp_ += (sharp - base_sharp_) * a;
    // The reference follows with a time constant of about 30 s (a power of two of frames).
    const int k = std::clamp(static_cast<int>(std::lround(std::log2(30.0 / std::max(dt_, 1e-3)))), 0, 15);
    for (std::size_t i = 0; i < ref_.size(); ++i)
      ref_[i] = static_cast<std::uint16_t>(ref_[i] + (((coarse_[i] << 8) - static_cast<int>(ref_[i])) >> k));
  }
}

const Result& Detector::process(const std::uint8_t* plane, std::ptrdiff_t stride, double time_s) {
  if (!plane) throw std::invalid_argument("no plane");
  if (stride < width_) throw std::invalid_argument("stride is smaller than the width");
  if (!std::isfinite(time_s)) throw std::invalid_argument("time_s must be finite");
  if (frames_ && time_s < last_s_)
    throw std::invalid_argument("time went backwards: " + std::to_string(time_s) + " after " +
                                std::to_string(last_s_));
  downscale(k_, plane, stride, width_, height_, f_, cur_.data(), acc_.data());

  // Frame interval (paces learning, persistence in seconds and tamper times).
  if (frames_) {
    const double dt = time_s - last_s_;
    if (dt > 0) dt_ = frames_ == 1 ? dt : dt_ + (std::min(dt, 5.0) - dt_) * 0.1;
  } else {
    start_s_ = time_s;
  }
  const double dt = frames_ ? std::clamp(time_s - last_s_, 0.0, 5.0) : 0.0;
  last_s_ = time_s;
  ++frames_;

  res_.time_s = time_s;
  res_.motion = false;
  res_.score = 0;
  res_.blobs.clear();
  res_.suppressed.clear();
  res_.shaking = false;
  res_.shift_x = res_.shift_y = 0;
  res_.grid.fill(0);
  for (auto& z : res_.zones) {
    z.hit = z.active = false;
    z.changed_fraction = 0;
    z.area = 0;
  }

  if (frames_ == 1) {
    rebaseline();
    std::copy(cur_.begin(), cur_.end(), prev_.begin());
    tamper_checks(0);
    res_.suppressed = "learning";
    return res_;
  }
  const bool learning = time_s - start_s_ < cfg_.learn_s;
  const int frames_per_bg = std::max(1, round_int(cfg_.background_s / std::max(dt_, 1e-3)));
  const int shift = learning || settle_ > 0 ? 1 : std::clamp(static_cast<int>(std::lround(std::log2(frames_per_bg))), 1, 12);
  if (!learning && !learned_) learned_ = true;

  double move_x = 0, move_y = 0;
  const bool jitter = global_motion(move_x, move_y) && std::hypot(move_x, move_y) > 0.2;
  // The noise level is measured on quiet frames only: a big change would read as noise.
  if (res_.changed_fraction < 0.1 && !jitter) estimate_noise();
  // Slow light changes of the whole view (dusk, clouds, the camera's exposure): the background
  // follows the view's overall gain at once instead of lagging behind it.
  if (!jitter) follow_gain();
  const int t = std::clamp(round_int(class_k_[kDefaultClass] * std::max(noise_, 0.5)), cfg_.min_threshold, 254);
  if (t != thr_global_) rebuild_thresholds();
  res_.noise = noise_;
  res_.threshold = thr_global_;
  tamper_checks(dt);

  // Raw mask against the background range.
  std::uint64_t changed = k_.bg_range_mask(cur_.data(), bg8_.data(), thr_.data(), raw_.data(), aw_, ah_, scratch_.data());
  res_.changed_fraction = active_px_ ? static_cast<double>(changed) / static_cast<double>(active_px_) : 0;

  bool learn_frame = true;
  // Updates the background where `moving` is 0 (everywhere when it is null) and ends the frame.
  auto finish = [&](bool update_background, const std::vector<std::uint8_t>* moving) {
    const std::uint8_t* hold = moving ? moving->data() : zeros_.data();
    if (update_background && shift == 1) {
      k_.background_update(cur_.data(), hold, bg_.data(), bg8_.data(), n_, 1);
    } else if (update_background) {
      // Half the rows each frame at twice the rate: the same time constant for half the memory
      // traffic (the background is the largest state: 3 bytes a pixel).
      const std::size_t w = static_cast<std::size_t>(aw_);
      for (std::size_t y = frames_ & 1; y < static_cast<std::size_t>(ah_); y += 2)
        k_.background_update(cur_.data() + y * w, hold + y * w, bg_.data() + y * w, bg8_.data() + y * w, w,
                             shift - 1);
    }
    std::swap(prev_, cur_);
    return std::cref(res_);
  };

  if (learning) {
    res_.suppressed = "learning";
    return finish(true, nullptr);
  }
  if (was_tampered_ && !res_.tamper) {
    settle_ = std::max(2, round_int(1.0 / std::max(dt_, 1e-3)));
    settle_reason_ = "tamper";
  }
  was_tampered_ = res_.tamper != 0;
  if (res_.tamper) {
    // While the view is tampered with, no motion is reported; the background follows the view so
    // that analysis resumes as soon as the view is back.
    res_.suppressed = "tamper";
    for (auto& z : zones_) z.consecutive = 0;
    if (res_.changed_fraction > cfg_.global_change) rebaseline();
    return finish(true, nullptr);
  }
  const int settle_frames = std::max(2, round_int(1.0 / std::max(dt_, 1e-3)));
  if (res_.changed_fraction > cfg_.global_change) {
    res_.suppressed = "global_change";
    rebaseline();
    settle_ = settle_frames;
    settle_reason_ = "global_change";
    return finish(false, nullptr);
  }
  if (settle_ > 0 && settle_-- > 0) {
    // For a second after a global change or tampering the view settles (a lamp warming up, a
    // lens refocusing): the whole background follows it quickly and nothing is reported.
    res_.suppressed = settle_reason_;
    for (auto& z : zones_) z.consecutive = 0;
    return finish(true, nullptr);
  }

  // Sub-pixel shake: do not learn the background from a frame that moved as a whole.
  if (jitter) {
    res_.shaking = true;
    learn_frame = false;
  }
  // Whole-pixel shake: searched when the view moved since the last frame, or when much of it
  // changed (a camera knocked aside and left there); not for every frame with a walker in it.
  if (cfg_.shake_compensation && res_.changed_fraction > 0.01 && (jitter || res_.changed_fraction > 0.05)) {
    int dx = 0, dy = 0;
    if (estimate_shake(dx, dy)) {
      res_.shaking = true;
      res_.shift_x = dx;
      res_.shift_y = dy;
      shifted_mask(dx, dy);
      learn_frame = false;  // a shaken frame would smear the background
    }
  }

  // Temporal filter: changed now and within two pixels of a change in the previous frame.
  // Afterwards prev_raw_ holds this frame's raw mask (for the next frame) and raw_ the filtered one.
  if (cfg_.temporal_filter) {
    // Within two pixels (a 5x5 dilation of the previous mask: a walking leg moves that far
    // between analysed frames, a raindrop much further). Row by row, only where this frame
    // changed: two 3x3 dilations of the window of rows y-2..y+2, each exact on its inner rows.
    const std::size_t w = static_cast<std::size_t>(aw_);
    std::size_t removed = 0;  // pixels the filter took away, marked in gone_
    for (int y = 0; y < ah_; ++y) {
      const std::size_t row = static_cast<std::size_t>(y) * w;
      gone_rows_[static_cast<std::size_t>(y)] = 0;
      if (!any_nonzero(raw_.data() + row, w)) {
        std::memset(tmp_.data() + row, 0, w);
        continue;
      }
      const int top = std::max(0, y - 2), bottom = std::min(ah_, y + 3);
      std::uint8_t* once = clean_.data();           // rows top..bottom, dilated once
      std::uint8_t* twice = clean_.data() + 5 * w;  // rows top1..bottom1, dilated twice
      k_.minmax3x3(prev_raw_.data() + static_cast<std::size_t>(top) * w, aw_, bottom - top, nullptr, once,
                   scratch_.data());
      const int top1 = std::max(0, y - 1), bottom1 = std::min(ah_, y + 2);
      k_.minmax3x3(once + static_cast<std::size_t>(top1 - top) * w, aw_, bottom1 - top1, nullptr, twice,
                   scratch_.data());
      and_into(tmp_.data() + row, raw_.data() + row, twice + static_cast<std::size_t>(y - top1) * w, w);
      const std::size_t gone = and_not_into(gone_.data() + row, raw_.data() + row, tmp_.data() + row, w);
      gone_rows_[static_cast<std::size_t>(y)] = gone != 0;
      removed += gone;
    }
    rescue_large_blobs(removed);
    std::swap(prev_raw_, raw_);
    std::swap(raw_, tmp_);
  } else {
    std::copy(raw_.begin(), raw_.end(), prev_raw_.begin());
  }
  // Despeckle: 3x3 opening.
  if (cfg_.despeckle) {
    k_.minmax3x3(raw_.data(), aw_, ah_, tmp_.data(), nullptr, scratch_.data());
    k_.minmax3x3(tmp_.data(), aw_, ah_, nullptr, clean_.data(), scratch_.data());
  } else {
    std::swap(raw_, clean_);  // raw_ is not needed any more this frame
  }
  // Flicker filter: count switch-ons per pixel (+32 each), decaying by 1 per frame; pixels that
  // switched on more than 3 times in the last ~100 frames are ignored.
  if (cfg_.flicker_filter) {
    // Only rows with something in them: a switch-on now, a mask to remember, activity to decay.
    const std::size_t w = static_cast<std::size_t>(aw_);
    for (std::size_t y = 0; y < static_cast<std::size_t>(ah_); ++y) {
      std::uint8_t* cl = clean_.data() + y * w;
      if (!flicker_rows_[y] && !any_nonzero(cl, w)) continue;
      std::uint8_t* act = activity_.data() + y * w;
      k_.flicker_update(act, cl, prev_clean_.data() + y * w, w);
      flicker_rows_[y] = any_nonzero(act, w) || any_nonzero(prev_clean_.data() + y * w, w);
    }
  } else {
    std::copy(clean_.begin(), clean_.end(), prev_clean_.begin());
  }

  const std::size_t nruns = label(clean_.data());
  if (nruns > max_runs_) {
    res_.suppressed = "global_change";  // a mask of noise: the view changed as a whole
    rebaseline();
    return finish(false, nullptr);
  }

  // Blobs: at least the smallest zone minimum; light changes are dropped and re-learnt at once.
  int min_px = 1 << 30;
  for (const auto& z : zones_) min_px = std::min(min_px, z.min_area_px);
  std::fill(blob_zone_px_.begin(), blob_zone_px_.end(), 0);
  const std::size_t nz = zones_.size();
  std::size_t nblobs = 0;
  bool light = false;
  for (std::size_t i = 0; i < nruns; ++i) {
    blob_of_root_[i] = -1;
    if (runs_[i].parent != static_cast<int>(i)) continue;
    const Stats& s = stats_[i];
    if (s.area < min_px) continue;
    // One analysis pixel thick: the edge of a line that moved a little (a kerb or a parking
    // bay's marking after the camera shook), not a person or a vehicle.
    if (s.y1 - s.y0 < 2 || s.x1 - s.x0 < 2) continue;
    if (illumination_like(s)) {
      light = true;
      blob_of_root_[i] = -2;
      continue;
    }
    if (nblobs == kMaxBlobs) continue;
    blob_of_root_[i] = static_cast<int>(nblobs++);
  }
  double blob_px = 0;
  for (std::size_t i = 0; i < nruns; ++i) {
    const Run& r = runs_[i];
    const int b = blob_of_root_[static_cast<std::size_t>(r.parent)];
    const std::size_t row = static_cast<std::size_t>(r.y) * static_cast<std::size_t>(aw_);
    if (b == -2) {  // light: take it into the background now
      learn_now(row + static_cast<std::size_t>(r.x0), row + static_cast<std::size_t>(r.x1));
      continue;
    }
    if (b < 0) continue;
    for (std::size_t z = 0; z < nz; ++z) {
      const ZoneState& zs = zones_[z];
      int px = 0;
      for (int k = zs.row_start[static_cast<std::size_t>(r.y)]; k < zs.row_start[static_cast<std::size_t>(r.y) + 1]; ++k) {
        const Span& sp = zs.spans[static_cast<std::size_t>(k)];
        px += std::max(0, std::min(sp.x1, r.x1) - std::max(sp.x0, r.x0));
      }
      blob_zone_px_[static_cast<std::size_t>(b) * nz + z] += px;
    }
    // Grid cells the run covers.
    const int gy = r.y * kGrid / ah_;
    for (int gx = r.x0 * kGrid / aw_; gx <= (r.x1 - 1) * kGrid / aw_; ++gx) {
      const int bit = gy * kGrid + gx;
      res_.grid[static_cast<std::size_t>(bit >> 3)] |= static_cast<std::uint8_t>(0x80 >> (bit & 7));
    }
  }
  // A blob also counts in full for a zone that holds its ground point (the middle of its lowest
  // row): zones are drawn on the ground, and a person's legs may be too faint to reach into one.
  for (std::size_t i = 0; i < nruns; ++i) {
    const int b = blob_of_root_[i];
    if (b < 0 || runs_[i].parent != static_cast<int>(i)) continue;
    const Stats& st = stats_[i];
    const int gx = static_cast<int>(static_cast<double>(st.sx) / (2.0 * st.area));
    const std::size_t gy = static_cast<std::size_t>(st.y1 - 1);
    for (std::size_t z = 0; z < nz; ++z) {
      const ZoneState& zs = zones_[z];
      for (int k = zs.row_start[gy]; k < zs.row_start[gy + 1]; ++k) {
        const Span& sp = zs.spans[static_cast<std::size_t>(k)];
        if (gx < sp.x0 || gx >= sp.x1) continue;
        int& px = blob_zone_px_[static_cast<std::size_t>(b) * nz + z];
        px = std::max(px, st.area);
      }
    }
  }
  if (light) res_.suppressed = "illumination";

  const double scale = static_cast<double>(f_) * f_;
  for (std::size_t i = 0; i < nruns; ++i) {
    const int b = blob_of_root_[i];
    if (b < 0 || runs_[i].parent != static_cast<int>(i)) continue;
    const Stats& s = stats_[i];
    blob_px += s.area;
    Blob out;
    out.x = s.x0 * f_;
    out.y = s.y0 * f_;
    out.width = (s.x1 - s.x0) * f_;
    out.height = (s.y1 - s.y0) * f_;
    out.area = round_int(s.area * scale);
    out.cx = (static_cast<double>(s.sx) / (2.0 * s.area) + 0.5) * f_;
    out.cy = (static_cast<double>(s.sy) / s.area + 0.5) * f_;
    res_.blobs.push_back(out);
  }
  // Blobs are listed in label order; report the largest first.
  std::sort(res_.blobs.begin(), res_.blobs.end(), [](const Blob& a, const Blob& b) { return a.area > b.area; });

  for (std::size_t z = 0; z < nz; ++z) {
    ZoneState& zs = zones_[z];
    ZoneHit& hit = res_.zones[z];
    // Only blobs of at least the zone's minimum area count for it.
    int px = 0;
    for (std::size_t i = 0; i < nruns; ++i) {
      const int bi = blob_of_root_[i];
      if (bi < 0 || runs_[i].parent != static_cast<int>(i) || stats_[i].area < zs.min_area_px) continue;
      px += blob_zone_px_[static_cast<std::size_t>(bi) * nz + z];
    }
    hit.area = round_int(px * scale);
    hit.changed_fraction = zs.area_px ? static_cast<double>(px) / zs.area_px : 0;
    hit.active = px > 0 && hit.changed_fraction >= zs.cfg.min_fraction;
    zs.consecutive = hit.active ? zs.consecutive + 1 : 0;
    hit.consecutive = zs.consecutive;
    hit.hit = zs.consecutive >= zs.persistence;
    res_.motion = res_.motion || hit.hit;
  }
  res_.score = active_px_ ? blob_px / static_cast<double>(active_px_) : 0;

  // Changed pixels that stay still are absorbed after static_s (a parked car, a moved bench).
  const int static_frames = std::max(1, round_int(cfg_.static_s / std::max(dt_, 1e-3)));
  age_step_ = std::max(1, static_frames / 25);  // ages count in steps: 25 to 255 of them
  const int limit = std::min(255, (static_frames + age_step_ - 1) / age_step_);
  if (++age_tick_ >= age_step_) {
    age_tick_ = 0;
    const std::uint8_t still = static_cast<std::uint8_t>(std::max(2, thr_global_));
    const std::uint8_t* c = cur_.data();
    std::uint8_t* age = age_.data();
    // Only rows with moving pixels now or ages to reset.
    const std::size_t w = static_cast<std::size_t>(aw_);
    for (std::size_t y = 0; y < static_cast<std::size_t>(ah_); ++y) {
      const std::uint8_t* moving = prev_raw_.data() + y * w;
      if (!age_rows_[y] && !any_nonzero(moving, w)) continue;
      const std::uint8_t top = k_.age_update(age + y * w, c + y * w, prev_.data() + y * w, moving, still, w);
      age_rows_[y] = top != 0;
      if (top < limit) continue;
      for (std::size_t i = y * w; i < (y + 1) * w; ++i) {  // absorbed into the background
        if (age[i] < limit) continue;
        learn_now(i, i + 1);
        age[i] = 0;
      }
    }
  }
  return finish(learn_frame, &prev_raw_);
}

}  // namespace vms::motion
