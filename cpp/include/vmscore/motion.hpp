// Motion analysis of one camera's luma: background model, noise-adapted threshold, despeckle,
// blobs, zones and masks, suppression of illumination changes, camera shake, rain and swaying
// trees, and tamper detection. One Detector per camera; process() allocates nothing once built.
// Not thread-safe: a detector belongs to one thread at a time (many detectors run in parallel).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vmscore/motion_kernels.hpp"

namespace vms::motion {

struct ZoneConfig {
  std::string name;
  std::vector<std::pair<double, double>> polygon;  // relative coordinates, 0..1 of width / height
  bool exclude = false;                            // a mask: never analysed
  double sensitivity = -1;                         // 0..1; < 0: the detector's
  double min_area = -1;                            // fraction of the image; < 0: the detector's
  double min_fraction = 0;                         // fraction of the zone's own area changed
  int persistence = -1;                            // consecutive frames; < 0: the detector's
};

struct Config {
  int analysis_width = 320;       // downscale by an integer factor to at most this width; 0: none
  double sensitivity = 0.6;       // 0..1: threshold = max(min_threshold, k * noise), k = 6 - 4 * s
  int min_threshold = 8;          // smallest luma difference that counts
  double min_area = 0.0005;       // smallest blob, fraction of the image
  int persistence = 2;            // consecutive frames a zone must see motion
  double background_s = 4;        // time constant of the background average
  double static_s = 10;           // changed but still for this long: absorbed (a parked car)
  double learn_s = 2;             // initial learning, no results
  double global_change = 0.45;    // changed fraction that means a global change: re-baseline
  double illumination = 0.1;      // ratio-gradient / ratio-deviation below this: light, not object
  bool despeckle = false;         // 3x3 opening of the mask before blobs
  bool temporal_filter = true;    // a pixel must change in two consecutive frames (rain, snow)
  bool flicker_filter = true;     // pixels that keep toggling are ignored (trees, flags, water)
  bool shake_compensation = true; // estimate and compensate a global shift of up to 2 pixels
  double tamper_s = 3;            // a tamper condition must hold this long
  double scene_adopt_s = 60;      // a changed scene is adopted as the new reference after this
  std::vector<ZoneConfig> zones;  // include zones (none: the whole image) and masks
};

struct Blob {
  int x = 0, y = 0, width = 0, height = 0;  // box in input pixels
  int area = 0;                             // changed pixels, in input pixels
  double cx = 0, cy = 0;                    // centroid in input pixels
};

struct ZoneHit {
  std::string name;
  bool hit = false;        // motion confirmed (persistence reached)
  bool active = false;     // motion in this frame
  double changed_fraction = 0;
  int area = 0;            // input pixels of qualifying blobs inside the zone
  int consecutive = 0;     // frames in a row with motion
};

enum Tamper : std::uint32_t {
  kTooDark = 1,
  kTooBright = 2,
  kCovered = 4,
  kDefocused = 8,
  kSceneChanged = 16,
};

constexpr int kGrid = 16;

struct Result {
  double time_s = 0;
  bool motion = false;
  double score = 0;             // fraction of the analysed image in qualifying blobs
  double changed_fraction = 0;  // fraction of analysed pixels above threshold (before filters)
  std::vector<Blob> blobs;      // qualifying blobs (at least one zone's minimum area)
  std::vector<ZoneHit> zones;   // one per include zone (or "frame")
  std::string suppressed;       // "", learning, global_change, illumination, camera_shake, tamper
  std::uint32_t tamper = 0;     // Tamper bits
  bool shaking = false;
  int shift_x = 0, shift_y = 0;  // estimated global shift, analysis pixels
  double noise = 0;              // noise estimate (luma steps, analysis resolution)
  int threshold = 0;
  double mean = 0, contrast = 0, sharpness = 0;
  std::array<std::uint8_t, kGrid * kGrid / 8> grid{};  // 16x16 bits, row-major, MSB first
};

class Detector {
 public:
  Detector(int width, int height, Config config);

