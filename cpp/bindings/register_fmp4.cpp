// Bindings of the fragmented MP4 muxer: Fmp4Muxer returns bytes (live viewers, tests), Fmp4Writer
// writes to a file descriptor with the GIL released.
#include <pybind11/stl.h>

#include <cstring>
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

// Collects the parts of finished output without copying them; the binding copies them once,
// into the bytes object it returns.
class CollectSink final : public fmp4::Sink {
 public:
  void write(std::span<const ByteSpan> parts) override {
    for (ByteSpan p : parts) {
      if (p.empty()) continue;
      parts_.push_back(p);
      total_ += p.size();
    }
  }
  // One allocation and one copy per call; the copy runs without the GIL when it is large (the new
  // bytes object is not visible to other threads yet).
  py::bytes take() {
    PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(total_));
    if (!raw) throw py::error_already_set();
    auto out = py::reinterpret_steal<py::bytes>(raw);
    char* dst = PyBytes_AS_STRING(raw);
    auto copy = [&] {
      for (ByteSpan p : parts_) {
        std::memcpy(dst, p.data(), p.size());
        dst += p.size();
      }
    };
    if (total_ >= kReleaseGilBytes) {
      py::gil_scoped_release release;
      copy();
    } else {
      copy();
    }
    clear();
    return out;
  }
  void clear() {
    parts_.clear();
    total_ = 0;
  }

 private:
  std::vector<ByteSpan> parts_;
  std::size_t total_ = 0;
};

// The Python buffers of access units the muxer still references (it does not copy samples).
// Acquired and released with the GIL held; the vector is reused, so no allocation once warm.
class HeldBuffers {
 public:
  HeldBuffers() = default;
  HeldBuffers(const HeldBuffers&) = delete;
  HeldBuffers& operator=(const HeldBuffers&) = delete;
  ~HeldBuffers() { keep_last(0); }

  ByteSpan acquire(const py::handle& obj) {
    Py_buffer view;
    // PyBUF_SIMPLE: one contiguous run of bytes, or a BufferError that names the problem.
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    views_.push_back(view);
    return {static_cast<const std::uint8_t*>(view.buf), static_cast<std::size_t>(view.len)};
  }
  void drop_newest() {
    PyBuffer_Release(&views_.back());
    views_.pop_back();
  }
  void keep_last(std::size_t n) {
    if (views_.size() <= n) return;
    const std::size_t release = views_.size() - n;
    for (std::size_t i = 0; i < release; ++i) PyBuffer_Release(&views_[i]);
    views_.erase(views_.begin(), views_.begin() + static_cast<std::ptrdiff_t>(release));
  }

 private:
  std::vector<Py_buffer> views_;
};

template <typename SinkT>
class PyMuxer {
 public:
  PyMuxer(SinkT sink, const std::string& codec, const py::sequence& parameter_sets,
          MuxerOptions opt)
      : sink_(std::move(sink)),
        muxer_(parameter_sets_from(parse_codec(codec), parameter_sets), opt, sink_) {}

  // Returns the output of this call: bytes for Fmp4Muxer, the number of bytes written for Fmp4Writer.
  py::object add(const py::object& au, std::int64_t pts, std::optional<std::int64_t> dts,
                 std::optional<bool> keyframe) {
    auto lock = lock_muxer();
    const ByteSpan data = held_.acquire(au);
    const std::int64_t d = dts.value_or(pts);
    bool taken = false;
    run([&] { taken = keyframe ? muxer_.add(data, pts, d, *keyframe) : muxer_.add_detect(data, pts, d); },
        data.size(), /*took_new=*/&taken);
    return output();
  }

  py::object flush() {
    auto lock = lock_muxer();
    run([&] { muxer_.flush(); }, 0, nullptr);
    return output();
  }

  Muxer& muxer() { return muxer_; }

 private:
  static constexpr bool kWritesToFile = std::is_same_v<SinkT, FdSink>;

  // Taken without the GIL when contended, so two Python threads sharing one muxer serialise here
  // instead of racing on its buffers, and no thread waits for the GIL while holding the lock.
  std::unique_lock<std::mutex> lock_muxer() {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) {
      py::gil_scoped_release release;
      lock.lock();
    }
    return lock;
  }

  template <typename Fn>
  void run(Fn&& fn, std::size_t size, bool* took_new) {
    before_ = muxer_.stats().bytes;
    try {
      if (kWritesToFile || size >= kReleaseGilBytes) {
        py::gil_scoped_release release;
        fn();
      } else {
        fn();
      }
    } catch (...) {
      if (took_new) held_.drop_newest();
      held_.keep_last(static_cast<std::size_t>(muxer_.pending_samples()));
      if constexpr (!kWritesToFile) sink_.clear();
      throw;
    }
    if (took_new && !*took_new) held_.drop_newest();
  }

  py::object output() {
    py::object out;
    if constexpr (kWritesToFile)
      out = py::int_(muxer_.stats().bytes - before_);
    else
      out = sink_.take();
    // Fragments handed out no longer need their access units.
    held_.keep_last(static_cast<std::size_t>(muxer_.pending_samples()));
    return out;
  }

  SinkT sink_;
  Muxer muxer_;
  HeldBuffers held_;
  std::mutex mutex_;
  std::uint64_t before_ = 0;
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

  using BytesMuxer = PyMuxer<CollectSink>;
  py::class_<BytesMuxer> muxer(m, "Fmp4Muxer",
                               "Muxes H.264/H.265 access units into fragmented MP4 bytes.");
  muxer.def(py::init([](const std::string& codec, const py::sequence& parameter_sets,
                        std::int64_t fragment_duration_90k, std::uint32_t default_duration_90k,
                        bool annexb) {
              return std::make_unique<BytesMuxer>(
                  CollectSink{}, codec, parameter_sets,
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
