// Bindings of the fragmented MP4 muxer: Fmp4Muxer returns bytes (live viewers, tests), Fmp4Writer
// writes to a file descriptor with the GIL released.
#include <pybind11/stl.h>

#include <mutex>
#include <optional>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fd_sink.hpp"
#include "vmscore/fmp4.hpp"

namespace vms::bind {
namespace {

using fmp4::Muxer;
using fmp4::MuxerOptions;

template <typename SinkT>
class PyMuxer {
 public:
  PyMuxer(SinkT sink, const std::string& codec, const py::sequence& parameter_sets,
          MuxerOptions opt)
      : sink_(std::move(sink)),
        muxer_(parameter_sets_from(parse_codec(codec), parameter_sets), opt, sink_) {}

  // Returns the output of this call: bytes for Fmp4Muxer, the number of bytes written for Fmp4Writer.
  py::object add(const py::buffer& au, std::int64_t pts, std::optional<std::int64_t> dts,
                 std::optional<bool> keyframe) {
    const BufferView view(au);
    const ByteSpan data = view.span();
    const std::int64_t d = dts.value_or(pts);
    auto work = [&] {
      if (keyframe)
        muxer_.add(data, pts, d, *keyframe);
      else
        muxer_.add_detect(data, pts, d);
    };
    return run(work, data.size());
  }

  py::object flush() {
    return run([&] { muxer_.flush(); }, 0);
  }

  Muxer& muxer() { return muxer_; }

 private:
  template <typename Fn>
  py::object run(Fn&& fn, std::size_t size) {
    const std::uint64_t before = muxer_.stats().bytes;
    if (std::is_same_v<SinkT, FdSink> || size >= kReleaseGilBytes) {
      // The mutex is taken only after the GIL is released, so two Python threads sharing one
      // muxer serialise here instead of racing on its buffers; no lock is held while waiting for
      // the GIL.
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      fn();
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      fn();
    }
    if constexpr (std::is_same_v<SinkT, fmp4::BytesSink>) {
      py::bytes out = to_pybytes(sink_.data);
      sink_.data.clear();
      return out;
    } else {
      return py::int_(muxer_.stats().bytes - before);
    }
  }

