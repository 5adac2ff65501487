// The camera simulator's RTSP side: requests (RFC 2326 §10: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE,
// GET_PARAMETER, SET_PARAMETER, TEARDOWN), Digest and Basic authentication (RFC 2617, RFC 7617),
// the SDP of each stream (RFC 4566, RFC 6184 §8.1, RFC 7798 §7.1) and the response-shaping faults
// (slow, partial, slowloris, oversized, endless, huge bodies). See vmscore/camera_server.hpp.
//
// Threading: server thread only.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "sim/server_impl.hpp"
#include "vmscore/error.hpp"
#include "vmscore/sdp.hpp"

namespace vms::sim::detail {
namespace {

struct Target {
  Camera* camera = nullptr;
  Stream* stream = nullptr;  // null when the path names no stream of the camera
};

// rtsp://host:port/<name>[/sub|/main][/trackID=N][?query]; the camera is the first path segment.
Target resolve(Impl& server, const std::string& uri) {
  Target t;
  if (uri == "*") return t;
  std::string path;
  if (!uri.empty() && uri.front() == '/') {
    path = uri;
  } else {
    try {
      path = rtsp::parse_url(uri).path;
    } catch (const BitstreamError&) {
      return t;
    }
  }
  if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
  std::vector<std::string_view> segs;
  std::string_view rest(path);
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    if (!seg.empty()) segs.push_back(seg);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (segs.empty()) return t;
  t.camera = server.find_camera(segs[0]);
  if (!t.camera) return t;
  std::size_t i = 1;
  bool sub = false;
  if (i < segs.size() && (segs[i] == "sub" || segs[i] == "main")) sub = segs[i++] == "sub";
  if (i < segs.size() && segs[i].starts_with("trackID=")) ++i;
  if (i != segs.size()) return t;
  t.stream = sub ? t.camera->sub.get() : t.camera->main.get();
  return t;
}

std::string ip_of(const sockaddr_in& a) {
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
  return buf;
}

std::string hex24(ByteSpan sps) {
  char buf[8] = {};
  if (sps.size() < 4) return "42001f";
  std::snprintf(buf, sizeof buf, "%02x%02x%02x", sps[1], sps[2], sps[3]);
  return buf;
}

std::string fps_text(double fps) {
  char buf[32] = {};
  std::snprintf(buf, sizeof buf, "%.6g", fps);
  return buf;
}

std::string join_b64(const std::vector<Bytes>& units, char sep = ',') {
  std::string out;
  for (const Bytes& u : units) {
    if (!out.empty()) out += sep;
    out += sdp::base64_encode(u);
  }
  return out;
}

bool ignores_keepalive(const Camera* cam, const Connection& c) {
  if (!cam || !cam->faults.ignore_keepalives) return false;
  for (const Session* s : c.sessions)
    if (s->playing && !s->stale) return true;
  return false;
}

// Inserts header lines of at least `bytes` in total before the end of a response's header section.
void add_padding_headers(std::string& text, std::size_t bytes) {
  const auto end = text.find("\r\n\r\n");
  if (end == std::string::npos) return;
  std::string pad;
  pad.reserve(bytes + 256);
  for (unsigned i = 0; pad.size() < bytes; ++i) {
    char name[32] = {};
    std::snprintf(name, sizeof name, "\r\nX-Padding-%05u: ", i % 100000);
    pad += name;
    pad.append(200, 'p');
  }
  text.insert(end, pad);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SDP

namespace {

std::string make_sdp(const Camera& cam, const Stream& s, const std::string& local_ip,
                     std::uint64_t session_id) {
  const Clip& clip = *s.clip;
  const Faults& f = cam.faults;
  ParameterSets ps = clip.parameter_sets();
  if (f.sdp_custom_parameter_sets) {
    // Wrong parameter sets (another camera's, another resolution's): sorted by their NAL type
    // when they have one, else listed as SPS, as a camera with broken firmware might.
    ParameterSets custom;
    custom.codec = clip.codec();
    for (const Bytes& u : f.sdp_parameter_sets) {
      NalKind kind = NalKind::Sps;
      try {
        kind = classify_nal(clip.codec(), u).kind;
      } catch (const BitstreamError&) {
      }
      (kind == NalKind::Pps ? custom.pps : kind == NalKind::Vps ? custom.vps : custom.sps).push_back(u);
    }
    ps = std::move(custom);
  }
  const bool with_ps = !f.sdp_without_parameter_sets;
  std::string o;
  o.reserve(512);
  o += "v=0\r\n";
  o += "o=- " + std::to_string(session_id) + " 1 IN IP4 " + local_ip + "\r\n";
  o += "s=" + cam.config.name + (s.is_sub ? " sub-stream" : "") + "\r\n";
  o += "c=IN IP4 0.0.0.0\r\n";
  o += "t=0 0\r\n";
  o += f.live555_stale_s > 0 ? "a=tool:LIVE555 Streaming Media v2013.04.08\r\n"
                             : "a=tool:vmscore camera simulator\r\n";
  o += "a=range:npt=0-\r\n";
  o += "a=control:*\r\n";
  o += "m=video 0 RTP/AVP 96\r\n";
  o += "b=AS:" + std::to_string(static_cast<std::uint64_t>(clip.bitrate_bps() / 1000.0) + 1) + "\r\n";
  if (clip.codec() == Codec::H264) {
    o += "a=rtpmap:96 H264/90000\r\n";
    o += "a=fmtp:96 packetization-mode=1";
    const ByteSpan sps = ps.sps.empty() ? ByteSpan(clip.parameter_sets().sps.front()) : ByteSpan(ps.sps.front());
    o += ";profile-level-id=" + hex24(sps);
    if (with_ps) {
      std::vector<Bytes> all = ps.sps;
      all.insert(all.end(), ps.pps.begin(), ps.pps.end());
      o += ";sprop-parameter-sets=" + join_b64(all);
    }
    o += "\r\n";
  } else {
    o += "a=rtpmap:96 H265/90000\r\n";
    if (with_ps)
      o += "a=fmtp:96 sprop-vps=" + join_b64(ps.vps) + ";sprop-sps=" + join_b64(ps.sps) +
           ";sprop-pps=" + join_b64(ps.pps) + "\r\n";
  }
  o += "a=framerate:" + fps_text(clip.fps()) + "\r\n";
  o += "a=x-dimensions:" + std::to_string(clip.width()) + "," + std::to_string(clip.height()) + "\r\n";
  o += "a=control:trackID=0\r\n";
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Responses

// A PLAY answer's RTP-Info describes the first packet the client will get, so it is written when
// the answer starts to leave, not when the request arrives (a slow answer would otherwise promise
// a keyframe the camera has moved past).
void Impl::render_play(Trickle& t) {
  if (t.rendered) return;
  t.rendered = true;
  const auto at = t.data.find(kRtpInfoMark);
  if (at == std::string::npos) return;
  // A session torn down before its answer left (a pipelined TEARDOWN) gets a neutral RTP-Info.
  t.data.replace(at, kRtpInfoMark.size(),
                 t.start_playing ? play_rtp_info(*t.start_playing) : std::string("seq=0;rtptime=0"));
}

void Impl::respond(Connection& c, Camera* camera, std::string text, Session* start_playing_session) {
  if (c.closed || c.close_pending) return;
  const std::int64_t now = now_ns();
  Trickle t;
  t.start_playing = start_playing_session;
  t.next_ns = now;
  t.chunk = text.size();
  if (camera) {
    const Faults& f = camera->faults;
    if (f.oversized_headers) add_padding_headers(text, f.oversized_headers);
    if (f.huge_body) {
      // The header section claims a huge body, then filler trickles after the real one.
      const auto end = text.find("\r\n\r\n");
      std::string head = text.substr(0, end);
      std::string body = text.substr(end + 4);
      if (const auto cl = head.find("\r\nContent-Length:"); cl != std::string::npos) {
        const auto eol = head.find("\r\n", cl + 2);
        head.erase(cl, (eol == std::string::npos ? head.size() : eol) - cl);
      }
      text = head + "\r\nContent-Length: " + std::to_string(f.huge_body) + "\r\n\r\n" + body;
      t.endless = Trickle::Endless::Body;
      t.body_left = f.huge_body > body.size() ? f.huge_body - body.size() : 0;
      t.chunk = 1024;
      t.interval_ns = std::int64_t(options_.tick_ms) * kMs;
    }
    if (f.endless_response) {
      // The status line and CSeq, then header lines that never end.
      const auto first = text.find("\r\n");
      const auto second = text.find("\r\n", first + 2);
      text.resize(second + 2);
      t.endless = Trickle::Endless::Headers;
      t.chunk = 1024;
      t.interval_ns = std::int64_t(options_.tick_ms) * kMs;
    }
    if (f.slowloris_ms > 0) {
      t.chunk = 1;
      t.interval_ns = f.slowloris_ms * kMs;
    } else if (f.partial_ms > 0) {
      t.chunk = 8;
      t.interval_ns = f.partial_ms * kMs;
    }
    if (f.slow_ms > 0) t.next_ns = now + f.slow_ms * kMs;
  }
  t.data = std::move(text);
  if (c.trickles.empty() && t.next_ns <= now && t.chunk >= t.data.size() &&
      t.endless == Trickle::Endless::No) {
    render_play(t);
    push_out(c, t.data.data(), t.data.size());
    if (start_playing_session) start_playing(*start_playing_session);
    return;
  }
  c.trickles.push_back(std::move(t));
  run_trickles(c, now);
}

void Impl::run_trickles(Connection& c, std::int64_t now) {
  while (!c.trickles.empty() && !c.closed && !c.close_pending) {
    Trickle& t = c.trickles.front();
    if (now < t.next_ns) return;
    // A client that does not read the endless modes must not grow our queue without bound.
    if (c.pending() > 256 * 1024) return;
    if (t.pos >= t.data.size()) {
      if (t.endless == Trickle::Endless::Headers) {
        t.data.clear();
        t.pos = 0;
        while (t.data.size() < t.chunk) {
          t.data += "X-Endless-" + std::to_string(t.filler++) + ": ";
          t.data.append(64, 'e');
          t.data += "\r\n";
        }
      } else if (t.endless == Trickle::Endless::Body && t.body_left > 0) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(t.chunk, t.body_left));
        t.data.assign(n, 'x');
        t.pos = 0;
        t.body_left -= n;
      } else {
        Session* s = t.start_playing;
        c.trickles.pop_front();
        if (s) start_playing(*s);
        continue;
      }
    }
    if (t.pos == 0) render_play(t);
    const std::size_t n = std::min(t.chunk, t.data.size() - t.pos);
    push_out(c, t.data.data() + t.pos, n);
    t.pos += n;
    if (t.pos >= t.data.size() && t.endless == Trickle::Endless::No) continue;  // done: pop above
    t.next_ns = now + t.interval_ns;
    if (t.interval_ns > 0) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

namespace {

std::string session_value(const Session& s, std::uint32_t timeout_s) {
  return s.id + ";timeout=" + std::to_string(timeout_s);
}

}  // namespace

void Impl::handle_request(Connection& c, const rtsp::Message& m) {
  const std::int64_t now = now_ns();
  const std::uint32_t cseq = m.cseq().value_or(0);
  const Target t = resolve(*this, m.uri);
  Camera* cam = t.camera;
  if (cam && !c.camera) {
    c.camera = cam;
    ++cam->stats.connections;
    if (!cam->stale.empty()) attach_stale_sessions(c, *cam);
  }
  if (cam) ++cam->stats.requests;
  Camera* shaping = cam ? cam : c.camera;  // whose faults shape the answer

  Session* ses = nullptr;
  bool session_given = false;
  if (const auto h = m.header("Session")) {
    session_given = true;
    try {
      ses = find_session(rtsp::parse_session(*h).id);
    } catch (const BitstreamError&) {
    }
    if (ses && !ses->stale) ses->last_seen_ns = now;
  }
  std::vector<rtsp::Header> headers;
  const auto reply = [&](int status, std::string_view reason, std::string_view body = {},
                         Session* start = nullptr) {
    respond(c, shaping, rtsp::format_response(status, reason, cseq, headers, body), start);
  };
  const auto add = [&](std::string name, std::string value) {
    headers.push_back({std::move(name), std::move(value)});
  };

  // Credentials: the camera's own, else the server's (also for paths naming no camera). OPTIONS
  // never needs them: most cameras answer it to anyone, and clients send it first.
  const auto authorized = [&]() -> bool {
    const bool own = cam && cam->config.has_credentials;
    const std::string& user = own ? cam->config.username : options_.username;
    const std::string& pass = own ? cam->config.password : options_.password;
    if (user.empty()) return true;
    if (const auto h = m.header("Authorization")) {
      try {
        const rtsp::Challenge a = rtsp::parse_authorization(*h);
        if (a.scheme == rtsp::AuthScheme::Basic && options_.auth != AuthMode::Digest) {
          const auto decoded = sdp::base64_decode(a.token68);
          const std::string want = user + ":" + pass;
          if (decoded && std::equal(decoded->begin(), decoded->end(), want.begin(), want.end()))
            return true;
        } else if (a.scheme == rtsp::AuthScheme::Digest && options_.auth != AuthMode::Basic) {
          const auto p = [&](std::string_view name) { return std::string(a.param(name).value_or("")); };
          const std::string qop = p("qop");
          std::uint32_t nc = 0;
          if (!qop.empty()) nc = static_cast<std::uint32_t>(std::strtoul(p("nc").c_str(), nullptr, 16));
          if (p("username") == user && p("realm") == options_.realm && p("nonce") == nonce_) {
            const std::string expect = rtsp::digest_response(user, options_.realm, pass, m.method,
                                                             p("uri"), nonce_, a.is_md5_sess(), qop,
                                                             nc, p("cnonce"));
            if (rtsp::iequals(expect, p("response"))) return true;
          }
        }
      } catch (const BitstreamError&) {
      }
    }
    if (cam) ++cam->stats.unauthorized;
    if (options_.auth != AuthMode::Basic)
      add("WWW-Authenticate", "Digest realm=\"" + options_.realm + "\", nonce=\"" + nonce_ +
                                  "\", algorithm=MD5, qop=\"auth\"");
    if (options_.auth != AuthMode::Digest) add("WWW-Authenticate", "Basic realm=\"" + options_.realm + "\"");
    reply(401, "Unauthorized");
    return false;
  };
  const auto base_url = [&](const Stream& s) {
    std::string u = "rtsp://" + ip_of(c.local) + ":" + std::to_string(port_) + "/" + s.camera->config.name;
    if (s.is_sub) u += "/sub";
    return u + "/";
  };

  const std::string& method = m.method;
  if (method == "OPTIONS") {
    if (ignores_keepalive(shaping, c)) return;
    if (ses && session_given) add("Session", session_value(*ses, options_.session_timeout_s));
    add("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, TEARDOWN");
    reply(200, "OK");
    return;
  }
  if (method == "GET_PARAMETER" || method == "SET_PARAMETER") {
    if (ignores_keepalive(shaping, c)) return;
    if (!authorized()) return;
    if (session_given && (!ses || ses->stale)) return reply(454, "Session Not Found");
    if (ses) add("Session", session_value(*ses, options_.session_timeout_s));
    reply(200, "OK");
    return;
  }
  if (method == "TEARDOWN") {
    if (!authorized()) return;
    // A stale session may be torn down from any connection: that is how a client cleans up after
    // the live555 bug (retina does exactly this before reconnecting).
    if (!ses) return reply(454, "Session Not Found");
    destroy_session(ses);
    reply(200, "OK");
    return;
  }
  if (method != "DESCRIBE" && method != "SETUP" && method != "PLAY" && method != "PAUSE") {
    add("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, TEARDOWN");
    reply(method == "ANNOUNCE" || method == "RECORD" ? 405 : 501,
          method == "ANNOUNCE" || method == "RECORD" ? "Method Not Allowed" : "Not Implemented");
    return;
  }
  // Credentials first, so that a stranger cannot probe which camera names exist.
  if (!authorized()) return;
  if (!cam || (!t.stream && method != "PLAY" && method != "PAUSE")) return reply(404, "Not Found");

  if (method == "DESCRIBE") {
    const Stream& s = *t.stream;
    add("Content-Type", "application/sdp");
    add("Content-Base", base_url(s));
    reply(200, "OK", make_sdp(*cam, s, ip_of(c.local), hash_name(cam->config.name) >> 16));
    return;
  }

  if (method == "SETUP") {
    const auto th = m.header("Transport");
    if (!th) return reply(400, "Bad Request");
    rtsp::Transport tr;
    try {
      tr = rtsp::parse_transport(*th);
    } catch (const BitstreamError&) {
      return reply(461, "Unsupported Transport");
    }
    if (tr.multicast || (tr.tcp && !cam->config.allow_tcp) || (!tr.tcp && !cam->config.allow_udp) ||
        (!tr.tcp && !tr.client_port))
      return reply(461, "Unsupported Transport");
    if (session_given && (!ses || ses->stale)) return reply(454, "Session Not Found");
    if (ses && ses->stream != t.stream) return reply(459, "Aggregate Operation Not Allowed");
    if (ses && ses->playing) return reply(455, "Method Not Valid in This State");
    rtsp::ChannelPair channels{c.next_channel, static_cast<std::uint8_t>(c.next_channel + 1)};
    if (tr.tcp) {
      if (tr.interleaved) channels = *tr.interleaved;
      if (channels.first >= 254) return reply(461, "Unsupported Transport");
      c.next_channel = static_cast<std::uint8_t>(std::max<int>(c.next_channel, channels.second + 1));
    }
    if (!ses) {
      auto owned = std::make_unique<Session>();
      owned->id = new_session_id();
      owned->camera = cam;
      owned->stream = t.stream;
      owned->conn = &c;
      ses = owned.get();
      sessions_.emplace(ses->id, std::move(owned));
      c.sessions.push_back(ses);
      ++cam->stats.sessions;
    }
    ses->tcp = tr.tcp;
    ses->rtp_channel = channels.first;
    ses->rtcp_channel = channels.second;
    ses->ssrc = t.stream->ssrc;
    ses->last_seen_ns = now;
    rtsp::Transport out;
    out.protocol = "RTP/AVP";
    out.tcp = tr.tcp;
    if (tr.tcp) {
      out.interleaved = channels;
    } else {
      ses->rtp_addr = c.peer;
      ses->rtp_addr.sin_port = htons(tr.client_port->first);
      ses->rtcp_addr = c.peer;
      ses->rtcp_addr.sin_port = htons(tr.client_port->second);
      out.client_port = tr.client_port;
      out.server_port = rtsp::PortPair{udp_port_, static_cast<std::uint16_t>(udp_port_ + 1)};
    }
    // Reolink and others name an SSRC here that is not the packets' (the quirk makes it so).
    out.ssrc = cam->faults.bogus_transport_ssrc ? t.stream->ssrc ^ 0x5A5A5A5Au : t.stream->ssrc;
    add("Transport", out.to_string());
    add("Session", session_value(*ses, options_.session_timeout_s));
    reply(200, "OK");
    return;
  }

  // PLAY, PAUSE
  if (!ses || ses->stale) return reply(454, "Session Not Found");
  add("Session", session_value(*ses, options_.session_timeout_s));
  if (method == "PAUSE") {
    stop_playing(*ses);
    reply(200, "OK");
    return;
  }
  const Stream& s = *ses->stream;
  add("Range", "npt=0.000-");
  // seq and rtptime are filled in when the answer's first byte leaves (see respond()).
  add("RTP-Info", "url=" + base_url(s) + "trackID=0;" + std::string(kRtpInfoMark));
  if (ses->playing) return reply(200, "OK");
  // Recent Reolink firmware sends its first RTCP sender report before the PLAY answer.
  if (cam->faults.rtcp_before_play) send_sender_report(*ses->stream, ses, now);
  reply(200, "OK", {}, ses);
}

}  // namespace vms::sim::detail
