// Bindings of live view: LiveHub (fragmented MP4 for browsers from the ingest engine) and LiveChunk.
// poll() waits and copies with the GIL released; the engine's loop threads never touch Python.
#include <pybind11/stl.h>

#include <cstring>

#include "common.hpp"
#include "vmscore/live.hpp"

namespace vms::bind {
namespace {

// The chunk's fragments joined into one bytes object: the only copy of the media on its way from
// the camera to a viewer's socket.
py::bytes joined_media(const live::LiveChunk& c) {
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(c.media_bytes));
  if (!out) throw py::error_already_set();
  char* dst = PyBytes_AS_STRING(out);
  for (const BytesRef& f : c.media) {
    const auto span = f.span();
    std::memcpy(dst, span.data(), span.size());
    dst += span.size();
  }
  return py::reinterpret_steal<py::bytes>(out);
}

}  // namespace

void register_live(py::module_& m) {
  using namespace vms::live;
  py::class_<LiveChunk>(m, "LiveChunk", "What LiveHub.poll() hands one viewer.")
      .def_readonly("viewer", &LiveChunk::viewer)
      .def_property_readonly("init",
                             [](const LiveChunk& c) -> py::object {
                               if (c.init.empty()) return py::none();
                               return to_pybytes(c.init);
                             },
                             "An init segment to append before `media`, or None.")
      .def_readonly("codec", &LiveChunk::codec, "RFC 6381 codec string (with an init segment).")
      .def_readonly("width", &LiveChunk::width)
      .def_readonly("height", &LiveChunk::height)
      .def_property_readonly("media", &joined_media,
                             "Fragments (moof+mdat), one per frame, back to back.")
      .def_readonly("fragments", &LiveChunk::fragments)
      .def_readonly("skipped", &LiveChunk::skipped,
                    "Frames this viewer skipped (it fell behind) since its previous chunk.")
      .def_readonly("first_wall_time_us", &LiveChunk::first_wall_us)
      .def_readonly("last_wall_time_us", &LiveChunk::last_wall_us)
      .def_property_readonly("state",
                             [](const LiveChunk& c) -> py::object {
                               if (c.state.empty()) return py::none();
                               return py::str(c.state);
                             },
                             "The stream's new state (playing, connecting, offline, removed) "
                             "when it changed, else None.")
      .def_readonly("reason", &LiveChunk::reason);

  py::class_<LiveViewerStats>(m, "LiveViewerStats")
      .def_readonly("stream_id", &LiveViewerStats::stream_id)
      .def_readonly("chunks", &LiveViewerStats::chunks)
      .def_readonly("fragments", &LiveViewerStats::fragments)
      .def_readonly("bytes", &LiveViewerStats::bytes)
      .def_readonly("skipped", &LiveViewerStats::skipped)
      .def_readonly("skips", &LiveViewerStats::skips)
      .def_readonly("waiting_for_ack", &LiveViewerStats::waiting_for_ack);

  py::class_<LiveSourceStats>(m, "LiveSourceStats")
      .def_readonly("stream_id", &LiveSourceStats::stream_id)
      .def_readonly("viewers", &LiveSourceStats::viewers)
      .def_readonly("muxing", &LiveSourceStats::muxing)
      .def_readonly("gop_units", &LiveSourceStats::gop_units)
      .def_readonly("fragments", &LiveSourceStats::fragments)
      .def_readonly("bytes", &LiveSourceStats::bytes)
      .def_readonly("muxed", &LiveSourceStats::muxed)
      .def_readonly("mux_errors", &LiveSourceStats::mux_errors)
      .def_readonly("generation", &LiveSourceStats::generation)
      .def_readonly("state", &LiveSourceStats::state)
      .def_readonly("reason", &LiveSourceStats::reason);

  py::class_<LiveHub>(m, "LiveHub",
                      "Live view for browsers: per ingest stream, fragmented MP4 (one fragment per "
                      "frame) muxed once and shared by its viewers, who start at the latest "
                      "keyframe and skip to the newest one when they fall behind.")
      .def(py::init([](ingest::IngestEngine& engine, double max_lag, std::size_t max_source_bytes,
                       double keep, std::size_t max_chunk_bytes, double batch) {
             if (!(max_lag > 0 && max_lag <= 3600) || !(keep > 0 && keep <= 3600))
               throw py::value_error("max_lag and keep must be in (0, 3600] seconds");
             LiveOptions o;
             o.max_lag_90k = static_cast<std::int64_t>(max_lag * 90000.0 + 0.5);
             o.keep_90k = static_cast<std::int64_t>(keep * 90000.0 + 0.5);
             o.max_source_bytes = max_source_bytes;
             o.max_chunk_bytes = max_chunk_bytes;
             if (!(batch >= 0 && batch <= 1)) throw py::value_error("batch must be in [0, 1] seconds");
             o.batch_us = static_cast<std::int64_t>(batch * 1e6 + 0.5);
             return std::make_unique<LiveHub>(engine, o);
           }),
           py::keep_alive<1, 2>(), py::arg("engine"), py::kw_only(), py::arg("max_lag") = 1.0,
           py::arg("max_source_bytes") = std::size_t(16) << 20, py::arg("keep") = 5.0,
           py::arg("max_chunk_bytes") = std::size_t(8) << 20, py::arg("batch") = 0.002,
           "The engine is kept alive as long as the hub. `batch`: seconds poll() waits after the "
           "first ready viewer, so one wake-up serves many frames.")
      .def("add_stream", &LiveHub::add_stream, py::arg("stream_id"),
           py::call_guard<py::gil_scoped_release>(),
           "Subscribes to an engine stream (ValueError when the engine has no such stream).")
      .def("remove_stream", &LiveHub::remove_stream, py::arg("stream_id"),
           py::call_guard<py::gil_scoped_release>(),
           "Unsubscribes; its viewers get a last chunk with state 'removed'.")
      .def("open", &LiveHub::open, py::arg("stream_id"),
           "A new viewer of the stream (ValueError when the hub does not have it).")
      .def("close", &LiveHub::close, py::arg("viewer"))
      .def("ack", &LiveHub::ack, py::arg("viewer"),
           "The viewer sent its last chunk and may have the next.")
      .def("poll",
           [](LiveHub& h, double timeout) {
             if (!(timeout >= 0)) throw py::value_error("timeout must not be negative");
             std::vector<LiveChunk> out;
             {
               py::gil_scoped_release release;
               h.poll(out, static_cast<std::int64_t>(timeout * 1000.0));
             }
             return out;
           },
           py::arg("timeout") = 0.5,
           "Waits up to `timeout` seconds, then returns a chunk for every viewer that is ready.")
      .def("wake", &LiveHub::wake)
      .def("viewer_stats", &LiveHub::viewer_stats, py::arg("viewer"))
      .def("source_stats", &LiveHub::source_stats);
}

}  // namespace vms::bind