  // Analyses one frame of the configured size. plane points at the top-left pixel; stride is the
  // row pitch in bytes. time_s must not go backwards (it paces learning and persistence).
  const Result& process(const std::uint8_t* plane, std::ptrdiff_t stride, double time_s);

  void reset();
  int width() const { return width_; }
  int height() const { return height_; }
  int analysis_width() const { return aw_; }
  int analysis_height() const { return ah_; }
  int factor() const { return f_; }
  const Config& config() const { return cfg_; }
  const Result& result() const { return res_; }
  // The analysis-resolution images (for display and debugging): current frame, background, mask.
  const std::vector<std::uint8_t>& current() const { return cur_; }
  const std::vector<std::uint8_t>& background() const { return bg8_; }
  const std::vector<std::uint8_t>& mask() const { return clean_; }

 private:
  struct Run {
    int y, x0, x1;  // [x0, x1)
    int parent;
  };
  struct Stats {
    int area, x0, y0, x1, y1;
    std::int64_t sx, sy;
  };
  struct Span {
    int x0, x1;
  };
  struct ZoneState {
    ZoneConfig cfg;
    int min_area_px = 0;  // analysis pixels
    int persistence = 1;
    int area_px = 0;
    std::vector<int> row_start;  // spans of row y: spans[row_start[y] .. row_start[y + 1])
    std::vector<Span> spans;
    int consecutive = 0;
  };

  void build_zones();
  void rebuild_thresholds();
  void rebaseline();
  void learn_now(std::size_t begin, std::size_t end);  // background = frame over [begin, end)
  void estimate_noise();
  void follow_gain();
  bool estimate_shake(int& dx, int& dy);
  void shifted_mask(int dx, int dy);
  std::size_t label(const std::uint8_t* mask, const std::uint8_t* rows = nullptr);
  void rescue_large_blobs(std::size_t removed);
  bool illumination_like(const Stats& s) const;
  void tamper_checks(double dt);
  double structure_similarity() const;
  void adopt_reference();
  bool global_motion(double& dx, double& dy) const;

  int width_, height_;
  Config cfg_;
  const Kernels& k_;
  int f_, aw_, ah_;
  std::size_t n_;
  int cw_, ch_, cf_;  // coarse image for scene checks
  int sample_step_ = 1;

  std::vector<std::uint8_t> cur_, prev_, bg8_, lo_, hi_, thr_, raw_, prev_raw_, tmp_, clean_,
      prev_clean_, activity_, age_, zeros_, klass_, coarse_, scratch_, gone_, gone_rows_;
  std::vector<std::uint16_t> ref_;  // long-term reference of the coarse image, 8.8 fixed point
  std::vector<std::uint16_t> bg_, acc_;
  std::vector<std::uint8_t> flicker_rows_, age_rows_;  // rows with state to update (1) or none (0)
  std::array<std::uint8_t, 256> class_thr_{};
  std::vector<double> class_k_;  // noise multiplier per class (1..)
  std::vector<ZoneState> zones_;
  std::size_t active_px_ = 0;
  std::vector<Run> runs_;
  std::vector<Stats> stats_;
  std::vector<int> blob_of_root_;
  std::vector<int> blob_zone_px_;
  std::size_t max_runs_;

  Result res_;
  std::uint64_t frames_ = 0;
  double start_s_ = 0, last_s_ = 0, dt_ = 0.2;
  double noise_ = -1;
  int thr_global_ = -1;
  int settle_ = 0;
  const char* settle_reason_ = "";
  bool was_tampered_ = false;
  int age_step_ = 1, age_tick_ = 0;
  double base_std_ = 0, base_sharp_ = 0;
  std::array<double, 5> tamper_for_{};  // seconds each condition has held
  double scene_changed_for_ = 0;
  double similarity_ = 1;  // of the coarse image to the reference, measured every 4th frame
  bool learned_ = false;
};

}  // namespace vms::motion