  SinkT sink_;
  Muxer muxer_;
  std::mutex mutex_;
};

template <typename SinkT>
void common_api(py::class_<PyMuxer<SinkT>>& cls) {
  using M = PyMuxer<SinkT>;
  cls.def("add", &M::add, py::arg("au"), py::arg("pts"), py::arg("dts") = py::none(),
          py::arg("keyframe") = py::none(),
          "Adds one access unit in decode order (pts/dts in 90 kHz units; dts defaults to pts; "
          "keyframe is detected from the NAL units when not given).")
      .def("flush", &M::flush, "Completes the pending fragment.")
      .def_property_readonly("init_segment", [](M& self) -> py::object {
        if (!self.muxer().has_init()) return py::none();
        return to_pybytes(self.muxer().init_segment());
      }, "ftyp + moov, once the parameter sets are known.")
      .def_property_readonly("codec_string", [](M& self) -> py::object {
        if (!self.muxer().has_init()) return py::none();
        return py::str(self.muxer().codec_string());
      }, "RFC 6381 codecs parameter for MSE, once the parameter sets are known.")
      .def_property_readonly("width", [](M& self) -> py::object {
        if (!self.muxer().has_init()) return py::none();
        return py::int_(self.muxer().sps().width);
      })
      .def_property_readonly("height", [](M& self) -> py::object {
        if (!self.muxer().has_init()) return py::none();
        return py::int_(self.muxer().sps().height);
      })
      .def_property_readonly("bytes_out", [](M& self) { return self.muxer().stats().bytes; })
      .def_property_readonly("fragments", [](M& self) { return self.muxer().stats().fragments; })
      .def_property_readonly("samples", [](M& self) { return self.muxer().stats().samples; })
      .def_property_readonly("pending_samples", [](M& self) { return self.muxer().pending_samples(); })
      .def_property_readonly("dropped_before_keyframe",
                             [](M& self) { return self.muxer().stats().dropped_before_keyframe; })
      .def_property_readonly("last_fragment", [](M& self) -> py::object {
        if (self.muxer().stats().fragments == 0) return py::none();
        return py::cast(self.muxer().last_fragment());
      }, "Where the most recent fragment landed.");
}

MuxerOptions options(std::int64_t fragment_duration_90k, std::uint32_t default_duration_90k,
                     bool annexb) {
  MuxerOptions o;
  o.fragment_duration_90k = fragment_duration_90k;
  o.default_duration_90k = default_duration_90k;
  o.input_annexb = annexb;
  return o;
}

}  // namespace

void register_fmp4(py::module_& m) {
  py::class_<fmp4::FragmentInfo>(m, "FragmentInfo", "Where one fMP4 fragment landed.")
      .def_readonly("sequence", &fmp4::FragmentInfo::sequence)
      .def_readonly("offset", &fmp4::FragmentInfo::offset)
      .def_readonly("size", &fmp4::FragmentInfo::size)
      .def_readonly("base_dts_90k", &fmp4::FragmentInfo::base_dts_90k)
      .def_readonly("duration_90k", &fmp4::FragmentInfo::duration_90k)
      .def_readonly("samples", &fmp4::FragmentInfo::samples)
      .def_readonly("starts_with_keyframe", &fmp4::FragmentInfo::starts_with_keyframe);

  m.def(
      "init_segment",
      [](const std::string& codec, const py::sequence& parameter_sets) {
        return to_pybytes(fmp4::make_init_segment(parameter_sets_from(parse_codec(codec), parameter_sets)));
      },
      py::arg("codec"), py::arg("parameter_sets"),
      "The fMP4 init segment (ftyp + moov) for the given VPS/SPS/PPS NAL units.");

  using BytesMuxer = PyMuxer<fmp4::BytesSink>;
  py::class_<BytesMuxer> muxer(m, "Fmp4Muxer",
                               "Muxes H.264/H.265 access units into fragmented MP4 bytes.");
  muxer.def(py::init([](const std::string& codec, const py::sequence& parameter_sets,
                        std::int64_t fragment_duration_90k, std::uint32_t default_duration_90k,
                        bool annexb) {
              return std::make_unique<BytesMuxer>(
                  fmp4::BytesSink{}, codec, parameter_sets,
                  options(fragment_duration_90k, default_duration_90k, annexb));
            }),
            py::arg("codec"), py::arg("parameter_sets") = py::tuple(), py::kw_only(),
            py::arg("fragment_duration_90k") = 0, py::arg("default_duration_90k") = 3000,
            py::arg("annexb") = true);
  common_api(muxer);

  using FdMuxer = PyMuxer<FdSink>;
  py::class_<FdMuxer> writer(m, "Fmp4Writer",
                             "Muxes access units into fragmented MP4 written to a file descriptor "
                             "(one writev per fragment, GIL released). The caller owns the fd.");
  writer.def(py::init([](int fd, const std::string& codec, const py::sequence& parameter_sets,
                         std::int64_t fragment_duration_90k, std::uint32_t default_duration_90k,
                         bool annexb) {
               if (fd < 0) throw py::value_error("fd must be a valid file descriptor");
               return std::make_unique<FdMuxer>(
                   FdSink(fd), codec, parameter_sets,
                   options(fragment_duration_90k, default_duration_90k, annexb));
             }),
             py::arg("fd"), py::arg("codec"), py::arg("parameter_sets") = py::tuple(), py::kw_only(),
             py::arg("fragment_duration_90k") = 0, py::arg("default_duration_90k") = 3000,
             py::arg("annexb") = true);
  common_api(writer);
}

}  // namespace vms::bind
