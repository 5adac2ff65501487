// Bindings of the RTP layer (vmscore/rtp.hpp, depacketize.hpp, packetize.hpp): parsing, RTCP,
// sequence tracking, the reorder window, depacketizers, the packetizer and the timeline. Results are
// copied into Python objects; the per-packet work stays in the core.
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "vmscore/depacketize.hpp"
#include "vmscore/error.hpp"
#include "vmscore/packetize.hpp"
#include "vmscore/rtp.hpp"

namespace vms::bind {
namespace {

using namespace vms::rtp;

struct PyRtpPacket {
  bool marker;
  int payload_type;
  int sequence;
  std::uint32_t timestamp;
  std::uint32_t ssrc;
  std::vector<std::uint32_t> csrcs;
  std::optional<int> extension_profile;
  std::optional<py::bytes> extension;
  int padding;
  py::bytes payload;
};

PyRtpPacket to_py(const Packet& p) {
  PyRtpPacket out{p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, {}, std::nullopt,
                  std::nullopt, p.padding, to_pybytes(p.payload)};
  for (std::size_t i = 0; i < p.csrc_count; ++i) out.csrcs.push_back(load_be32(p.csrcs.data() + 4 * i));
  if (p.has_extension) {
    out.extension_profile = p.extension_profile;
    out.extension = to_pybytes(p.extension);
  }
  return out;
}

struct PyRtcp {
  std::vector<SenderReport> sender_reports;
  std::vector<ReceptionReport> reports;
  std::vector<std::tuple<std::uint32_t, int, py::bytes>> sdes;
  std::vector<std::uint32_t> byes;
  std::vector<std::tuple<std::uint32_t, int, py::bytes, py::bytes>> apps;
  std::uint32_t other_packets;
  std::uint32_t packets;
};

struct PyAccessUnit {
  std::string kind;
  py::bytes data;
  std::uint32_t rtp_timestamp;
  bool keyframe;
  bool gap;
  std::uint32_t dropped_frames;
  std::uint32_t lost_packets;
  bool parameter_sets_changed;
  py::list parameter_sets;
};

py::list to_py(const ParameterSets* ps) {
  py::list all;
  if (!ps) return all;
  for (const auto* v : {&ps->vps, &ps->sps, &ps->pps})
    for (const Bytes& b : *v) all.append(to_pybytes(b));
  return all;
}

py::list to_py(std::span<const AccessUnit> units) {
  py::list out;
  for (const AccessUnit& a : units) {
    out.append(PyAccessUnit{a.kind == MediaKind::Video ? "video" : "audio", to_pybytes(a.data),
                            a.rtp_timestamp, a.keyframe, a.gap, a.dropped_frames, a.lost_packets,
                            a.parameter_sets_changed, to_py(a.parameter_sets)});
  }
  return out;
}

py::dict stats_dict(const DepacketizerStats& s) {
  py::dict d;
  d["packets"] = s.packets;
  d["ignored_packets"] = s.ignored_packets;
  d["repeated_packets"] = s.repeated_packets;
  d["lost_packets"] = s.lost_packets;
  d["access_units"] = s.access_units;
  d["dropped_frames"] = s.dropped_frames;
  d["dropped_waiting_keyframe"] = s.dropped_waiting_keyframe;
  d["dropped_waiting_parameter_sets"] = s.dropped_waiting_parameter_sets;
  d["errors"] = s.errors;
  d["unsupported_packets"] = s.unsupported_packets;
  d["oversized_access_units"] = s.oversized_access_units;
  d["annexb_payloads"] = s.annexb_payloads;
  d["fu_type_changes"] = s.fu_type_changes;
  d["fu_reserved_bits"] = s.fu_reserved_bits;
  d["empty_fragments"] = s.empty_fragments;
  d["marker_not_at_end"] = s.marker_not_at_end;
  d["timestamp_changes_mid_au"] = s.timestamp_changes_mid_au;
  d["parameter_set_updates"] = s.parameter_set_updates;
  d["sdp_parameter_sets_rejected"] = s.sdp_parameter_sets_rejected;
  return d;
}

// One depacketizer of any codec, as the RTP session would create it from the SDP.
class PyDepacketizer {
 public:
  PyDepacketizer(const std::string& codec, const py::sequence& parameter_sets,
                 std::optional<int> payload_type, int max_don_diff, std::size_t max_access_unit_bytes,
                 std::size_t max_nal_units, int size_length, int index_length,
                 int index_delta_length, int cts_delta_length, int dts_delta_length,
                 bool random_access_indication, int stream_state_indication,
                 int auxiliary_data_size_length, std::uint32_t samples_per_frame) {
    const int pt = payload_type.value_or(-1);
    if (codec == "h264" || codec == "h265") {
      const Codec c = parse_codec(codec);
      // The depacketizer sorts units by their headers and drops what is not a parameter set, as it
      // does for an SDP's sprop values, so all units go in one list here.
      ParameterSets ps;
      ps.codec = c;
      for (const py::handle& h : parameter_sets) {
        const BufferView view(py::reinterpret_borrow<py::buffer>(h));
        ps.sps.emplace_back(view.span().begin(), view.span().end());
      }
      VideoDepacketizerOptions opt;
      opt.payload_type = pt;
      opt.max_don_diff = max_don_diff;
      opt.max_access_unit_bytes = max_access_unit_bytes;
      opt.max_nal_units = max_nal_units;
      video_ = std::make_unique<VideoDepacketizer>(c, ps, opt);
      impl_ = video_.get();
    } else if (codec == "aac") {
      AacOptions opt;
      opt.payload_type = pt;
      opt.size_length = size_length;
      opt.index_length = index_length;
      opt.index_delta_length = index_delta_length;
      opt.cts_delta_length = cts_delta_length;
      opt.dts_delta_length = dts_delta_length;
      opt.random_access_indication = random_access_indication;
      opt.stream_state_indication = stream_state_indication;
      opt.auxiliary_data_size_length = auxiliary_data_size_length;
      opt.samples_per_frame = samples_per_frame;
      owned_ = std::make_unique<AacDepacketizer>(opt);
      impl_ = owned_.get();
    } else if (codec == "pcmu" || codec == "pcma") {
      owned_ = std::make_unique<G711Depacketizer>(pt);
      impl_ = owned_.get();
    } else {
      throw py::value_error("codec must be 'h264', 'h265', 'aac', 'pcmu' or 'pcma', not '" + codec + "'");
    }
    codec_ = codec;
  }

