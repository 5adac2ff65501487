// Bindings of the ingest engine: IngestEngine, AccessUnit (a zero-copy buffer over the unit's bytes),
// StreamEvent and StreamStats. poll() waits with the GIL released; loop threads never touch Python.
#include <pybind11/stl.h>

#include <optional>

#include "common.hpp"
#include "vmscore/ingest.hpp"

namespace vms::bind {
namespace {

using namespace vms::ingest;

py::list parameter_set_list(const AccessUnit& au) {
  py::list out;
  if (!au.parameter_sets) return out;
  for (const auto* v : {&au.parameter_sets->vps, &au.parameter_sets->sps, &au.parameter_sets->pps})
    for (const Bytes& b : *v) out.append(to_pybytes(b));
  return out;
}

std::int64_t seconds_to_ms(double s, const char* name) {
  if (!(s > 0) || s > 86400) throw py::value_error(std::string(name) + " must be in (0, 86400] seconds");
  return static_cast<std::int64_t>(s * 1000.0 + 0.5);
}

}  // namespace

void register_ingest(py::module_& m) {
  py::class_<AccessUnit>(m, "AccessUnit", py::buffer_protocol(),
                         "One access unit from a camera stream. Supports the buffer protocol: "
                         "memoryview(au) gives its bytes without a copy.")
      .def_buffer([](AccessUnit& au) {
        const auto span = au.data.span();
        return py::buffer_info(const_cast<std::uint8_t*>(span.data()), 1,
                               py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(span.size())}, {1}, /*readonly=*/true);
      })
      .def_property_readonly("stream_id", [](const AccessUnit& au) { return au.stream->id; })
      .def_property_readonly("kind", [](const AccessUnit& au) {
        return std::string(au.kind == MediaKind::Video ? "video" : "audio");
      })
      .def_readonly("codec", &AccessUnit::codec)
      .def_readonly("pts_90k", &AccessUnit::pts_90k)
      .def_readonly("dts_90k", &AccessUnit::dts_90k)
      .def_readonly("wall_time_us", &AccessUnit::wall_us)
      .def_readonly("is_keyframe", &AccessUnit::keyframe)
      .def_readonly("gap", &AccessUnit::gap, "Frames were lost before this one.")
      .def_readonly("parameters_changed", &AccessUnit::parameters_changed)
      .def_readonly("dropped_frames", &AccessUnit::dropped_frames)
      .def_readonly("lost_packets", &AccessUnit::lost_packets)
      .def_readonly("clock_rate", &AccessUnit::clock_rate)
      .def_property_readonly("size", [](const AccessUnit& au) { return au.data.span().size(); })
      .def_property_readonly("parameter_sets", &parameter_set_list,
                             "VPS/SPS/PPS NAL units in force for this unit (video).")
      .def("to_bytes", [](const AccessUnit& au) { return to_pybytes(au.data.span()); })
      .def("to_annexb", [](const AccessUnit& au) {
        if (au.kind != MediaKind::Video) throw py::value_error("audio units have no NAL units");
        Bytes out;
        length_prefixed_to_annexb(au.data.span(), 4, out);
        return to_pybytes(out);
      }, "The NAL units with start codes instead of lengths (a copy).")
      .def("__len__", [](const AccessUnit& au) { return au.data.span().size(); })
      .def("__repr__", [](const AccessUnit& au) {
        return "AccessUnit(stream_id='" + au.stream->id + "', codec='" + au.codec +
               "', pts_90k=" + std::to_string(au.pts_90k) + ", size=" +
               std::to_string(au.data.span().size()) + (au.keyframe ? ", keyframe" : "") + ")";
      });

  py::class_<StreamEvent>(m, "StreamEvent", "Something that happened to a stream.")
      .def_property_readonly("stream_id", [](const StreamEvent& e) { return e.stream->id; })
      .def_property_readonly("kind", [](const StreamEvent& e) { return std::string(event_kind_name(e.kind)); },
                             "connecting, playing, parameters_changed, stalled, disconnected, "
                             "reconnecting, removed or error.")
      .def_readonly("reason", &StreamEvent::reason)
      .def_readonly("wall_time_us", &StreamEvent::wall_us)
      .def("__repr__", [](const StreamEvent& e) {
        return std::string("StreamEvent(stream_id='") + e.stream->id + "', kind='" +
               event_kind_name(e.kind) + "', reason='" + e.reason + "')";
      });

  py::class_<StreamStats>(m, "StreamStats", "Counters of one stream.")
      .def_readonly("stream_id", &StreamStats::id)
      .def_readonly("state", &StreamStats::state)
      .def_readonly("codec", &StreamStats::codec)
      .def_readonly("width", &StreamStats::width)
      .def_readonly("height", &StreamStats::height)
      .def_readonly("bytes", &StreamStats::bytes)
      .def_readonly("frames", &StreamStats::frames)
      .def_readonly("packets", &StreamStats::packets)
      .def_readonly("packets_lost", &StreamStats::packets_lost)
      .def_readonly("frames_dropped", &StreamStats::frames_dropped)
      .def_readonly("frames_dropped_queue", &StreamStats::frames_dropped_queue)
      .def_readonly("reconnects", &StreamStats::reconnects)
      .def_readonly("timestamp_discontinuities", &StreamStats::timestamp_discontinuities)
      .def_readonly("fps", &StreamStats::fps)
      .def_readonly("bitrate_bps", &StreamStats::bitrate_bps)
      .def_readonly("last_error", &StreamStats::last_error)
      .def_readonly("last_keyframe_wall_us", &StreamStats::last_keyframe_wall_us)
      .def_readonly("playing_since_wall_us", &StreamStats::playing_since_wall_us);

