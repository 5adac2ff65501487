// Helpers shared by the register_*.cpp files: buffers in, codec names. Bindings translate only;
// the logic lives in the core library.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace py = pybind11;

namespace vms::bind {

// A read-only view of any C-contiguous buffer (bytes, bytearray, memoryview, numpy array). Holds the
// Py_buffer, so the memory stays valid (and a bytearray cannot be resized) while the GIL is released.
class BufferView {
 public:
  explicit BufferView(const py::buffer& b) : info_(b.request()) {
    if (info_.ndim > 1) {
      // Multi-dimensional buffers must be C-contiguous to be read as bytes.
      py::ssize_t expect = info_.itemsize;
      for (py::ssize_t i = info_.ndim - 1; i >= 0; --i) {
        if (info_.strides[static_cast<std::size_t>(i)] != expect)
          throw py::value_error("buffer must be C-contiguous");
        expect *= info_.shape[static_cast<std::size_t>(i)];
      }
    } else if (info_.ndim == 1 && info_.strides[0] != info_.itemsize) {
      throw py::value_error("buffer must be contiguous");
    }
  }
  ByteSpan span() const {
    return {static_cast<const std::uint8_t*>(info_.ptr),
            static_cast<std::size_t>(info_.size * info_.itemsize)};
  }

 private:
  py::buffer_info info_;
};

inline Codec parse_codec(const std::string& name) {
  if (name == "h264") return Codec::H264;
  if (name == "h265") return Codec::H265;
  throw py::value_error("codec must be 'h264' or 'h265', not '" + name + "'");
}

inline py::bytes to_pybytes(ByteSpan s) {
  return py::bytes(reinterpret_cast<const char*>(s.data()), s.size());
}

// Builds ParameterSets from a list of NAL units of any kind (VPS, SPS, PPS), as given.
ParameterSets parameter_sets_from(Codec codec, const py::sequence& units);

// Access units above this size are copied with the GIL released; below it, releasing would cost
// more than the copy.
constexpr std::size_t kReleaseGilBytes = 64 * 1024;

void register_errors(py::module_& m);
void register_nal(py::module_& m);
void register_fmp4(py::module_& m);
void register_export(py::module_& m);
void register_ingest(py::module_& m);
void register_rtp(py::module_& m);
void register_system(py::module_& m);
void register_rtsp(py::module_& m);
void register_camera_server(py::module_& m);
void register_record(py::module_& m);
void register_motion(py::module_& m);
void register_live(py::module_& m);

}  // namespace vms::bind