  py::list push(const py::buffer& packet, std::uint32_t lost) {
    const BufferView view(packet);
    return to_py(impl_->push(parse_packet(view.span()), lost));
  }
  void reset() { impl_->reset(); }
  py::list parameter_sets() const { return to_py(video_ ? &video_->parameter_sets() : nullptr); }
  py::dict stats() const { return stats_dict(impl_->stats()); }
  std::string last_error() const { return impl_->last_error(); }
  std::string kind() const { return impl_->kind() == MediaKind::Video ? "video" : "audio"; }
  const std::string& codec() const { return codec_; }

 private:
  std::unique_ptr<VideoDepacketizer> video_;
  std::unique_ptr<Depacketizer> owned_;
  Depacketizer* impl_ = nullptr;
  std::string codec_;
};

using Released = std::vector<std::tuple<py::bytes, std::uint32_t>>;

class PyReorderWindow {
 public:
  PyReorderWindow(std::size_t capacity, std::size_t max_packet_size, std::int64_t max_delay_us)
      : window_(ReorderOptions{capacity, max_packet_size, max_delay_us}) {}

  Released push(const py::buffer& packet, std::int64_t now_us) {
    const BufferView view(packet);
    Released out;
    window_.push(view.span(), now_us, [&](const Packet& p, std::uint32_t lost) { out.emplace_back(whole(p), lost); });
    return out;
  }
  Released poll(std::int64_t now_us) {
    Released out;
    window_.poll(now_us, [&](const Packet& p, std::uint32_t lost) { out.emplace_back(whole(p), lost); });
    return out;
  }
  Released flush() {
    Released out;
    window_.flush([&](const Packet& p, std::uint32_t lost) { out.emplace_back(whole(p), lost); });
    return out;
  }
  std::optional<std::int64_t> next_deadline_us() const {
    const std::int64_t d = window_.next_deadline_us();
    if (d == std::numeric_limits<std::int64_t>::max()) return std::nullopt;
    return d;
  }
  std::size_t held() const { return window_.held(); }
  py::dict stats() const {
    const ReorderStats& s = window_.stats();
    py::dict d;
    d["packets"] = s.packets;
    d["released"] = s.released;
    d["reordered"] = s.reordered;
    d["lost"] = s.lost;
    d["late"] = s.late;
    d["duplicates"] = s.duplicates;
    d["oversized"] = s.oversized;
    d["restarts"] = s.restarts;
    return d;
  }