  py::class_<IngestEngine>(m, "IngestEngine",
                           "Receives many RTSP camera streams on a few native event-loop threads.")
      .def(py::init([](int loops, int tick_ms, double batch_ms, std::size_t queue_frames,
                       std::size_t queue_bytes) {
             EngineOptions o;
             o.loops = loops;
             o.tick_ms = tick_ms;
             o.batch_us = static_cast<int>(batch_ms * 1000.0);
             o.queue_frames = queue_frames;
             o.queue_bytes = queue_bytes;
             try {
               return std::make_unique<IngestEngine>(o);
             } catch (const std::invalid_argument& err) {
               throw py::value_error(err.what());
             }
           }),
           py::kw_only(), py::arg("loops") = 1, py::arg("tick_ms") = 50, py::arg("batch_ms") = 4.0,
           py::arg("queue_frames") = 4096, py::arg("queue_bytes") = std::size_t(256) << 20)
      .def("add_stream",
           [](IngestEngine& e, const std::string& stream_id, const std::string& url,
              std::optional<std::string> username, std::optional<std::string> password,
              const std::string& transport, bool audio, bool deliver, double connect_timeout_s,
              double stall_timeout_s, double reconnect_min_s, double reconnect_max_s,
              std::size_t max_access_unit_bytes, double stale_session_wait_s) {
             StreamConfig c;
             c.id = stream_id;
             c.url = url;
             c.username = username.value_or("");
             c.password = password.value_or("");
             if (transport != "tcp" && transport != "udp")
               throw py::value_error("transport must be 'tcp' or 'udp'");
             c.tcp = transport == "tcp";
             c.audio = audio;
             c.deliver = deliver;
             c.connect_timeout_ms = seconds_to_ms(connect_timeout_s, "connect_timeout_s");
             c.stall_timeout_ms = seconds_to_ms(stall_timeout_s, "stall_timeout_s");
             c.reconnect_min_ms = seconds_to_ms(reconnect_min_s, "reconnect_min_s");
             c.reconnect_max_ms = seconds_to_ms(reconnect_max_s, "reconnect_max_s");
             if (c.reconnect_max_ms < c.reconnect_min_ms)
               throw py::value_error("reconnect_max_s must not be below reconnect_min_s");
             c.max_access_unit_bytes = max_access_unit_bytes;
             if (stale_session_wait_s < 0) throw py::value_error("stale_session_wait_s must not be negative");
             c.stale_session_wait_ms = static_cast<std::int64_t>(stale_session_wait_s * 1000.0);
             try {
               e.add_stream(std::move(c));
             } catch (const std::invalid_argument& err) {
               throw py::value_error(err.what());
             }
           },
           py::arg("stream_id"), py::arg("url"), py::kw_only(), py::arg("username") = py::none(),
           py::arg("password") = py::none(), py::arg("transport") = "tcp",
           py::arg("audio") = false, py::arg("deliver") = true,
           py::arg("connect_timeout_s") = 10.0, py::arg("stall_timeout_s") = 10.0,
           py::arg("reconnect_min_s") = 1.0, py::arg("reconnect_max_s") = 30.0,
           py::arg("max_access_unit_bytes") = std::size_t(16) << 20,
           py::arg("stale_session_wait_s") = 65.0,
           "Starts receiving a stream. Credentials may be in the URL or given separately; they are "
           "never logged or shown in events.")
      .def("remove_stream",
           [](IngestEngine& e, const std::string& id) {
             try {
               e.remove_stream(id);
             } catch (const std::invalid_argument& err) {
               throw py::key_error(err.what());
             }
           },
           py::arg("stream_id"))
      .def("poll",
           [](IngestEngine& e, double timeout, std::size_t max_items) {
             if (timeout < 0) throw py::value_error("timeout must not be negative");
             std::vector<Delivery> items;
             {
               py::gil_scoped_release release;
               e.poll(items, static_cast<std::int64_t>(timeout * 1000.0), max_items);
             }
             py::list out;
             for (Delivery& d : items) {
               if (auto* au = std::get_if<AccessUnit>(&d))
                 out.append(py::cast(std::move(*au)));
               else
                 out.append(py::cast(std::move(std::get<StreamEvent>(d))));
             }
             return out;
           },
           py::arg("timeout") = 0.5, py::arg("max_items") = 1024,
           "Waits up to `timeout` seconds and returns the access units and events that arrived.")
      .def("wake", &IngestEngine::wake, "Makes a waiting poll() return now.")
      .def("stats",
           [](const IngestEngine& e, const std::string& id) {
             try {
               return e.stats(id);
             } catch (const std::invalid_argument& err) {
               throw py::key_error(err.what());
             }
           },
           py::arg("stream_id"))
      .def("streams", &IngestEngine::stream_ids)
      .def("close", &IngestEngine::stop, py::call_guard<py::gil_scoped_release>(),
           "TEARDOWN every stream and stop the loop threads.")
      .def("__enter__", [](IngestEngine& e) -> IngestEngine& { return e; },
           py::return_value_policy::reference)
      .def("__exit__", [](IngestEngine& e, const py::object&, const py::object&, const py::object&) {
        py::gil_scoped_release release;
        e.stop();
      });
}

}  // namespace vms::bind
