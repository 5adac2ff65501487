// Bindings of motion analysis: MotionDetectorCore (one camera's detector), its configuration and
// results, and MotionKernels (each SIMD level's kernels, for tests and benchmarks). Planes are any
// buffer of bytes: a 2-D array (rows may be padded) or a 1-D buffer with an explicit stride.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "common.hpp"
#include "vmscore/motion.hpp"

namespace vms::bind {
namespace {

using namespace vms::motion;

// A plane of bytes: pointer, stride, width, height, pinned while the GIL is released.
struct Plane {
  py::buffer_info info;
  const std::uint8_t* data = nullptr;
  std::ptrdiff_t stride = 0;
  int width = 0, height = 0;
};

Plane plane_of(const py::buffer& b, std::ptrdiff_t stride_hint, int width, int height, const char* what) {
  Plane p;
  p.info = b.request();
  if (p.info.itemsize != 1) throw py::value_error(std::string(what) + " must hold bytes (uint8)");
  p.data = static_cast<const std::uint8_t*>(p.info.ptr);
  if (p.info.ndim == 2) {
    if (p.info.strides[1] != 1) throw py::value_error(std::string(what) + " must have contiguous rows");
    p.height = static_cast<int>(p.info.shape[0]);
    p.width = static_cast<int>(p.info.shape[1]);
    p.stride = p.info.strides[0];
    if (p.stride < p.width) throw py::value_error(std::string(what) + " has overlapping or reversed rows");
    if (width >= 0 && (p.width != width || p.height != height))
      throw py::value_error(std::string(what) + " is " + std::to_string(p.width) + "x" + std::to_string(p.height) +
                            ", expected " + std::to_string(width) + "x" + std::to_string(height));
  } else if (p.info.ndim == 1) {
    if (width < 0) throw py::value_error(std::string(what) + " must be a 2-D array");
    if (p.info.strides[0] != 1) throw py::value_error(std::string(what) + " must be contiguous");
    p.width = width;
    p.height = height;
    p.stride = stride_hint > 0 ? stride_hint : width;
    if (p.stride < width) throw py::value_error("stride is smaller than the width");
    const auto need = static_cast<py::ssize_t>(p.stride) * (height - 1) + width;
    if (p.info.shape[0] < need)
      throw py::value_error(std::string(what) + " holds " + std::to_string(p.info.shape[0]) + " bytes, " +
                            std::to_string(need) + " needed for " + std::to_string(width) + "x" +
                            std::to_string(height) + " with stride " + std::to_string(p.stride));
  } else {
    throw py::value_error(std::string(what) + " must be a 2-D array or a 1-D buffer");
  }
  if (p.width <= 0 || p.height <= 0) throw py::value_error(std::string(what) + " is empty");
  return p;
}

Plane plane2d(const py::buffer& b, const char* what) { return plane_of(b, 0, -1, -1, what); }

py::array_t<std::uint8_t> image(int width, int height) { return py::array_t<std::uint8_t>({height, width}); }

// A contiguous copy of a plane (the contiguous kernels' input).
std::vector<std::uint8_t> packed(const Plane& p) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(p.width) * static_cast<std::size_t>(p.height));
  for (int y = 0; y < p.height; ++y)
    std::memcpy(out.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(p.width), p.data + y * p.stride,
                static_cast<std::size_t>(p.width));
  return out;
}

void same_size(const Plane& a, const Plane& b) {
  if (a.width != b.width || a.height != b.height) throw py::value_error("images differ in size");
}

std::vector<std::string> tamper_names(std::uint32_t flags) {
  static const char* const names[] = {"too_dark", "too_bright", "covered", "defocused", "scene_changed"};
  std::vector<std::string> out;
  for (int i = 0; i < 5; ++i)
    if (flags & (1u << i)) out.emplace_back(names[i]);
  return out;
}

const Kernels& kernels_named(const std::string& name) {
  for (simd::Level l : {simd::Level::Scalar, simd::Level::Sse2, simd::Level::Avx2, simd::Level::Avx512, simd::Level::Neon}) {
    if (name != simd::name(l)) continue;
    const Kernels* k = kernels_for(l);
    if (!k) throw py::value_error("SIMD level '" + name + "' is not available on this CPU or build");
    return *k;
  }
  throw py::value_error("unknown SIMD level '" + name + "' (scalar, sse2, avx2, avx512, neon)");
}

}  // namespace

