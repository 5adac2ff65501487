// Bindings of the RTSP and SDP wire formats (vmscore/rtsp.hpp, vmscore/sdp.hpp), for tests and for
// the Python layer's use outside the packet path (describing a camera, checking a URL).
//
// Text from a peer is not always UTF-8 (camera names in GBK, stray bytes), so strings cross in both
// directions as UTF-8 with "surrogateescape": any byte survives a round trip through Python.
// Every call holds the GIL: each parses one message or description, cheaper than releasing it.
#include <pybind11/stl.h>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"
#include "vmscore/sdp.hpp"

namespace vms::bind {
namespace {

py::str text(std::string_view s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<py::ssize_t>(s.size()), "surrogateescape");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

std::optional<py::str> maybe_text(const std::optional<std::string_view>& s) {
  if (!s) return std::nullopt;
  return text(*s);
}

std::string utf8(const py::handle& s) {
  if (!PyUnicode_Check(s.ptr())) throw py::type_error("expected str");
  PyObject* b = PyUnicode_AsEncodedString(s.ptr(), "utf-8", "surrogateescape");
  if (!b) throw py::error_already_set();
  const py::bytes owned = py::reinterpret_steal<py::bytes>(b);
  return std::string(owned);
}

// str (encoded as above) or any bytes-like object.
std::string text_or_bytes(const py::handle& data) {
  if (PyUnicode_Check(data.ptr())) return utf8(data);
  const BufferView view(py::reinterpret_borrow<py::buffer>(data));
  const ByteSpan s = view.span();
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

template <typename T, typename Member>
void def_text(py::class_<T>& cls, const char* name, std::string Member::*member) {
  cls.def_property_readonly(name, [member](const T& self) { return text(self.*member); });
}

py::list text_pairs(const auto& items, auto name_of, auto value_of) {
  py::list out;
  for (const auto& item : items) out.append(py::make_tuple(text(name_of(item)), text(value_of(item))));
  return out;
}

std::vector<rtsp::Header> headers_from(const py::sequence& items) {
  std::vector<rtsp::Header> out;
  for (const py::handle& item : items) {
    const py::sequence pair = py::reinterpret_borrow<py::sequence>(item);
    if (py::len(pair) != 2) throw py::value_error("headers must be (name, value) pairs");
    out.push_back({utf8(pair[0]), utf8(pair[1])});
  }
  return out;
}

// A parsed message and the bytes it took on the wire.
struct ParsedMessage : rtsp::Message {
  std::size_t wire_size = 0;
};

py::object optional_pair(const auto& p) {
  if (!p) return py::none();
  return py::make_tuple(p->first, p->second);
}

const char* scheme_name(rtsp::AuthScheme s) {
  switch (s) {
    case rtsp::AuthScheme::Basic: return "basic";
    case rtsp::AuthScheme::Digest: return "digest";
    case rtsp::AuthScheme::Other: break;
  }
  return "other";
}

std::vector<rtsp::Challenge> challenges_from(const py::object& www_authenticate) {
  std::vector<rtsp::Challenge> all;
  if (PyUnicode_Check(www_authenticate.ptr())) return rtsp::parse_www_authenticate(utf8(www_authenticate));
  for (const py::handle& v : py::reinterpret_borrow<py::sequence>(www_authenticate))
    for (rtsp::Challenge& c : rtsp::parse_www_authenticate(utf8(v))) all.push_back(std::move(c));
  return all;
}

void register_messages(py::module_& m) {
  py::class_<ParsedMessage> msg(m, "RtspMessage", "One RTSP request or response.");
  msg.def_readonly("is_request", &ParsedMessage::is_request)
      .def_readonly("status", &ParsedMessage::status, "Response status code (0 for requests).")
      .def_readonly("content_length", &ParsedMessage::content_length)
      .def_readonly("wire_size", &ParsedMessage::wire_size,
                    "Bytes of the input this message took (start line to end of body).")
      .def_property_readonly("headers", [](const ParsedMessage& self) {
        return text_pairs(self.headers, [](const rtsp::Header& h) { return h.name; },
                          [](const rtsp::Header& h) { return h.value; });
      }, "(name, value) pairs in order received.")
      .def_property_readonly("body", [](const ParsedMessage& self) {
        return py::bytes(self.body);
      })
      .def_property_readonly("cseq", &ParsedMessage::cseq)
      .def("header", [](const ParsedMessage& self, const py::str& name) {
        return maybe_text(self.header(utf8(name)));
      }, py::arg("name"), "The first header of that name (case-insensitive), or None.")
      .def("header_values", [](const ParsedMessage& self, const py::str& name) {
        py::list out;
        for (std::string_view v : self.header_values(utf8(name))) out.append(text(v));
        return out;
      }, py::arg("name"), "Every header of that name, in order.")
      .def("to_bytes", [](const ParsedMessage& self) {
        return py::bytes(rtsp::format_message(self));
      }, "The message as wire text (Content-Length matching the body).")
      .def("__repr__", [](const ParsedMessage& self) {
        if (self.is_request) return "RtspMessage(" + self.method + " " + self.uri + ")";
        return "RtspMessage(" + std::to_string(self.status) + " " + self.reason + ")";
      });
  def_text(msg, "method", &ParsedMessage::method);
  def_text(msg, "uri", &ParsedMessage::uri);
  def_text(msg, "reason", &ParsedMessage::reason);
  def_text(msg, "version", &ParsedMessage::version);

  m.def(
      "parse_rtsp",
      [](const py::buffer& data, std::size_t max_header_bytes, std::size_t max_headers,
         std::size_t max_body_bytes) -> py::object {
        const BufferView view(data);
        const rtsp::Limits limits{max_header_bytes, max_headers, max_body_bytes};
        ParsedMessage out;
        const rtsp::Item item = rtsp::parse_next(view.span(), out, limits);
        switch (item.kind) {
          case rtsp::ItemKind::NeedMore: return py::none();
          case rtsp::ItemKind::Interleaved:
            return py::make_tuple("interleaved", item.frame.channel, to_pybytes(item.frame.payload));
          case rtsp::ItemKind::Message: break;
        }
        out.wire_size = item.consumed;
        return py::cast(std::move(out));
      },
      py::arg("data"), py::kw_only(), py::arg("max_header_bytes") = rtsp::Limits{}.max_header_bytes,
      py::arg("max_headers") = rtsp::Limits{}.max_headers,
      py::arg("max_body_bytes") = rtsp::Limits{}.max_body_bytes,
      "Parses the item at the start of an RTSP connection's bytes: an RtspMessage, "
      "('interleaved', channel, payload), or None when more bytes are needed.");

  m.def(
      "format_rtsp_request",
      [](const py::str& method, const py::str& uri, std::uint32_t cseq, const py::sequence& headers,
         const py::bytes& body) {
        const auto hs = headers_from(headers);
        return py::bytes(rtsp::format_request(utf8(method), utf8(uri), cseq, hs, std::string(body)));
      },
      py::arg("method"), py::arg("uri"), py::arg("cseq"), py::arg("headers") = py::tuple(),
      py::arg("body") = py::bytes(), "The wire text of an RTSP request.");
  m.def(
      "format_rtsp_response",
      [](int status, const py::str& reason, std::uint32_t cseq, const py::sequence& headers,
         const py::bytes& body) {
        const auto hs = headers_from(headers);
        return py::bytes(rtsp::format_response(status, utf8(reason), cseq, hs, std::string(body)));
      },
      py::arg("status"), py::arg("reason"), py::arg("cseq"), py::arg("headers") = py::tuple(),
      py::arg("body") = py::bytes(), "The wire text of an RTSP response.");
  m.def(
      "rtsp_interleaved_header",
      [](std::uint8_t channel, std::size_t size) {
        const auto h = rtsp::interleaved_header(channel, size);
        return to_pybytes(ByteSpan(h));
      },
      py::arg("channel"), py::arg("size"), "The 4-byte '$' header of an interleaved frame.");
}

void register_headers(py::module_& m) {
  py::class_<rtsp::Transport> tr(m, "RtspTransport", "One transport-spec of a Transport header.");
  tr.def_readonly("tcp", &rtsp::Transport::tcp)
      .def_readonly("multicast", &rtsp::Transport::multicast)
      .def_property_readonly("interleaved", [](const rtsp::Transport& t) { return optional_pair(t.interleaved); })
      .def_property_readonly("client_port", [](const rtsp::Transport& t) { return optional_pair(t.client_port); })
      .def_property_readonly("server_port", [](const rtsp::Transport& t) { return optional_pair(t.server_port); })
      .def_property_readonly("port", [](const rtsp::Transport& t) { return optional_pair(t.port); })
      .def_readonly("ssrc", &rtsp::Transport::ssrc)
      .def_readonly("ttl", &rtsp::Transport::ttl)
      .def("to_string", &rtsp::Transport::to_string)
      .def("__repr__", [](const rtsp::Transport& t) { return "RtspTransport('" + t.to_string() + "')"; });
  def_text(tr, "protocol", &rtsp::Transport::protocol);
  def_text(tr, "destination", &rtsp::Transport::destination);
  def_text(tr, "source", &rtsp::Transport::source);
  def_text(tr, "mode", &rtsp::Transport::mode);

  m.def("parse_transport", [](const py::str& v) { return rtsp::parse_transport(utf8(v)); },
        py::arg("value"), "The first usable transport-spec of a Transport header value.");
  m.def(
      "parse_session",
      [](const py::str& v) {
        const rtsp::Session s = rtsp::parse_session(utf8(v));
        return py::make_tuple(text(s.id), s.timeout_s);
      },
      py::arg("value"), "(session id, timeout in seconds) of a Session header value.");

  py::class_<rtsp::RtpInfo> info(m, "RtpInfo", "One stream of an RTP-Info header.");
  info.def_readonly("seq", &rtsp::RtpInfo::seq)
      .def_readonly("rtptime", &rtsp::RtpInfo::rtptime)
      .def_readonly("ssrc", &rtsp::RtpInfo::ssrc)
      .def("__repr__", [](const rtsp::RtpInfo& i) {
        const auto num = [](const auto& o) { return o ? std::to_string(*o) : std::string("None"); };
        return "RtpInfo(url='" + i.url + "', seq=" + num(i.seq) + ", rtptime=" + num(i.rtptime) + ")";
      });
  def_text(info, "url", &rtsp::RtpInfo::url);
  m.def("parse_rtp_info", [](const py::str& v) { return rtsp::parse_rtp_info(utf8(v)); },
        py::arg("value"), "The entries of an RTP-Info header value.");
  m.def(
      "parse_public",
      [](const py::str& v) {
        py::list out;
        for (const std::string& s : rtsp::parse_public(utf8(v))) out.append(text(s));
        return out;
      },
      py::arg("value"), "The methods of a Public header value.");
  m.def(
      "resolve_control",
      [](const py::str& base, const py::str& control) {
        return text(rtsp::resolve_control(utf8(base), utf8(control)));
      },
      py::arg("base_url"), py::arg("control"),
      "The URL of an SDP control attribute relative to the presentation's base URL.");
  m.def(
      "content_base",
      [](const ParsedMessage& response, const py::str& request_url) {
        return text(rtsp::content_base(response, utf8(request_url)));
      },
      py::arg("response"), py::arg("request_url"),
      "The base URL of a DESCRIBE response: Content-Base, Content-Location or the request URL.");
}

void register_url(py::module_& m) {
  py::class_<rtsp::Url> url(m, "RtspUrl", "An rtsp:// URL; str() and repr() leave out credentials.");
  url.def_readonly("has_credentials", &rtsp::Url::has_credentials)
      .def_readonly("port", &rtsp::Url::port)
      .def_readonly("port_given", &rtsp::Url::port_given)
      .def("to_string", [](const rtsp::Url& u, bool with) { return text(u.to_string(with)); },
           py::arg("with_credentials") = false)
      .def("redacted", [](const rtsp::Url& u) { return text(u.redacted()); })
      .def("__str__", [](const rtsp::Url& u) { return text(u.redacted()); })
      .def("__repr__", [](const rtsp::Url& u) { return py::str("RtspUrl('{}')").format(text(u.redacted())); });
  def_text(url, "scheme", &rtsp::Url::scheme);
  def_text(url, "user", &rtsp::Url::user);
  def_text(url, "password", &rtsp::Url::password);
  def_text(url, "host", &rtsp::Url::host);
  def_text(url, "path", &rtsp::Url::path);
  m.def("parse_url", [](const py::str& s) { return rtsp::parse_url(utf8(s)); }, py::arg("url"),
        "Parses rtsp://user:password@host:port/path (credentials percent-decoded).");
}

void register_auth(py::module_& m) {
  py::class_<rtsp::Challenge> ch(m, "AuthChallenge", "One challenge of a WWW-Authenticate header.");
  ch.def_property_readonly("scheme", [](const rtsp::Challenge& c) { return scheme_name(c.scheme); },
                           "'basic', 'digest' or 'other'.")
      .def_readonly("stale", &rtsp::Challenge::stale)
      .def_property_readonly("qop", [](const rtsp::Challenge& c) {
        py::list out;
        for (const std::string& q : c.qop) out.append(text(q));
        return out;
      })
      .def_property_readonly("params", [](const rtsp::Challenge& c) {
        return text_pairs(c.params, [](const rtsp::AuthParam& p) { return p.name; },
                          [](const rtsp::AuthParam& p) { return p.value; });
      })
      .def_property_readonly("is_supported", &rtsp::Challenge::is_supported)
      .def_property_readonly("is_md5_sess", &rtsp::Challenge::is_md5_sess)
      .def("__repr__", [](const rtsp::Challenge& c) {
        return "AuthChallenge(" + c.scheme_name + ", realm='" + c.realm + "')";
      });
  def_text(ch, "scheme_name", &rtsp::Challenge::scheme_name);
  def_text(ch, "realm", &rtsp::Challenge::realm);
  def_text(ch, "nonce", &rtsp::Challenge::nonce);
  def_text(ch, "opaque", &rtsp::Challenge::opaque);
  def_text(ch, "algorithm", &rtsp::Challenge::algorithm);
  def_text(ch, "token68", &rtsp::Challenge::token68);

  m.def("parse_www_authenticate", [](const py::str& v) { return rtsp::parse_www_authenticate(utf8(v)); },
        py::arg("value"), "Every challenge of one WWW-Authenticate header value.");
  m.def("parse_authorization", [](const py::str& v) { return rtsp::parse_authorization(utf8(v)); },
        py::arg("value"), "The parameters of an Authorization header value a client sent.");
  m.def(
      "digest_authorization",
      [](const py::object& www_authenticate, const py::str& username, const py::str& password,
         const py::str& method, const py::str& uri, const py::str& cnonce, std::uint32_t nc,
         const py::bytes& body) {
        const std::vector<rtsp::Challenge> all = challenges_from(www_authenticate);
        const rtsp::Challenge* best = rtsp::best_challenge(all);
        if (!best) throw BitstreamError("RTSP authentication: no supported challenge (Digest MD5 or Basic)");
        return text(rtsp::authorization(*best, utf8(username), utf8(password), utf8(method), utf8(uri),
                                        utf8(cnonce), nc, std::string(body)));
      },
      py::arg("www_authenticate"), py::arg("username"), py::arg("password"), py::arg("method"),
      py::arg("uri"), py::kw_only(), py::arg("cnonce") = "", py::arg("nc") = 1,
      py::arg("body") = py::bytes(),
      "The Authorization value answering the best challenge (Digest before Basic) of one or more "
      "WWW-Authenticate values.");
  m.def(
      "digest_response",
      [](const py::str& username, const py::str& realm, const py::str& password, const py::str& method,
         const py::str& uri, const py::str& nonce, const py::str& qop, std::uint32_t nc,
         const py::str& cnonce, bool md5_sess, const py::bytes& body) {
        return rtsp::digest_response(utf8(username), utf8(realm), utf8(password), utf8(method),
                                     utf8(uri), utf8(nonce), md5_sess, utf8(qop), nc, utf8(cnonce),
                                     std::string(body));
      },
      py::arg("username"), py::arg("realm"), py::arg("password"), py::arg("method"), py::arg("uri"),
      py::arg("nonce"), py::kw_only(), py::arg("qop") = "", py::arg("nc") = 1, py::arg("cnonce") = "",
      py::arg("md5_sess") = false, py::arg("body") = py::bytes(),
      "The Digest response hash (RFC 2617 §3.2.2.1) in lower-case hex.");
  m.def(
      "md5_hex", [](const py::object& data) { return rtsp::md5_hex(text_or_bytes(data)); },
      py::arg("data"), "MD5 (RFC 1321) of bytes or of a str's UTF-8, in lower-case hex.");
}

void register_sdp(py::module_& m) {
  py::class_<sdp::AacConfig> aac(m, "AacConfig", "mpeg4-generic AAC configuration (RFC 3640).");
  aac.def_property_readonly("audio_specific_config",
                            [](const sdp::AacConfig& c) { return to_pybytes(c.audio_specific_config); })
      .def_readonly("object_type", &sdp::AacConfig::object_type)
      .def_readonly("sample_rate", &sdp::AacConfig::sample_rate)
      .def_readonly("channels", &sdp::AacConfig::channels)
      .def_readonly("size_length", &sdp::AacConfig::size_length)
      .def_readonly("index_length", &sdp::AacConfig::index_length)
      .def_readonly("index_delta_length", &sdp::AacConfig::index_delta_length);
  def_text(aac, "mode", &sdp::AacConfig::mode);

  py::class_<sdp::Media> media(m, "SdpMedia", "One media section of a session description.");
  media.def_readonly("port", &sdp::Media::port)
      .def_readonly("port_count", &sdp::Media::port_count)
      .def_property_readonly("formats", [](const sdp::Media& s) {
        py::list out;
        for (const std::string& f : s.formats) out.append(text(f));
        return out;
      })
      .def_readonly("payload_type", &sdp::Media::payload_type)
      .def_readonly("clock_rate", &sdp::Media::clock_rate)
      .def_readonly("channels", &sdp::Media::channels)
      .def_property_readonly("fmtp", [](const sdp::Media& s) {
        return text_pairs(s.fmtp, [](const sdp::FmtpParam& p) { return p.name; },
                          [](const sdp::FmtpParam& p) { return p.value; });
      })
      .def_readonly("framerate", &sdp::Media::framerate)
      .def_readonly("bandwidth_kbps", &sdp::Media::bandwidth_kbps)
      .def_property_readonly("attributes", [](const sdp::Media& s) {
        return text_pairs(s.attributes, [](const sdp::Attribute& a) { return a.name; },
                          [](const sdp::Attribute& a) { return a.value; });
      })
      .def("fmtp_param", [](const sdp::Media& s, const py::str& name) { return maybe_text(s.fmtp_param(utf8(name))); },
           py::arg("name"))
      .def("attribute", [](const sdp::Media& s, const py::str& name) { return maybe_text(s.attribute(utf8(name))); },
           py::arg("name"))
      .def_property_readonly("codec", [](const sdp::Media& s) -> std::optional<std::string> {
        const auto c = sdp::video_codec(s);
        if (!c) return std::nullopt;
        return std::string(codec_name(*c));
      }, "'h264' or 'h265' for H.264 / H.265 video, else None.")
      .def_property_readonly("packetization_mode", &sdp::packetization_mode)
      .def_property_readonly("profile_level_id", &sdp::profile_level_id)
      .def_property_readonly("sprop_max_don_diff", &sdp::sprop_max_don_diff)
      .def("parameter_sets", [](const sdp::Media& s) {
        std::vector<std::string> warnings;
        const ParameterSets ps = sdp::parameter_sets(s, &warnings);
        py::list units;
        for (const auto* v : {&ps.vps, &ps.sps, &ps.pps})
          for (const Bytes& b : *v) units.append(to_pybytes(b));
        py::list notes;
        for (const std::string& w : warnings) notes.append(text(w));
        return py::make_tuple(units, notes);
      }, "(VPS, SPS and PPS NAL units from fmtp, warnings about units left out).")
      .def("aac_config", &sdp::aac_config, "The AAC configuration of mpeg4-generic media, else None.")
      .def("__repr__", [](const sdp::Media& s) {
        return "SdpMedia(" + s.type + ", pt=" + std::to_string(s.payload_type) + ", " + s.encoding +
               "/" + std::to_string(s.clock_rate) + ")";
      });
  def_text(media, "type", &sdp::Media::type);
  def_text(media, "protocol", &sdp::Media::protocol);
  def_text(media, "encoding", &sdp::Media::encoding);
  def_text(media, "control", &sdp::Media::control);
  def_text(media, "connection", &sdp::Media::connection);
  def_text(media, "direction", &sdp::Media::direction);

  py::class_<sdp::Session> session(m, "Sdp", "A parsed session description.");
  session.def_readonly("bandwidth_kbps", &sdp::Session::bandwidth_kbps)
      .def_readonly("media", &sdp::Session::media)
      .def_property_readonly("warnings", [](const sdp::Session& s) {
        py::list out;
        for (const std::string& w : s.warnings) out.append(text(w));
        return out;
      })
      .def_property_readonly("attributes", [](const sdp::Session& s) {
        return text_pairs(s.attributes, [](const sdp::Attribute& a) { return a.name; },
                          [](const sdp::Attribute& a) { return a.value; });
      })
      .def("attribute", [](const sdp::Session& s, const py::str& name) { return maybe_text(s.attribute(utf8(name))); },
           py::arg("name"))
      .def_property_readonly("live555_version", [](const sdp::Session& s) { return sdp::live555_version(s.tool); },
                             "YYYYMMDD of a live555 server's a=tool, else None.")
      .def_property_readonly("has_live555_tcp_bug", &sdp::has_live555_tcp_bug,
                             "live555 before 2017.06.04: stale sessions can leak data into new ones.")
      .def("__repr__", [](const sdp::Session& s) {
        return "Sdp(media=" + std::to_string(s.media.size()) + ", warnings=" +
               std::to_string(s.warnings.size()) + ")";
      });
  def_text(session, "origin", &sdp::Session::origin);
  def_text(session, "name", &sdp::Session::name);
  def_text(session, "connection", &sdp::Session::connection);
  def_text(session, "control", &sdp::Session::control);
  def_text(session, "tool", &sdp::Session::tool);
  def_text(session, "range", &sdp::Session::range);

  m.def(
      "parse_sdp",
      [](const py::object& data, std::size_t max_lines, std::size_t max_line_bytes) {
        sdp::Limits limits;
        limits.max_lines = max_lines;
        limits.max_line_bytes = max_line_bytes;
        return sdp::parse(text_or_bytes(data), limits);
      },
      py::arg("data"), py::kw_only(), py::arg("max_lines") = sdp::Limits{}.max_lines,
      py::arg("max_line_bytes") = sdp::Limits{}.max_line_bytes,
      "Parses a session description (str or bytes) as cameras send it.");
}

}  // namespace

void register_rtsp(py::module_& m) {
  register_messages(m);
  register_headers(m);
  register_url(m);
  register_auth(m);
  register_sdp(m);
}

}  // namespace vms::bind
