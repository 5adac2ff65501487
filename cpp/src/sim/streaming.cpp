// The camera simulator's media side: each stream's live timeline (access units leave at their
// decode time, the clip loops with continuous RTP timestamps and sequence numbers), RTP over
// interleaved TCP (RFC 2326 §10.12) and UDP (RFC 3550), RTCP sender reports (RFC 3550 §6.4.1) and
// the packet-level faults. Each access unit is prepared once per stream (12-byte RTP headers over
// the clip's shared payloads) and written to every client with one sendmsg (TCP) or sendmmsg
// (UDP), so the per-client cost is a system call, not a re-packetization.
//
// Threading: server thread only.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "sim/server_impl.hpp"
#include "vmscore/rtp.hpp"

namespace vms::sim::detail {
namespace {

constexpr std::string_view kCname = "camera@vmscore-sim";
constexpr std::uint8_t kPayloadType = 96;

std::size_t packets_bound(const Clip& c) {
  // The quirk's single-NAL packetization needs at most one packet per (payload - FU header) bytes.
  return std::max(c.max_unit_packets(), c.max_unit_bytes() / (c.max_payload_size() - 3) + 2) + 4;
}

void store_be32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

}  // namespace

std::unique_ptr<Stream> Impl::make_stream(Camera& camera, std::shared_ptr<const Clip> clip, bool sub,
                                          std::int64_t now) {
  auto owned = std::make_unique<Stream>();
  Stream& s = *owned;
  s.camera = &camera;
  s.is_sub = sub;
  s.clip = std::move(clip);
  const Clip& c = *s.clip;
  s.rng = Rng(options_.seed * 0x9E3779B97F4A7C15ull ^ hash_name(camera.config.name) ^ (sub ? 0x5B5Bu : 0u));
  s.ssrc = s.rng.u32();
  s.next_seq = static_cast<std::uint16_t>(s.rng.u32());
  s.ts_base = s.rng.u32();

  const std::size_t bound = packets_bound(c);
  s.descs.reserve(bound);
  s.headers.reserve(16 * bound);
  s.scratch.reserve(c.max_unit_bytes() + 16 * bound);
  s.iov.reserve(2 * bound + 1);
  s.udp_iov.reserve(2 * bound);
  s.msgs.reserve(bound);
  s.garbage.reserve(1024);
  s.sr.resize(4 + rtp::sender_report_size(kCname.size()));
  std::size_t longest_gop = 1, run = 0;
  for (const Clip::Unit& u : c.units()) {
    run = u.is_keyframe ? 1 : run + 1;
    longest_gop = std::max(longest_gop, run);
  }
  s.history.reserve(longest_gop + 1);

  // Where the camera is now: start_offset_s into its clip. Its timeline began at the latest
  // keyframe before that point; the units since are emitted at once (nobody watches yet), so the
  // first client gets that GOP like a client joining a running camera.
  const std::int64_t dur = c.duration_90k();
  const double off_ticks = std::fmod(camera.config.start_offset_s * 90000.0, double(dur));
  const std::int64_t p = std::clamp<std::int64_t>(std::llround(off_ticks), 0, dur - 1);
  std::size_t k = 0;
  for (std::size_t i = 0; i < c.units().size() && c.units()[i].dts_90k <= p; ++i)
    if (c.units()[i].is_keyframe) k = i;
  s.cursor = k;
  s.t0_ns = now - ticks_to_ns(p);
  while (s.t0_ns + ticks_to_ns(s.loop * dur + c.units()[s.cursor].dts_90k) <= now) emit_unit(s, now);
  s.next_sr_ns = now + static_cast<std::int64_t>(options_.sender_report_interval_s * 1e9);
  return owned;
}

std::uint32_t Impl::next_rtp_ts(const Stream& s) const {
  const Clip& c = *s.clip;
  return s.ts_base + static_cast<std::uint32_t>(s.loop * c.duration_90k() + c.units()[s.cursor].pts_90k + s.ts_jump);
}
std::string Impl::play_rtp_info(Session& ses) {
  Stream& s = *ses.stream;
  if (ses.camera->faults.bogus_rtp_info) return "seq=0;rtptime=-1";  // Tapo's seq=0, OMNY's rtptime
  if (ses.playing || s.history.empty())
    return "seq=" + std::to_string(s.next_seq) + ";rtptime=" + std::to_string(next_rtp_ts(s));
  const Emitted& key = s.history[s.key_at];
  if (!ses.pinned) {
    ses.pinned = true;
    ++s.pins;
  }
  ses.pin_seq = key.first_seq;
  return "seq=" + std::to_string(key.first_seq) + ";rtptime=" + std::to_string(key.rtp_ts);
}

void Impl::unpin(Session& ses) {
  if (!ses.pinned) return;
  ses.pinned = false;
  Stream& s = *ses.stream;
  if (--s.pins == 0 && s.key_at > 0) {
    s.history.erase(s.history.begin(), s.history.begin() + std::ptrdiff_t(s.key_at));
    s.key_at = 0;
  }
}

void Impl::advance(Stream& s, std::int64_t now) {
  const Clip& c = *s.clip;
  const std::int64_t dur = c.duration_90k();
  while (true) {
    const std::int64_t due = s.t0_ns + ticks_to_ns(s.loop * dur + c.units()[s.cursor].dts_90k);
    if (due > now) break;
    if (now - due > 2 * kSec) {
      // The thread was held up (a debugger, a suspended process): shift the timeline instead of
      // sending seconds of video in one burst.
      s.t0_ns += now - due;
      continue;
    }
    emit_unit(s, now);
  }
  if (now >= s.next_sr_ns) {
    if (!s.playing.empty() && now >= s.camera->faults.stall_until_ns) send_sender_report(s, nullptr, now);
    s.next_sr_ns = now + static_cast<std::int64_t>(options_.sender_report_interval_s * 1e9);
  }
}

void Impl::emit_unit(Stream& s, std::int64_t now) {
  const Clip& c = *s.clip;
  const Clip::Unit& u = c.units()[s.cursor];
  Camera& cam = *s.camera;
  Emitted e;
  e.unit = static_cast<std::uint32_t>(s.cursor);
  e.first_seq = s.next_seq;
  e.rtp_ts = next_rtp_ts(s);
  e.annexb = cam.faults.annexb_in_payload;
  const bool send = !s.playing.empty() && now >= cam.faults.stall_until_ns;
  const std::size_t count = send || e.annexb ? prepare(s, e, send) : u.packet_count;
  e.packets = static_cast<std::uint16_t>(count);
  s.next_seq = static_cast<std::uint16_t>(s.next_seq + count);
  if (u.is_keyframe) {
    if (s.pins == 0) s.history.clear();
    s.key_at = s.history.size();
  }
  s.history.push_back(e);
  ++cam.stats.frames_emitted;
  s.sr_packets += static_cast<std::uint32_t>(count);
  s.sr_octets += u.payload_bytes;
  if (send) {
    build_wire(s, e, true);
    send_prepared(s, e, nullptr);
  }
  if (++s.cursor == c.units().size()) {
    s.cursor = 0;
    ++s.loop;
  }
}

std::size_t Impl::prepare(Stream& s, const Emitted& e, bool live) {
  const Clip& c = *s.clip;
  const Clip::Unit& u = c.units()[e.unit];
  Camera& cam = *s.camera;
  s.descs.clear();
  s.scratch.clear();
  if (e.annexb) {
    // V380-style: the access unit after its first start code goes out as one "NAL unit", so the
    // payloads (single NAL or FU-A / FU) carry the other units' start codes inside.
    const ByteSpan au = c.annexb(u);
    std::size_t i = 0;
    while (i + 2 < au.size() && !(au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1)) ++i;
    const ByteSpan body = i + 3 <= au.size() ? au.subspan(i + 3) : ByteSpan{};
    s.annexb_src.resize(4 + body.size());
    store_be32(s.annexb_src.data(), static_cast<std::uint32_t>(body.size()));
    if (!body.empty()) std::memcpy(s.annexb_src.data() + 4, body.data(), body.size());
    if (!s.annexb_packetizer) {
      rtp::PacketizerOptions po;
      po.max_payload_size = c.max_payload_size();
      po.aggregate = false;
      s.annexb_packetizer.emplace(c.codec(), po);
      s.packet_buf.resize(s.annexb_packetizer->max_packet_size());
    }
    s.annexb_packetizer->begin(s.annexb_src, 0, false);
    while (const std::size_t n = s.annexb_packetizer->next(s.packet_buf)) {
      PacketDesc d;
      d.offset = static_cast<std::uint32_t>(s.scratch.size());
      d.size = static_cast<std::uint16_t>(n - rtp::kHeaderSize);
      d.in_scratch = true;
      d.marker = (s.packet_buf[1] & 0x80) != 0;
      const std::size_t at = s.scratch.size();
      s.scratch.resize(at + d.size);
      std::memcpy(s.scratch.data() + at, s.packet_buf.data() + rtp::kHeaderSize, d.size);
      s.descs.push_back(d);
    }
  } else {
    const bool mark_sei = cam.faults.marker_on_sei;
    for (std::uint32_t j = 0; j < u.packet_count; ++j) {
      const Clip::Packet& p = c.packets()[u.first_packet + j];
      PacketDesc d;
      d.offset = p.offset;
      d.size = p.size;
      d.marker = p.marker || (mark_sei && p.ends_in_non_vcl);
      s.descs.push_back(d);
    }
  }
  if (live && (cam.faults.loss_rate > 0 || cam.faults.corrupt_rate > 0)) {
    for (PacketDesc& d : s.descs) {
      if (s.rng.chance(cam.faults.loss_rate)) {
        d.skip = true;
        ++cam.stats.packets_lost;
        continue;
      }
      if (d.size > 4 && s.rng.chance(cam.faults.corrupt_rate)) {
        // A copy with one byte flipped past the payload header, so the packet still parses as
        // RTP and H.264 / H.265 framing but decodes wrong.
        const std::size_t at = s.scratch.size();
        s.scratch.resize(at + d.size);
        const std::uint8_t* src = d.in_scratch ? s.scratch.data() + d.offset : c.payload_data() + d.offset;
        std::memmove(s.scratch.data() + at, src, d.size);
        const std::size_t pos = 3 + s.rng.next() % (d.size - 3);
        s.scratch[at + pos] ^= static_cast<std::uint8_t>(1 + s.rng.next() % 255);
        d.offset = static_cast<std::uint32_t>(at);
        d.in_scratch = true;
        ++cam.stats.packets_corrupted;
      }
    }
  }
  return s.descs.size();
}

void Impl::build_wire(Stream& s, const Emitted& e, bool live) {
  const Clip& c = *s.clip;
  const std::size_t n = s.descs.size();
  s.headers.resize(16 * n);
  rtp::Header h;
  h.payload_type = kPayloadType;
  h.timestamp = e.rtp_ts;
  h.ssrc = s.ssrc;
  for (std::size_t j = 0; j < n; ++j) {
    std::uint8_t* p = s.headers.data() + 16 * j;
    const std::size_t len = rtp::kHeaderSize + s.descs[j].size;
    p[0] = '$';
    p[1] = 0;
    p[2] = static_cast<std::uint8_t>(len >> 8);
    p[3] = static_cast<std::uint8_t>(len);
    h.marker = s.descs[j].marker;
    h.sequence = static_cast<std::uint16_t>(e.first_seq + j);
    rtp::write_header(h, std::span<std::uint8_t>(p + 4, rtp::kHeaderSize));
  }
  s.headers_channel = 0;
  s.headers_ssrc = s.ssrc;
  s.iov.clear();
  s.iov_bytes = 0;
  s.wire_packets = 0;
  if (live && s.camera->faults.garbage_rate > 0 && s.rng.chance(s.camera->faults.garbage_rate)) {
    make_garbage(s);
    s.iov.push_back({s.garbage.data(), s.garbage.size()});
    s.iov_bytes += s.garbage.size();
  }
  for (std::size_t j = 0; j < n; ++j) {
    const PacketDesc& d = s.descs[j];
    if (d.skip) continue;
    const std::uint8_t* payload = d.in_scratch ? s.scratch.data() + d.offset : c.payload_data() + d.offset;
    s.iov.push_back({s.headers.data() + 16 * j, 16});
    s.iov.push_back({const_cast<std::uint8_t*>(payload), d.size});
    s.iov_bytes += 16 + d.size;
    ++s.wire_packets;
  }
}

void Impl::patch_headers(Stream& s, std::uint8_t channel, std::uint32_t ssrc) {
  for (std::size_t j = 0; j < s.descs.size(); ++j) {
    std::uint8_t* p = s.headers.data() + 16 * j;
    p[1] = channel;
    store_be32(p + 4 + 8, ssrc);
  }
  s.headers_channel = channel;
  s.headers_ssrc = ssrc;
}

void Impl::make_garbage(Stream& s) {
  // What hostile or broken servers put between packets: a '$' frame on a channel nobody set up,
  // a frame too short to be RTP, or bytes that are not interleaved framing at all.
  s.garbage.clear();
  const auto kind = s.rng.next() % 3;
  if (kind == 0) {
    const std::size_t len = s.rng.next() % 600;
    s.garbage.push_back('$');
    s.garbage.push_back(static_cast<std::uint8_t>(100 + s.rng.next() % 100));
    s.garbage.push_back(static_cast<std::uint8_t>(len >> 8));
    s.garbage.push_back(static_cast<std::uint8_t>(len));
    for (std::size_t i = 0; i < len; ++i) s.garbage.push_back(static_cast<std::uint8_t>(s.rng.next()));
  } else if (kind == 1) {
    s.garbage.push_back('$');
    s.garbage.push_back(0);
    s.garbage.push_back(0);
    s.garbage.push_back(3);
    for (int i = 0; i < 3; ++i) s.garbage.push_back(static_cast<std::uint8_t>(s.rng.next() & 0x3F));
  } else {
    const std::size_t len = 1 + s.rng.next() % 64;
    for (std::size_t i = 0; i < len; ++i) {
      auto b = static_cast<std::uint8_t>(s.rng.next());
      if (b == '$' || b == 'R') b = 0xA5;  // neither a frame start nor the start of "RTSP/1.0"
      s.garbage.push_back(b);
    }
  }
}

void Impl::send_prepared(Stream& s, const Emitted& e, Session* only) {
  Camera& cam = *s.camera;
  const bool key = s.clip->units()[e.unit].is_keyframe;
  const std::size_t count = only ? 1 : s.playing.size();
  for (std::size_t i = 0; i < count; ++i) {
    Session& ses = only ? *only : *s.playing[i];
    if (ses.tcp) {
      Connection* c = ses.conn;
      if (!c || c->closed || c->close_pending) continue;
      if (ses.waiting_keyframe && !key) {
        ++cam.stats.frames_dropped;
        continue;
      }
      // The bound applies to what is already queued: an access unit larger than the whole queue
      // still goes out when the queue is empty, or a client would never get a big keyframe.
      if (c->busy() || (c->pending() > 0 && c->pending() + s.iov_bytes > options_.client_queue_bytes)) {
        // A slow client: its frames are dropped until the next keyframe that fits, so it sees a
        // clean gap instead of a broken GOP, and nobody else waits for it.
        ses.waiting_keyframe = true;
        ++cam.stats.frames_dropped;
        continue;
      }
      ses.waiting_keyframe = false;
      if (s.headers_channel != ses.rtp_channel || s.headers_ssrc != ses.ssrc)
        patch_headers(s, ses.rtp_channel, ses.ssrc);
      write_iov(*c, s.iov.data(), s.iov.size(), s.iov_bytes);
      cam.stats.bytes_sent += s.iov_bytes;
    } else {
      if (s.headers_ssrc != ses.ssrc) patch_headers(s, s.headers_channel, ses.ssrc);
      send_udp(s, ses);
      cam.stats.bytes_sent += s.iov_bytes - 4 * s.wire_packets;
    }
    ++cam.stats.frames_sent;
    cam.stats.packets_sent += s.wire_packets;
  }
}

void Impl::send_udp(Stream& s, const Session& ses) {
  const Clip& c = *s.clip;
  s.udp_iov.resize(2 * s.descs.size());
  s.msgs.resize(s.descs.size());
  std::size_t k = 0;
  for (std::size_t j = 0; j < s.descs.size(); ++j) {
    const PacketDesc& d = s.descs[j];
    if (d.skip) continue;
    const std::uint8_t* payload = d.in_scratch ? s.scratch.data() + d.offset : c.payload_data() + d.offset;
    iovec* v = &s.udp_iov[2 * k];
    v[0] = {s.headers.data() + 16 * j + 4, rtp::kHeaderSize};
    v[1] = {const_cast<std::uint8_t*>(payload), d.size};
    mmsghdr& m = s.msgs[k];
    m = mmsghdr{};
    m.msg_hdr.msg_name = const_cast<sockaddr_in*>(&ses.rtp_addr);
    m.msg_hdr.msg_namelen = sizeof ses.rtp_addr;
    m.msg_hdr.msg_iov = v;
    m.msg_hdr.msg_iovlen = 2;
    ++k;
  }
  for (std::size_t sent = 0; sent < k;) {
    const int r = ::sendmmsg(udp_rtp_fd_, s.msgs.data() + sent,
                             static_cast<unsigned>(std::min<std::size_t>(k - sent, 1024)), MSG_DONTWAIT);
    // A full socket buffer or a client gone (ICMP): the rest of this unit is lost, as on a network.
    if (r <= 0) break;
    sent += static_cast<std::size_t>(r);
  }
}

void Impl::send_rtcp(Session& ses, const std::uint8_t* data, std::size_t size) {
  Camera& cam = *ses.camera;
  if (ses.tcp) {
    Connection* c = ses.conn;
    if (!c || c->closed || c->close_pending || c->busy()) return;
    if (c->pending() + size + 4 > options_.client_queue_bytes) return;
    const std::uint8_t hdr[4] = {'$', ses.rtcp_channel, static_cast<std::uint8_t>(size >> 8),
                                 static_cast<std::uint8_t>(size)};
    const iovec iov[2] = {{const_cast<std::uint8_t*>(hdr), 4}, {const_cast<std::uint8_t*>(data), size}};
    write_iov(*c, iov, 2, size + 4);
    cam.stats.bytes_sent += size + 4;
  } else {
    ::sendto(udp_rtcp_fd_, data, size, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&ses.rtcp_addr),
             sizeof ses.rtcp_addr);
    cam.stats.bytes_sent += size;
  }
  ++cam.stats.sender_reports;
}