 private:
  static py::bytes whole(const Packet& p) { return to_pybytes(p.data); }

  ReorderWindow window_;
};

const char* event_name(SequenceEvent e) {
  switch (e) {
    case SequenceEvent::First: return "first";
    case SequenceEvent::InOrder: return "in_order";
    case SequenceEvent::Restart: return "restart";
    case SequenceEvent::Duplicate: return "duplicate";
    case SequenceEvent::Late: return "late";
    case SequenceEvent::Probation: return "probation";
  }
  return "?";
}

}  // namespace

void register_rtp(py::module_& m) {
  py::class_<PyRtpPacket>(m, "RtpPacket", "One parsed RTP packet (RFC 3550 §5.1).")
      .def_readonly("marker", &PyRtpPacket::marker)
      .def_readonly("payload_type", &PyRtpPacket::payload_type)
      .def_readonly("sequence", &PyRtpPacket::sequence)
      .def_readonly("timestamp", &PyRtpPacket::timestamp)
      .def_readonly("ssrc", &PyRtpPacket::ssrc)
      .def_readonly("csrcs", &PyRtpPacket::csrcs)
      .def_readonly("extension_profile", &PyRtpPacket::extension_profile,
                    "The header extension's profile (0xBEDE: RFC 8285 one-byte), or None.")
      .def_readonly("extension", &PyRtpPacket::extension, "The header extension's data, or None.")
      .def_readonly("padding", &PyRtpPacket::padding, "Padding bytes removed from the end.")
      .def_readonly("payload", &PyRtpPacket::payload);

  m.def(
      "parse_rtp", [](const py::buffer& data) { return to_py(parse_packet(BufferView(data).span())); },
      py::arg("data"), "Parses and validates one RTP packet.");

  py::class_<SenderReport>(m, "SenderReport", "The sender info of an RTCP SR (RFC 3550 §6.4.1).")
      .def_readonly("ssrc", &SenderReport::ssrc)
      .def_readonly("ntp_time", &SenderReport::ntp_time, "64-bit NTP timestamp.")
      .def_readonly("rtp_time", &SenderReport::rtp_time)
      .def_readonly("packet_count", &SenderReport::packet_count)
      .def_readonly("octet_count", &SenderReport::octet_count);

  py::class_<ReceptionReport>(m, "ReceptionReport", "One RTCP report block (RFC 3550 §6.4.1).")
      .def(py::init([](std::uint32_t ssrc, int fraction_lost, std::int32_t cumulative_lost,
                       std::uint32_t highest_sequence, std::uint32_t jitter, std::uint32_t last_sr,
                       std::uint32_t delay_since_last_sr) {
             if (fraction_lost < 0 || fraction_lost > 255) throw py::value_error("fraction_lost must be 0..255");
             ReceptionReport r;
             r.ssrc = ssrc;
             r.fraction_lost = static_cast<std::uint8_t>(fraction_lost);
             r.cumulative_lost = cumulative_lost;
             r.highest_sequence = highest_sequence;
             r.jitter = jitter;
             r.last_sr = last_sr;
             r.delay_since_last_sr = delay_since_last_sr;
             return r;
           }),
           py::arg("ssrc"), py::arg("fraction_lost") = 0, py::arg("cumulative_lost") = 0,
           py::arg("highest_sequence") = 0, py::arg("jitter") = 0, py::arg("last_sr") = 0,
           py::arg("delay_since_last_sr") = 0)
      .def_readonly("reporter_ssrc", &ReceptionReport::reporter_ssrc)
      .def_readonly("ssrc", &ReceptionReport::ssrc)
      .def_readonly("fraction_lost", &ReceptionReport::fraction_lost)
      .def_readonly("cumulative_lost", &ReceptionReport::cumulative_lost)
      .def_readonly("highest_sequence", &ReceptionReport::highest_sequence)
      .def_readonly("jitter", &ReceptionReport::jitter)
      .def_readonly("last_sr", &ReceptionReport::last_sr)
      .def_readonly("delay_since_last_sr", &ReceptionReport::delay_since_last_sr);

  py::class_<PyRtcp>(m, "RtcpCompound", "What one compound RTCP packet carries.")
      .def_readonly("sender_reports", &PyRtcp::sender_reports)
      .def_readonly("reports", &PyRtcp::reports)
      .def_readonly("sdes", &PyRtcp::sdes, "(ssrc, item type, text) per SDES item.")
      .def_readonly("byes", &PyRtcp::byes)
      .def_readonly("apps", &PyRtcp::apps, "(ssrc, subtype, name, data) per APP packet.")
      .def_readonly("other_packets", &PyRtcp::other_packets)
      .def_readonly("packets", &PyRtcp::packets);

  m.def(
      "parse_rtcp",
      [](const py::buffer& data) {
        const BufferView view(data);
        RtcpCompound c;
        parse_rtcp(view.span(), c);
        PyRtcp out{c.sender_reports, c.reports, {}, c.byes, {}, c.other_packets, c.packets};
        for (const SdesItem& i : c.sdes) out.sdes.emplace_back(i.ssrc, i.type, to_pybytes(i.text));
        for (const AppPacket& a : c.apps)
          out.apps.emplace_back(a.ssrc, a.subtype, py::bytes(a.name, 4), to_pybytes(a.data));
        return out;
      },
      py::arg("data"), "Parses a compound RTCP packet (SR, RR, SDES, BYE, APP; others counted).");

  m.def(
      "rtcp_receiver_report",
      [](std::uint32_t ssrc, const std::vector<ReceptionReport>& reports, const std::string& cname) {
        Bytes out(receiver_report_size(reports.size(), cname.size()));
        out.resize(write_receiver_report(ssrc, reports, cname, out));
        return to_pybytes(out);
      },
      py::arg("ssrc"), py::arg("reports"), py::arg("cname"),
      "A compound RTCP packet: RR with the given report blocks, then SDES with the CNAME.");

  m.def(
      "rtcp_sender_report",
      [](std::uint32_t ssrc, std::uint64_t ntp_time, std::uint32_t rtp_time, std::uint32_t packet_count,
         std::uint32_t octet_count, const std::string& cname) {
        const SenderReport sr{ssrc, ntp_time, rtp_time, packet_count, octet_count};
        Bytes out(sender_report_size(cname.size()));
        out.resize(write_sender_report(sr, cname, out));
        return to_pybytes(out);
      },
      py::arg("ssrc"), py::arg("ntp_time"), py::arg("rtp_time"), py::arg("packet_count"),
      py::arg("octet_count"), py::arg("cname"), "A compound RTCP packet: SR, then SDES with the CNAME.");

  m.def("ntp_to_unix_us", &ntp_to_unix_us, py::arg("ntp_time"),
        "64-bit NTP time to microseconds since the Unix epoch (RFC 4330 eras).");
  m.def("unix_us_to_ntp", &unix_us_to_ntp, py::arg("unix_us"));

  py::class_<SequenceTracker>(m, "SequenceTracker",
                              "Sequence numbers, loss and jitter of one RTP source (RFC 3550 A.1, A.3, A.8).")
      .def(py::init<>())
      .def(
          "update",
          [](SequenceTracker& t, std::uint16_t sequence) {
            const SequenceResult r = t.update(sequence);
            return std::make_tuple(std::string(event_name(r.event)), r.lost);
          },
          py::arg("sequence"),
          "(event, lost): event is first, in_order, restart, duplicate, late or probation.")
      .def("update_jitter", &SequenceTracker::update_jitter, py::arg("rtp_timestamp"),
           py::arg("arrival_rtp_units"))
      .def("on_sender_report", &SequenceTracker::on_sender_report, py::arg("ntp_time"), py::arg("arrival_us"))
      .def("report", &SequenceTracker::report, py::arg("source_ssrc"), py::arg("now_us"))
      .def_property_readonly("received", &SequenceTracker::received)
      .def_property_readonly("expected", &SequenceTracker::expected)
      .def_property_readonly("lost", &SequenceTracker::lost)
      .def_property_readonly("duplicates", &SequenceTracker::duplicates)
      .def_property_readonly("late", &SequenceTracker::late)
      .def_property_readonly("restarts", &SequenceTracker::restarts)
      .def_property_readonly("jitter", &SequenceTracker::jitter);

  py::class_<PyReorderWindow>(m, "ReorderWindow", "Puts RTP packets received over UDP back in order.")
      .def(py::init<std::size_t, std::size_t, std::int64_t>(), py::arg("capacity") = 64,
           py::arg("max_packet_size") = 2048, py::arg("max_delay_us") = 100'000)
      .def("push", &PyReorderWindow::push, py::arg("packet"), py::arg("now_us"),
           "Returns the (packet, lost_before) pairs released, in sequence order.")
      .def("poll", &PyReorderWindow::poll, py::arg("now_us"))
      .def("flush", &PyReorderWindow::flush)
      .def_property_readonly("next_deadline_us", &PyReorderWindow::next_deadline_us)
      .def_property_readonly("held", &PyReorderWindow::held)
      .def_property_readonly("stats", &PyReorderWindow::stats);

  py::class_<PyAccessUnit>(m, "RtpAccessUnit", "One access unit (or audio frame) from an RtpDepacketizer.")
      .def_readonly("kind", &PyAccessUnit::kind, "'video' or 'audio'.")
      .def_readonly("data", &PyAccessUnit::data,
                    "Video: 4-byte length-prefixed NAL units. Audio: one raw frame.")
      .def_readonly("rtp_timestamp", &PyAccessUnit::rtp_timestamp)
      .def_readonly("keyframe", &PyAccessUnit::keyframe)
      .def_readonly("gap", &PyAccessUnit::gap)
      .def_readonly("dropped_frames", &PyAccessUnit::dropped_frames)
      .def_readonly("lost_packets", &PyAccessUnit::lost_packets)
      .def_readonly("parameter_sets_changed", &PyAccessUnit::parameter_sets_changed)
      .def_readonly("parameter_sets", &PyAccessUnit::parameter_sets,
                    "Video: the VPS/SPS/PPS NAL units this unit decodes with.");

  py::class_<PyDepacketizer>(m, "RtpDepacketizer", "RTP packets in, access units out.")
      .def(py::init<const std::string&, const py::sequence&, std::optional<int>, int, std::size_t,
                    std::size_t, int, int, int, int, int, bool, int, int, std::uint32_t>(),
           py::arg("codec"), py::arg("parameter_sets") = py::tuple(), py::kw_only(),
           py::arg("payload_type") = py::none(), py::arg("max_don_diff") = 0,
           py::arg("max_access_unit_bytes") = std::size_t(16) << 20, py::arg("max_nal_units") = 2048,
           py::arg("size_length") = 13, py::arg("index_length") = 3, py::arg("index_delta_length") = 3,
           py::arg("cts_delta_length") = 0, py::arg("dts_delta_length") = 0,
           py::arg("random_access_indication") = false, py::arg("stream_state_indication") = 0,
           py::arg("auxiliary_data_size_length") = 0, py::arg("samples_per_frame") = 1024)
      .def("push", &PyDepacketizer::push, py::arg("packet"), py::arg("lost") = 0,
           "Feeds one RTP packet; returns the access units it completed.")
      .def("reset", &PyDepacketizer::reset)
      .def_property_readonly("parameter_sets", &PyDepacketizer::parameter_sets,
                             "The current VPS/SPS/PPS NAL units (video).")
      .def_property_readonly("stats", &PyDepacketizer::stats)
      .def_property_readonly("last_error", &PyDepacketizer::last_error)
      .def_property_readonly("kind", &PyDepacketizer::kind)
      .def_property_readonly("codec", &PyDepacketizer::codec);

  py::class_<Packetizer>(m, "RtpPacketizer", "Access units in, RTP packets out (RFC 6184 / RFC 7798).")
      .def(py::init([](const std::string& codec, std::size_t max_payload_size, std::uint8_t payload_type,
                       std::uint32_t ssrc, std::uint16_t sequence, bool aggregate, bool single_nal_only) {
             if (payload_type > 127) throw py::value_error("payload_type must be 0..127");
             PacketizerOptions opt;
             opt.max_payload_size = max_payload_size;
             opt.payload_type = payload_type;
             opt.ssrc = ssrc;
             opt.first_sequence = sequence;
             opt.aggregate = aggregate;
             opt.single_nal_only = single_nal_only;
             return Packetizer(parse_codec(codec), opt);
           }),
           py::arg("codec"), py::arg("max_payload_size") = 1400, py::kw_only(),
           py::arg("payload_type") = 96, py::arg("ssrc") = 0, py::arg("sequence") = 0,
           py::arg("aggregate") = true, py::arg("single_nal_only") = false)
      .def(
          "packetize",
          [](Packetizer& p, const py::buffer& au, std::uint32_t rtp_timestamp, bool annexb) {
            const BufferView view(au);
            p.begin(view.span(), rtp_timestamp, annexb);
            Bytes buf(p.max_packet_size());
            py::list out;
            while (const std::size_t n = p.next(buf)) out.append(to_pybytes(ByteSpan(buf.data(), n)));
            return out;
          },
          py::arg("au"), py::arg("rtp_timestamp"), py::arg("annexb") = true,
          "The RTP packets of one access unit (Annex-B, or 4-byte length-prefixed).")
      .def_property_readonly("next_sequence", &Packetizer::next_sequence);

  py::class_<Timeline>(m, "Timeline", "RTP timestamps to a monotonic 64-bit timeline, and wall clock.")
      .def(py::init([](std::uint32_t clock_rate, double max_forward_jump_s, std::uint32_t max_backward_ticks,
                       std::uint32_t frame_duration_ticks, double max_slew_ppm,
                       double max_sender_report_error_s, double startup_s, double startup_slew_ppm) {
             TimelineOptions opt;
             opt.clock_rate = clock_rate;
             opt.max_forward_jump_s = max_forward_jump_s;
             opt.max_backward_ticks = max_backward_ticks;
             opt.frame_duration_ticks = frame_duration_ticks;
             opt.max_slew_ppm = max_slew_ppm;
             opt.max_sender_report_error_s = max_sender_report_error_s;
             opt.startup_s = startup_s;
             opt.startup_slew_ppm = startup_slew_ppm;
             return Timeline(opt);
           }),
           py::arg("clock_rate") = 90'000, py::kw_only(), py::arg("max_forward_jump_s") = 10.0,
           py::arg("max_backward_ticks") = 0, py::arg("frame_duration_ticks") = 0,
           py::arg("max_slew_ppm") = 500.0, py::arg("max_sender_report_error_s") = 5.0,
           py::arg("startup_s") = 60.0, py::arg("startup_slew_ppm") = 100'000.0)
      .def(
          "advance",
          [](Timeline& t, std::uint32_t rtp_timestamp, std::optional<std::int64_t> arrival_us) {
            return t.advance(rtp_timestamp, arrival_us.value_or(Timeline::kNoArrival));
          },
          py::arg("rtp_timestamp"), py::arg("arrival_us") = py::none())
      .def_property_readonly("discontinuity", &Timeline::discontinuity)
      .def("on_sender_report", &Timeline::on_sender_report, py::arg("ntp_time"), py::arg("rtp_time"))
      .def("wall_clock_us", &Timeline::wall_clock_us, py::arg("ticks"), py::arg("arrival_unix_us"))
      .def_property_readonly("has_sender_report", &Timeline::has_sender_report)
      .def_property_readonly("stats", [](const Timeline& t) {
        const TimelineStats& s = t.stats();
        py::dict d;
        d["discontinuities"] = s.discontinuities;
        d["wraps"] = s.wraps;
        d["sender_reports"] = s.sender_reports;
        d["sender_reports_ignored"] = s.sender_reports_ignored;
        return d;
      });
}

}  // namespace vms::bind
