// Bindings of the recorder: RecorderCore (rings and segment writers), RecordedSegment,
// RecorderEvent and their statistics. The index, retention and recovery live in vmscore.record.
#include <pybind11/stl.h>

#include "common.hpp"
#include "vmscore/record.hpp"

namespace vms::bind {
namespace {

using namespace vms::record;

std::int64_t seconds_to_us(double s, const char* name) {
  if (!(s >= 0) || s > 86400.0 * 366) throw py::value_error(std::string(name) + " must be 0..1 year in seconds");
  return static_cast<std::int64_t>(s * 1e6 + 0.5);
}

template <typename F>
auto translating(F&& f) {
  try {
    return f();
  } catch (const std::invalid_argument& err) {
    throw py::value_error(err.what());
  }
}

}  // namespace

void register_record(py::module_& m) {
  py::class_<Segment>(m, "RecordedSegment",
                      "A finished segment file: written, fsynced with its directory, to be indexed.")
      .def_readonly("camera", &Segment::camera)
      .def_readonly("role", &Segment::role)
      .def_readonly("stream_id", &Segment::stream_id)
      .def_readonly("storage", &Segment::storage)
      .def_readonly("path", &Segment::path, "Relative to the storage location.")
      .def_readonly("start_wall_us", &Segment::start_wall_us)
      .def_readonly("end_wall_us", &Segment::end_wall_us)
      .def_readonly("start_90k", &Segment::start_90k)
      .def_readonly("end_90k", &Segment::end_90k)
      .def_readonly("bytes", &Segment::bytes)
      .def_readonly("frames", &Segment::frames)
      .def_readonly("codec", &Segment::codec)
      .def_readonly("width", &Segment::width)
      .def_readonly("height", &Segment::height)
      .def_readonly("fragments", &Segment::fragments)
      .def_readonly("reason", &Segment::reason)
      .def("__repr__", [](const Segment& s) {
        return "<RecordedSegment " + s.path + " " + std::to_string(s.frames) + " frames " +
               std::to_string(s.bytes) + " bytes (" + s.reason + ")>";
      });

  py::class_<RecorderEvent>(m, "RecorderEvent",
                            "A gap, a storage failing or recovering, a short pre-roll.")
      .def_readonly("kind", &RecorderEvent::kind)
      .def_readonly("camera", &RecorderEvent::camera)
      .def_readonly("role", &RecorderEvent::role)
      .def_readonly("stream_id", &RecorderEvent::stream_id)
      .def_readonly("storage", &RecorderEvent::storage)
      .def_readonly("start_wall_us", &RecorderEvent::start_wall_us)
      .def_readonly("end_wall_us", &RecorderEvent::end_wall_us)
      .def_readonly("reason", &RecorderEvent::reason)
      .def("__repr__", [](const RecorderEvent& e) {
        return "<RecorderEvent " + e.kind + " " + e.stream_id + ": " + e.reason + ">";
      });

  py::class_<RingStats>(m, "RingStats")
      .def_readonly("units", &RingStats::units)
      .def_readonly("bytes", &RingStats::bytes)
      .def_readonly("keyframes", &RingStats::keyframes)
      .def_readonly("first_seq", &RingStats::first_seq)
      .def_readonly("end_seq", &RingStats::end_seq)
      .def_readonly("first_wall_us", &RingStats::first_wall_us)
      .def_readonly("last_wall_us", &RingStats::last_wall_us)
      .def_readonly("trimmed_units", &RingStats::trimmed_units)
      .def_readonly("skipped_units", &RingStats::skipped_units);

  py::class_<StreamRecordStats>(m, "RecordStats")
      .def_readonly("stream_id", &StreamRecordStats::stream_id)
      .def_readonly("camera", &StreamRecordStats::camera)
      .def_readonly("role", &StreamRecordStats::role)
      .def_readonly("storage", &StreamRecordStats::storage)
      .def_readonly("recording", &StreamRecordStats::recording)
      .def_readonly("ring", &StreamRecordStats::ring)
      .def_readonly("segments", &StreamRecordStats::segments)
      .def_readonly("bytes_written", &StreamRecordStats::bytes_written)
      .def_readonly("frames_written", &StreamRecordStats::frames_written)
      .def_readonly("gaps", &StreamRecordStats::gaps)
      .def_readonly("write_calls", &StreamRecordStats::write_calls)
      .def_readonly("current_segment_start_wall_us", &StreamRecordStats::current_segment_start_wall_us)
      .def_readonly("rotation_offset_us", &StreamRecordStats::rotation_offset_us,
                    "Where this stream rotates on the wall clock, modulo the segment length.")
      .def_readonly("last_error", &StreamRecordStats::last_error);

  py::class_<StorageStats>(m, "StorageStats")
      .def_readonly("name", &StorageStats::name)
      .def_readonly("path", &StorageStats::path)
      .def_readonly("failing", &StorageStats::failing)
      .def_readonly("last_error", &StorageStats::last_error)
      .def_readonly("fragments_written", &StorageStats::write_calls)
      .def_readonly("bytes_written", &StorageStats::bytes_written)
      .def_readonly("syncs", &StorageStats::syncs);

  py::class_<Recorder>(m, "RecorderCore",
                       "Rings and segment writers: records ingest streams to fMP4 segment files "
                       "on one writer thread per storage location, without the GIL.")
      .def(py::init([](std::size_t memory_cap, double flush_interval, double sync_interval,
                       double retry_interval, double camera_gap) {
             RecorderOptions o;
             o.memory_cap = memory_cap;
             o.flush_interval_us = seconds_to_us(flush_interval, "flush_interval");
             o.sync_interval_us = seconds_to_us(sync_interval, "sync_interval");
             o.retry_us = seconds_to_us(retry_interval, "retry_interval");
             o.camera_gap_us = seconds_to_us(camera_gap, "camera_gap");
             return translating([&] { return std::make_unique<Recorder>(o); });
           }),
           py::kw_only(), py::arg("memory_cap") = std::size_t(1) << 30,
           py::arg("flush_interval") = 2.0, py::arg("sync_interval") = 30.0,
           py::arg("retry_interval") = 2.0, py::arg("camera_gap") = 5.0)
      .def("add_storage",
           [](Recorder& r, const std::string& name, const std::string& path,
              std::uint64_t max_write_bytes_per_s) {
             translating([&] {
               r.add_storage(name, path, max_write_bytes_per_s);
               return 0;
             });
           },
           py::arg("name"), py::arg("path"), py::kw_only(), py::arg("max_write_bytes_per_s") = 0,
           "A storage location and its writer thread; max_write_bytes_per_s caps its write rate.")
      .def("add_stream",
           [](Recorder& r, ingest::IngestEngine& engine, const std::string& stream_id,
              const std::string& camera, const std::string& role, const std::string& storage,
              const std::string& mode, double pre_roll, double post_roll, double segment_seconds,
              std::size_t ring_bytes, double ring_seconds) {
             StreamSettings s;
             s.stream_id = stream_id;
             s.camera = camera;
             s.role = role;
             s.storage = storage;
             if (mode != "continuous" && mode != "event")
               throw py::value_error("mode must be 'continuous' or 'event'");
             s.mode = mode == "event" ? Mode::Event : Mode::Continuous;
             s.pre_roll_us = seconds_to_us(pre_roll, "pre_roll");
             s.post_roll_us = seconds_to_us(post_roll, "post_roll");
             s.segment_us = seconds_to_us(segment_seconds, "segment_seconds");
             s.ring.max_bytes = ring_bytes;
             s.ring.keep_us = seconds_to_us(ring_seconds, "ring_seconds");
             py::gil_scoped_release release;
             translating([&] {
               r.add_stream(engine, std::move(s));
               return 0;
             });
           },
           py::keep_alive<1, 2>(), py::arg("engine"), py::arg("stream_id"), py::kw_only(),
           py::arg("camera"), py::arg("role") = "main", py::arg("storage"),
           py::arg("mode") = "continuous", py::arg("pre_roll") = 5.0, py::arg("post_roll") = 5.0,
           py::arg("segment_seconds") = 60.0, py::arg("ring_bytes") = std::size_t(32) << 20,
           py::arg("ring_seconds") = 30.0,
           "Records an ingest stream. The engine is kept alive as long as this recorder.")
      .def("remove_stream",
           [](Recorder& r, const std::string& id) {
             py::gil_scoped_release release;
             translating([&] {
               r.remove_stream(id);
               return 0;
             });
           },
           py::arg("stream_id"), "Closes the stream's open segment (reported by poll) and stops.")
      .def("record_event",
           [](Recorder& r, const std::string& id, std::int64_t start, std::int64_t end) {
             translating([&] {
               r.record_event(id, start, end);
               return 0;
             });
           },
           py::arg("stream_id"), py::arg("start_wall_us"), py::arg("end_wall_us"),
           "Event mode: records from the keyframe at or before start - pre-roll until end + "
           "post-roll. Call again with a later end to extend.")
      .def("units_from",
           [](const Recorder& r, const std::string& id, std::int64_t wall_us) {
             return translating([&] { return r.units_from(id, wall_us); });
           },
           py::arg("stream_id"), py::arg("wall_us") = 0,
           "The ring's units from the keyframe at or before wall_us (the latest GOP for 0), "
           "sharing their buffers.")
      .def("poll",
           [](Recorder& r, double timeout, std::size_t max_items) {
             if (timeout < 0) throw py::value_error("timeout must not be negative");
             std::vector<Completion> items;
             {
               py::gil_scoped_release release;
               r.poll(items, static_cast<std::int64_t>(timeout * 1000.0), max_items);
             }
             py::list out;
             for (Completion& c : items) {
               if (auto* s = std::get_if<Segment>(&c))
                 out.append(py::cast(std::move(*s)));
               else
                 out.append(py::cast(std::move(std::get<RecorderEvent>(c))));
             }
             return out;
           },
           py::arg("timeout") = 0.5, py::arg("max_items") = 1024,
           "Waits up to `timeout` seconds for finished segments and recorder events.")
      .def("stats",
           [](const Recorder& r, const std::string& id) {
             return translating([&] { return r.stats(id); });
           },
           py::arg("stream_id"))
      .def("storage_stats", &Recorder::storage_stats)
      .def_property_readonly("memory_used", &Recorder::memory_used)
      .def("close", &Recorder::stop, py::call_guard<py::gil_scoped_release>(),
           "Closes every open segment (reported by poll) and stops the writer threads.")
      .def("__enter__", [](Recorder& r) -> Recorder& { return r; }, py::return_value_policy::reference)
      .def("__exit__", [](Recorder& r, const py::args&) {
        py::gil_scoped_release release;
        r.stop();
      });
}

}  // namespace vms::bind
