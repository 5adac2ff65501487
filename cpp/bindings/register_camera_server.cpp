// Bindings of the camera simulator: SimClip (an encoded clip packetized once, shared by any number
// of cameras), CameraServer and CameraStats. Frames are copied into C++ when a clip is made, so the
// server thread never touches Python objects; every call that waits for the server thread releases
// the GIL.
#include <pybind11/stl.h>

#include <optional>
#include <variant>

#include "common.hpp"
#include "vmscore/camera_server.hpp"

namespace vms::bind {
namespace {

using namespace vms::sim;

// pybind11 holders cannot be shared_ptr<const T>; this keeps the clip immutable and shared.
struct SimClip {
  std::shared_ptr<const Clip> clip;
};

SimClip make_clip(const std::string& codec, const py::sequence& frames, double fps,
                  std::size_t max_payload_size) {
  const Codec c = parse_codec(codec);
  std::vector<BufferView> views;
  std::vector<ClipFrame> list;
  views.reserve(frames.size());
  list.reserve(frames.size());
  for (const py::handle f : frames) {
    views.emplace_back(py::reinterpret_borrow<py::buffer>(f.attr("data")));
    ClipFrame cf;
    cf.data = views.back().span();
    cf.pts_90k = f.attr("pts_90k").cast<std::int64_t>();
    cf.dts_90k = f.attr("dts_90k").cast<std::int64_t>();
    cf.is_keyframe = f.attr("is_keyframe").cast<bool>();
    list.push_back(cf);
  }
  ClipOptions opt;
  opt.fps = fps;
  opt.max_payload_size = max_payload_size;
  py::gil_scoped_release release;  // the buffers stay pinned by `views`
  return SimClip{Clip::make(c, list, opt)};
}

AuthMode parse_auth(const std::string& s) {
  if (s == "digest") return AuthMode::Digest;
  if (s == "basic") return AuthMode::Basic;
  if (s == "both") return AuthMode::Both;
  throw py::value_error("auth must be 'digest', 'basic' or 'both', not '" + s + "'");
}

}  // namespace

void register_camera_server(py::module_& m) {
  py::class_<SimClip>(m, "SimClip",
                      "An encoded clip packetized into RTP payloads once; cameras share it.")
      .def(py::init(&make_clip), py::arg("codec"), py::arg("frames"), py::kw_only(),
           py::arg("fps") = 0.0, py::arg("max_payload_size") = 1400,
           "frames: objects with data (Annex-B bytes), pts_90k, dts_90k and is_keyframe, in decode "
           "order (vmscore.sim.EncodedFrame). fps 0 derives the rate from the timestamps.")
      .def_property_readonly("codec", [](const SimClip& c) { return std::string(c.clip->codec() == Codec::H264 ? "h264" : "h265"); })
      .def_property_readonly("width", [](const SimClip& c) { return c.clip->width(); })
      .def_property_readonly("height", [](const SimClip& c) { return c.clip->height(); })
      .def_property_readonly("fps", [](const SimClip& c) { return c.clip->fps(); })
      .def_property_readonly("duration_90k", [](const SimClip& c) { return c.clip->duration_90k(); })
      .def_property_readonly("frame_count", [](const SimClip& c) { return c.clip->units().size(); })
      .def_property_readonly("keyframe_count", [](const SimClip& c) {
        std::size_t n = 0;
        for (const auto& u : c.clip->units()) n += u.is_keyframe;
        return n;
      })
      .def_property_readonly("packet_count", [](const SimClip& c) { return c.clip->packets().size(); })
      .def_property_readonly("bitrate_bps", [](const SimClip& c) { return c.clip->bitrate_bps(); })
      .def_property_readonly("parameter_sets", [](const SimClip& c) {
        py::list out;
        const ParameterSets& ps = c.clip->parameter_sets();
        for (const auto* v : {&ps.vps, &ps.sps, &ps.pps})
          for (const Bytes& b : *v) out.append(to_pybytes(b));
        return out;
      }, "VPS/SPS/PPS NAL units of the clip's first keyframe.")
      .def("__repr__", [](const SimClip& c) {
        return "SimClip(" + std::string(codec_name(c.clip->codec())) + ", " +
               std::to_string(c.clip->width()) + "x" + std::to_string(c.clip->height()) + ", " +
               std::to_string(c.clip->units().size()) + " frames)";
      });

  py::class_<CameraStats>(m, "CameraStats", "Counters of one simulated camera.")
      .def_readonly("name", &CameraStats::name)
      .def_readonly("connections", &CameraStats::connections)
      .def_readonly("clients", &CameraStats::clients)
      .def_readonly("sessions", &CameraStats::sessions)
      .def_readonly("requests", &CameraStats::requests)
      .def_readonly("unauthorized", &CameraStats::unauthorized)
      .def_readonly("frames_sent", &CameraStats::frames_sent)
      .def_readonly("packets_sent", &CameraStats::packets_sent)
      .def_readonly("bytes_sent", &CameraStats::bytes_sent)
      .def_readonly("sender_reports", &CameraStats::sender_reports)
      .def_readonly("frames_dropped", &CameraStats::frames_dropped)
      .def_readonly("packets_lost", &CameraStats::packets_lost)
      .def_readonly("packets_corrupted", &CameraStats::packets_corrupted)
      .def_readonly("sessions_timed_out", &CameraStats::sessions_timed_out)
      .def_readonly("stale_sessions", &CameraStats::stale_sessions)
      .def_readonly("frames_emitted", &CameraStats::frames_emitted)
      .def("__repr__", [](const CameraStats& s) {
        return "CameraStats(name='" + s.name + "', clients=" + std::to_string(s.clients) +
               ", frames_sent=" + std::to_string(s.frames_sent) + ", bytes_sent=" +
               std::to_string(s.bytes_sent) + ")";
      });

  py::class_<CameraServer>(m, "CameraServer",
                           "Simulated RTSP cameras served from one native thread.")
      .def(py::init([](const std::string& host, int port, std::optional<std::string> username,
                       std::optional<std::string> password, const std::string& auth,
                       const std::string& realm, std::uint32_t session_timeout_s,
                       std::size_t client_queue_bytes, std::size_t send_buffer_bytes,
                       double sender_report_interval_s,
                       std::uint64_t seed, int tick_ms) {
             if (port < 0 || port > 65535) throw py::value_error("port must be 0..65535");
             if (password && !username) throw py::value_error("a password needs a username");
             ServerOptions o;
             o.host = host;
             o.port = static_cast<std::uint16_t>(port);
             o.username = username.value_or("");
             o.password = password.value_or("");
             o.auth = parse_auth(auth);
             o.realm = realm;
             o.session_timeout_s = session_timeout_s;
             o.client_queue_bytes = client_queue_bytes;
             o.send_buffer_bytes = send_buffer_bytes;
             o.sender_report_interval_s = sender_report_interval_s;
             o.seed = seed;
             o.tick_ms = tick_ms;
             py::gil_scoped_release release;
             return std::make_unique<CameraServer>(std::move(o));
           }),
           py::kw_only(), py::arg("host") = "127.0.0.1", py::arg("port") = 0,
           py::arg("username") = py::none(), py::arg("password") = py::none(),
           py::arg("auth") = "digest", py::arg("realm") = "vmscore camera simulator",
           py::arg("session_timeout_s") = 60, py::arg("client_queue_bytes") = 8u << 20,
           py::arg("send_buffer_bytes") = 0,
           py::arg("sender_report_interval_s") = 5.0, py::arg("seed") = 1, py::arg("tick_ms") = 5)
      .def_property_readonly("port", &CameraServer::port)
      .def_property_readonly("host", &CameraServer::host)
      .def_property_readonly("udp_rtp_port", &CameraServer::udp_rtp_port)
      .def_property_readonly("is_running", &CameraServer::is_running)
      .def("add_camera",
           [](CameraServer& s, const std::string& name, const SimClip& main,
              std::optional<SimClip> sub, double start_offset_s, std::optional<std::string> username,
              std::optional<std::string> password, bool tcp, bool udp) {
             if (password && !username) throw py::value_error("a password needs a username");
             CameraConfig c;
             c.name = name;
             c.main = main.clip;
             if (sub) c.sub = sub->clip;
             c.start_offset_s = start_offset_s;
             c.has_credentials = username.has_value();
             c.username = username.value_or("");
             c.password = password.value_or("");
             c.allow_tcp = tcp;
             c.allow_udp = udp;
             py::gil_scoped_release release;
             return s.add_camera(std::move(c));
           },
           py::arg("name"), py::arg("main"), py::arg("sub") = py::none(), py::kw_only(),
           py::arg("start_offset_s") = 0.0, py::arg("username") = py::none(),
           py::arg("password") = py::none(), py::arg("tcp") = true, py::arg("udp") = true,
           "Adds a camera serving `main` (and `sub` at <url>/sub); returns its URL.")
      .def("remove_camera", &CameraServer::remove_camera, py::arg("name"),
           py::call_guard<py::gil_scoped_release>())
      .def("cameras", &CameraServer::cameras, py::call_guard<py::gil_scoped_release>())
      .def("url", &CameraServer::url, py::arg("name"), py::arg("sub") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("set_fault",
           [](CameraServer& s, const std::string& camera, const std::string& fault,
              const py::object& value) {
             if (py::isinstance<py::bool_>(value) || py::isinstance<py::int_>(value) ||
                 py::isinstance<py::float_>(value)) {
               const double v = value.cast<double>();
               py::gil_scoped_release release;
               s.set_fault(camera, fault, v);
               return;
             }
             std::vector<Bytes> units;
             for (const py::handle u : py::reinterpret_borrow<py::sequence>(value)) {
               const BufferView view(py::reinterpret_borrow<py::buffer>(u));
               units.emplace_back(view.span().begin(), view.span().end());
             }
             py::gil_scoped_release release;
             s.set_fault(camera, fault, std::move(units));
           },
           py::arg("camera"), py::arg("fault"), py::arg("value") = 1.0,
           "Switches a fault of one camera (see fault_names()); 0 / False switches it off. "
           "sdp_parameter_sets takes a sequence of NAL units.")
      .def("clear_faults", &CameraServer::clear_faults, py::arg("camera"),
           py::call_guard<py::gil_scoped_release>())
      .def_static("fault_names", &CameraServer::fault_names)
      .def("stats", py::overload_cast<std::string_view>(&CameraServer::stats, py::const_),
           py::arg("camera"), py::call_guard<py::gil_scoped_release>())
      .def("all_stats", py::overload_cast<>(&CameraServer::stats, py::const_),
           py::call_guard<py::gil_scoped_release>())
      .def("close", &CameraServer::close, py::call_guard<py::gil_scoped_release>(),
           "Stops the server thread and closes every socket; idempotent.")
      .def("__enter__", [](CameraServer& s) -> CameraServer& { return s; },
           py::return_value_policy::reference)
      .def("__exit__", [](CameraServer& s, const py::object&, const py::object&, const py::object&) {
        py::gil_scoped_release release;
        s.close();
      });
}

}  // namespace vms::bind