void register_motion(py::module_& m) {
  py::class_<ZoneConfig>(m, "MotionZoneConfig", "A zone or mask of a motion detector (see vmscore.motion).")
      .def(py::init<>())
      .def_readwrite("name", &ZoneConfig::name)
      .def_readwrite("polygon", &ZoneConfig::polygon)
      .def_readwrite("exclude", &ZoneConfig::exclude)
      .def_readwrite("sensitivity", &ZoneConfig::sensitivity)
      .def_readwrite("min_area", &ZoneConfig::min_area)
      .def_readwrite("min_fraction", &ZoneConfig::min_fraction)
      .def_readwrite("persistence", &ZoneConfig::persistence);

  py::class_<Config>(m, "MotionConfig", "Settings of a motion detector (see vmscore.motion.MotionSettings).")
      .def(py::init<>())
      .def_readwrite("analysis_width", &Config::analysis_width)
      .def_readwrite("sensitivity", &Config::sensitivity)
      .def_readwrite("min_threshold", &Config::min_threshold)
      .def_readwrite("min_area", &Config::min_area)
      .def_readwrite("persistence", &Config::persistence)
      .def_readwrite("background_s", &Config::background_s)
      .def_readwrite("static_s", &Config::static_s)
      .def_readwrite("learn_s", &Config::learn_s)
      .def_readwrite("global_change", &Config::global_change)
      .def_readwrite("illumination", &Config::illumination)
      .def_readwrite("despeckle", &Config::despeckle)
      .def_readwrite("temporal_filter", &Config::temporal_filter)
      .def_readwrite("flicker_filter", &Config::flicker_filter)
      .def_readwrite("shake_compensation", &Config::shake_compensation)
      .def_readwrite("tamper_s", &Config::tamper_s)
      .def_readwrite("scene_adopt_s", &Config::scene_adopt_s)
      .def_readwrite("zones", &Config::zones);

  py::class_<Blob>(m, "MotionBlob", "A connected region of motion, in input pixels.")
      .def_readonly("x", &Blob::x)
      .def_readonly("y", &Blob::y)
      .def_readonly("width", &Blob::width)
      .def_readonly("height", &Blob::height)
      .def_readonly("area", &Blob::area)
      .def_readonly("cx", &Blob::cx)
      .def_readonly("cy", &Blob::cy)
      .def("__repr__", [](const Blob& b) {
        return "<MotionBlob " + std::to_string(b.width) + "x" + std::to_string(b.height) + "+" + std::to_string(b.x) +
               "+" + std::to_string(b.y) + " area " + std::to_string(b.area) + ">";
      });

  py::class_<ZoneHit>(m, "MotionZoneHit", "One zone's state in one frame.")
      .def_readonly("name", &ZoneHit::name)
      .def_readonly("hit", &ZoneHit::hit, "Motion confirmed: the zone's persistence is reached.")
      .def_readonly("active", &ZoneHit::active, "Motion in this frame.")
      .def_readonly("changed_fraction", &ZoneHit::changed_fraction)
      .def_readonly("area", &ZoneHit::area)
      .def_readonly("consecutive", &ZoneHit::consecutive)
      .def("__repr__", [](const ZoneHit& z) {
        return "<MotionZoneHit " + z.name + (z.hit ? " hit" : (z.active ? " active" : " quiet")) + ">";
      });

  py::class_<Result>(m, "MotionResult", "What a motion detector found in one frame.")
      .def_readonly("time_s", &Result::time_s)
      .def_readonly("motion", &Result::motion)
      .def_readonly("score", &Result::score)
      .def_readonly("changed_fraction", &Result::changed_fraction)
      .def_readonly("blobs", &Result::blobs)
      .def_readonly("zones", &Result::zones)
      .def_readonly("suppressed", &Result::suppressed)
      .def_property_readonly("tamper", [](const Result& r) { return tamper_names(r.tamper); })
      .def_readonly("shaking", &Result::shaking)
      .def_property_readonly("shift", [](const Result& r) { return std::make_pair(r.shift_x, r.shift_y); })
      .def_readonly("noise", &Result::noise)
      .def_readonly("threshold", &Result::threshold)
      .def_readonly("mean", &Result::mean)
      .def_readonly("contrast", &Result::contrast)
      .def_readonly("sharpness", &Result::sharpness)
      .def_property_readonly("grid", [](const Result& r) {
        return py::bytes(reinterpret_cast<const char*>(r.grid.data()), r.grid.size());
      })
      .def("__repr__", [](const Result& r) {
        return "<MotionResult t=" + std::to_string(r.time_s) + (r.motion ? " motion" : " quiet") + " blobs=" +
               std::to_string(r.blobs.size()) + (r.suppressed.empty() ? "" : " suppressed=" + r.suppressed) + ">";
      });

  py::class_<Detector>(m, "MotionDetectorCore", "One camera's motion detector (see vmscore.motion.MotionDetector).")
      .def(py::init<int, int, Config>(), py::arg("width"), py::arg("height"), py::arg("config"))
      .def(
          "process",
          [](Detector& d, const py::buffer& plane, double time_s, std::ptrdiff_t stride) {
            Plane p = plane_of(plane, stride, d.width(), d.height(), "plane");
            {
              py::gil_scoped_release release;
              d.process(p.data, p.stride, time_s);
            }
            return d.result();
          },
          py::arg("plane"), py::arg("time_s"), py::arg("stride") = 0)
      .def("reset", &Detector::reset)
      .def_property_readonly("width", &Detector::width)
      .def_property_readonly("height", &Detector::height)
      .def_property_readonly("analysis_size", [](const Detector& d) {
        return std::make_pair(d.analysis_width(), d.analysis_height());
      })
      .def_property_readonly("factor", &Detector::factor)
      .def("images", [](const Detector& d) {
        // Copies of the analysis images: frame, background, final mask.
        auto copy = [&](const std::vector<std::uint8_t>& v) {
          auto a = image(d.analysis_width(), d.analysis_height());
          std::memcpy(a.mutable_data(), v.data(), v.size());
          return a;
        };
        return py::make_tuple(copy(d.current()), copy(d.background()), copy(d.mask()));
      });

  py::class_<Kernels>(m, "MotionKernels", "The motion kernels of one SIMD level (for tests and benchmarks).")
      .def(py::init([](const std::string& level) { return kernels_named(level); }), py::arg("level"))
      .def_property_readonly("level", [](const Kernels& k) { return std::string(simd::name(k.level)); })
      .def("absdiff_count",
           [](const Kernels& k, const py::buffer& a, const py::buffer& b, int t) {
             if (t < 0 || t > 255) throw py::value_error("threshold must be 0..255");
             Plane pa = plane2d(a, "a"), pb = plane2d(b, "b");
             same_size(pa, pb);
             py::gil_scoped_release release;
             return k.absdiff_count(pa.data, pa.stride, pb.data, pb.stride, pa.width, pa.height,
                                    static_cast<std::uint8_t>(t));
           })
      .def("sad",
           [](const Kernels& k, const py::buffer& a, const py::buffer& b) {
             Plane pa = plane2d(a, "a"), pb = plane2d(b, "b");
             same_size(pa, pb);
             py::gil_scoped_release release;
             return k.sad(pa.data, pa.stride, pb.data, pb.stride, pa.width, pa.height);
           })
      .def("gradient_energy",
           [](const Kernels& k, const py::buffer& a) {
             Plane p = plane2d(a, "image");
             py::gil_scoped_release release;
             return k.gradient_energy(p.data, p.stride, p.width, p.height);
           })
      .def("range_mask",
           [](const Kernels& k, const py::buffer& cur, const py::buffer& lo, const py::buffer& hi, const py::buffer& thr) {
             Plane c = plane2d(cur, "cur"), l = plane2d(lo, "lo"), h = plane2d(hi, "hi"), t = plane2d(thr, "thr");
             same_size(c, l);
             same_size(c, h);
             same_size(c, t);
             auto vc = packed(c), vl = packed(l), vh = packed(h), vt = packed(t);
             auto mask = image(c.width, c.height);
             std::uint8_t* out = mask.mutable_data();
             std::uint64_t n;
             {
               py::gil_scoped_release release;
               n = k.range_mask(vc.data(), vl.data(), vh.data(), vt.data(), out, vc.size());
             }
             return py::make_tuple(mask, n);
           })
      .def("bg_range_mask",
           [](const Kernels& k, const py::buffer& cur, const py::buffer& bg, const py::buffer& thr) {
             Plane c = plane2d(cur, "cur"), b = plane2d(bg, "bg"), t = plane2d(thr, "thr");
             same_size(c, b);
             same_size(c, t);
             auto vc = packed(c), vb = packed(b), vt = packed(t);
             auto mask = image(c.width, c.height);
             std::vector<std::uint8_t> scratch(2 * static_cast<std::size_t>(c.width));
             std::uint8_t* out = mask.mutable_data();
             std::uint64_t n;
             {
               py::gil_scoped_release release;
               n = k.bg_range_mask(vc.data(), vb.data(), vt.data(), out, c.width, c.height, scratch.data());
             }
             return py::make_tuple(mask, n);
           })
      .def("minmax3x3",
           [](const Kernels& k, const py::buffer& src) {
             Plane p = plane2d(src, "src");
             auto v = packed(p);
             auto lo = image(p.width, p.height), hi = image(p.width, p.height);
             std::vector<std::uint8_t> scratch(2 * static_cast<std::size_t>(p.width));
             std::uint8_t *plo = lo.mutable_data(), *phi = hi.mutable_data();
             {
               py::gil_scoped_release release;
               k.minmax3x3(v.data(), p.width, p.height, plo, phi, scratch.data());
             }
             return py::make_tuple(lo, hi);
           })
      .def("background_update",
           [](const Kernels& k, const py::buffer& cur, const py::buffer& hold,
              py::array_t<std::uint16_t, py::array::c_style> bg, int shift) {
             if (shift < 1 || shift > 15) throw py::value_error("shift must be 1..15");
             Plane c = plane2d(cur, "cur"), l = plane2d(hold, "hold");
             same_size(c, l);
             if (bg.ndim() != 2 || bg.shape(0) != c.height || bg.shape(1) != c.width)
               throw py::value_error("bg must be a uint16 array of the image's size");
             for (std::ptrdiff_t i = 0; i < bg.size(); ++i)
               if (bg.data()[i] > 255 * 128) throw py::value_error("bg values are 8.7 fixed point, at most 32640");
             auto vc = packed(c), vl = packed(l);
             auto bg8 = image(c.width, c.height);
             std::uint16_t* pbg = bg.mutable_data();
             std::uint8_t* p8 = bg8.mutable_data();
             {
               py::gil_scoped_release release;
               k.background_update(vc.data(), vl.data(), pbg, p8, vc.size(), shift);
             }
             return bg8;
           },
           py::arg("cur"), py::arg("hold"), py::arg("bg").noconvert(), py::arg("shift"))
      .def("sum_squares",
           [](const Kernels& k, const py::buffer& img) {
             Plane p = plane2d(img, "image");
             auto v = packed(p);
             std::uint64_t s = 0, q = 0;
             {
               py::gil_scoped_release release;
               k.sum_squares(v.data(), v.size(), &s, &q);
             }
             return std::make_pair(s, q);
           })
      .def("flicker_update",
           [](const Kernels& k, const py::buffer& activity, const py::buffer& clean, const py::buffer& history) {
             // Returns new (activity, clean, history) arrays; the inputs are left as they were.
             Plane a = plane2d(activity, "activity"), c = plane2d(clean, "clean"), p = plane2d(history, "history");
             same_size(a, c);
             same_size(a, p);
             auto va = packed(a), vc = packed(c), vp = packed(p);
             {
               py::gil_scoped_release release;
               k.flicker_update(va.data(), vc.data(), vp.data(), va.size());
             }
             auto out = [&](const std::vector<std::uint8_t>& v) {
               auto img = image(a.width, a.height);
               std::memcpy(img.mutable_data(), v.data(), v.size());
               return img;
             };
             return py::make_tuple(out(va), out(vc), out(vp));
           })
      .def("age_update",
           [](const Kernels& k, const py::buffer& age, const py::buffer& cur, const py::buffer& prev,
              const py::buffer& moving, int still) {
             if (still < 0 || still > 255) throw py::value_error("still must be 0..255");
             Plane a = plane2d(age, "age"), c = plane2d(cur, "cur"), p = plane2d(prev, "prev"), mv = plane2d(moving, "moving");
             same_size(a, c);
             same_size(a, p);
             same_size(a, mv);
             auto va = packed(a), vc = packed(c), vp = packed(p), vm = packed(mv);
             std::uint8_t oldest;
             {
               py::gil_scoped_release release;
               oldest = k.age_update(va.data(), vc.data(), vp.data(), vm.data(), static_cast<std::uint8_t>(still), va.size());
             }
             auto img = image(a.width, a.height);
             std::memcpy(img.mutable_data(), va.data(), va.size());
             return py::make_tuple(img, static_cast<int>(oldest));
           })
      .def("downscale",
           [](const Kernels& k, const py::buffer& src, int factor) {
             if (factor < 1 || factor > 15) throw py::value_error("factor must be 1..15");
             Plane p = plane2d(src, "src");
             if (p.width < factor || p.height < factor) throw py::value_error("image smaller than the factor");
             auto out = image(p.width / factor, p.height / factor);
             std::vector<std::uint16_t> acc(static_cast<std::size_t>(p.width));
             std::uint8_t* o = out.mutable_data();
             {
               py::gil_scoped_release release;
               downscale(k, p.data, p.stride, p.width, p.height, factor, o, acc.data());
             }
             return out;
           });
}

}  // namespace vms::bind