void Impl::send_sender_report(Stream& s, Session* only, std::int64_t now) {
  rtp::SenderReport sr;
  sr.ssrc = s.ssrc;
  sr.ntp_time = rtp::unix_us_to_ntp(wall_us());
  // The RTP time of this instant on the camera's timeline: what the next frames' timestamps are
  // measured against by a client mapping RTP time to wall-clock time.
  sr.rtp_time = s.ts_base + static_cast<std::uint32_t>(ns_to_ticks(now - s.t0_ns) + s.ts_jump);
  sr.packet_count = s.sr_packets;
  sr.octet_count = s.sr_octets;
  const std::size_t n = rtp::write_sender_report(sr, kCname, std::span<std::uint8_t>(s.sr.data(), s.sr.size()));
  const std::size_t count = only ? 1 : s.playing.size();
  for (std::size_t i = 0; i < count; ++i) {
    Session& ses = only ? *only : *s.playing[i];
    store_be32(s.sr.data() + 4, ses.ssrc);  // a stale session reports its own source
    send_rtcp(ses, s.sr.data(), n);
  }
}

void Impl::start_playing(Session& ses) {
  if (ses.playing || !ses.stream) return;
  Stream& s = *ses.stream;
  ses.playing = true;
  ses.waiting_keyframe = false;
  s.playing.push_back(&ses);
  // Like a camera's live stream, a new client starts at the latest keyframe (the one its RTP-Info
  // named): the GOP so far goes out at once, with the sequence numbers and timestamps it had on
  // the camera's timeline.
  std::size_t from = s.key_at;
  if (ses.pinned)
    for (std::size_t i = 0; i < s.history.size(); ++i)
      if (s.history[i].first_seq == ses.pin_seq) from = i;
  const std::int64_t now = now_ns();
  if (now < s.camera->faults.stall_until_ns) {
    ses.waiting_keyframe = true;  // joined a stalled camera: the stream starts at a keyframe
  } else {
    for (std::size_t i = from; i < s.history.size(); ++i) {
      const Emitted e = s.history[i];
      prepare(s, e, false);
      build_wire(s, e, false);
      send_prepared(s, e, &ses);
    }
    send_sender_report(s, &ses, now);
  }
  unpin(ses);
}

void Impl::stop_playing(Session& ses) {
  if (!ses.playing) return;
  ses.playing = false;
  if (ses.stream) std::erase(ses.stream->playing, &ses);
}

}  // namespace vms::sim::detail
