// The camera simulator: an RTSP server that serves many simulated cameras from one event-loop
// thread, each looping a pre-encoded clip in real time with continuous RTP timestamps, and that can
// misbehave on demand like the cameras (and hostile servers) an NVR meets in the field.
//
// Specs: RFC 2326 (RTSP 1.0: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, TEARDOWN;
// §10.12 interleaved data; §12.37 Session timeout); RFC 3550 (RTP, RTCP sender reports);
// RFC 6184 / RFC 7798 (H.264 / H.265 payloads); RFC 4566 (SDP); RFC 2617 / RFC 7617 (Digest and
// Basic authentication).
//
// Threading: a CameraServer owns one thread that runs every camera, connection and timer. Every
// public method may be called from any other thread; calls that change or read server state run on
// the server thread and wait for it. A Clip is immutable once made and may be shared by any number
// of cameras and servers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace vms::sim {

// One access unit of a clip as the encoder made it: Annex-B bytes and 90 kHz timestamps.
struct ClipFrame {
  ByteSpan data;
  std::int64_t pts_90k = 0;
  std::int64_t dts_90k = 0;
  bool is_keyframe = false;
};

struct ClipOptions {
  // RTP payload bytes per packet at most (FU-A / FU fragments above it).
  std::size_t max_payload_size = 1400;
  // Frame rate for the SDP and for the loop length; 0 derives it from the decode timestamps.
  double fps = 0.0;
};

// An encoded clip, packetized once into RTP payloads (without RTP headers) so that every camera
// serving it only writes 12-byte headers per packet. Access units before the first keyframe are
// dropped: a camera's stream must start decodable.
class Clip {
 public:
  // Per access unit, in decode order. Timestamps are relative to the first unit's dts.
  struct Unit {
    std::int64_t pts_90k = 0;
    std::int64_t dts_90k = 0;
    bool is_keyframe = false;
    std::uint32_t first_packet = 0;
    std::uint32_t packet_count = 0;
    std::uint32_t payload_bytes = 0;  // of its packets (RTCP sender report octet count)
    std::size_t data_offset = 0;  // the Annex-B bytes in annexb()
    std::size_t data_size = 0;
  };
  // Per RTP packet: its payload in payload().
  struct Packet {
    std::uint32_t offset = 0;
    std::uint16_t size = 0;
    bool marker = false;
    // The packet's last NAL unit is an SEI or a parameter set (for the marker_on_sei quirk).
    bool ends_in_non_vcl = false;
  };

  // Copies the frames. Throws BitstreamError for malformed Annex-B data or a clip without a
  // keyframe, std::invalid_argument for bad options.
  static std::shared_ptr<const Clip> make(Codec codec, std::span<const ClipFrame> frames,
                                          const ClipOptions& options = {});

  Codec codec() const { return codec_; }
  const ParameterSets& parameter_sets() const { return parameter_sets_; }
  std::uint32_t width() const { return width_; }
  std::uint32_t height() const { return height_; }
  double fps() const { return fps_; }
  // The loop length: last dts - first dts + one frame.
  std::int64_t duration_90k() const { return duration_90k_; }
  std::int64_t frame_duration_90k() const { return frame_duration_90k_; }
  std::size_t max_payload_size() const { return max_payload_size_; }
  // Average bits per second of the access units over the loop length.
  double bitrate_bps() const;
  std::size_t max_unit_packets() const { return max_unit_packets_; }
  std::size_t max_unit_bytes() const { return max_unit_bytes_; }

  const std::vector<Unit>& units() const { return units_; }
  const std::vector<Packet>& packets() const { return packets_; }
  ByteSpan payload(const Packet& p) const { return {payload_.data() + p.offset, p.size}; }
  const std::uint8_t* payload_data() const { return payload_.data(); }
  ByteSpan annexb(const Unit& u) const { return {annexb_.data() + u.data_offset, u.data_size}; }
  std::size_t payload_bytes() const { return payload_.size(); }

 private:
  Clip() = default;
  Codec codec_ = Codec::H264;
  ParameterSets parameter_sets_;
  std::uint32_t width_ = 0, height_ = 0;
  double fps_ = 0;
  std::int64_t duration_90k_ = 0, frame_duration_90k_ = 0;
  std::size_t max_payload_size_ = 0, max_unit_packets_ = 0, max_unit_bytes_ = 0;
  std::vector<Unit> units_;
  std::vector<Packet> packets_;
  Bytes payload_;
  Bytes annexb_;
};

enum class AuthMode : std::uint8_t {
  Digest,  // WWW-Authenticate: Digest (MD5, qop="auth")
  Basic,
  Both,    // both challenges; a client may answer either
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // an IPv4 address to listen on
  std::uint16_t port = 0;          // 0: an ephemeral port (see CameraServer::port())
  // Credentials every camera requires unless it has its own; an empty user name: no
  // authentication. OPTIONS is always answered without credentials, as most cameras do.
  std::string username;
  std::string password;
  AuthMode auth = AuthMode::Digest;
  std::string realm = "vmscore camera simulator";
  // The Session header's timeout. A UDP session that sends neither a request nor RTCP for this
  // long is torn down; TCP sessions live as long as their connection.
  std::uint32_t session_timeout_s = 60;
  // Output bytes queued per TCP connection when its socket is full; beyond this the client's
  // frames are dropped until the next keyframe (a slow client must not slow the others).
  std::size_t client_queue_bytes = 8u << 20;
  // SO_SNDBUF of client connections; 0 leaves the kernel's autotuning. A small one makes the
  // queue above fill sooner, like a camera's small network buffers.
  std::size_t send_buffer_bytes = 0;
  double sender_report_interval_s = 5.0;
  // Seeds SSRCs, sequence numbers, timestamps, session ids, nonces and the fault dice.
  std::uint64_t seed = 1;
  // The pacing tick: access units leave within this many milliseconds of their time.
  int tick_ms = 5;
};

struct CameraConfig {
  std::string name;  // the URL path: rtsp://host:port/<name>; no '/', no spaces
  std::shared_ptr<const Clip> main;
  std::shared_ptr<const Clip> sub;  // optional: rtsp://host:port/<name>/sub
  // How far into its clip the camera already is, so cameras sharing a clip are not in lockstep.
  double start_offset_s = 0.0;
  // Credentials of this camera only; used when has_credentials (an empty user name then means no
  // authentication for this camera, whatever the server's).
  bool has_credentials = false;
  std::string username;
  std::string password;
  bool allow_tcp = true;  // RTP/AVP/TCP interleaved
  bool allow_udp = true;  // RTP/AVP over UDP; a refused transport is answered 461
};

struct CameraStats {
  std::string name;
  std::uint64_t connections = 0;       // accepted TCP connections that addressed this camera
  std::uint32_t clients = 0;           // sessions playing now
  std::uint64_t sessions = 0;          // sessions set up in total
  std::uint64_t requests = 0;
  std::uint64_t unauthorized = 0;      // 401 answers
  std::uint64_t frames_sent = 0;       // access units handed to clients (per client)
  std::uint64_t packets_sent = 0;      // RTP packets handed to clients (per client)
  std::uint64_t bytes_sent = 0;        // RTP and RTCP bytes, interleaved headers included
  std::uint64_t sender_reports = 0;    // per client
  std::uint64_t frames_dropped = 0;    // not sent to a client whose queue was full (until keyframe)
  std::uint64_t packets_lost = 0;      // skipped by the lose_packets fault (per camera)
  std::uint64_t packets_corrupted = 0; // changed by the corrupt_packets fault (per camera)
  std::uint64_t sessions_timed_out = 0;
  std::uint64_t stale_sessions = 0;    // sessions left behind by the live555_tool quirk
  std::uint64_t frames_emitted = 0;    // access units of the camera's timeline (main + sub)
};

// A server of simulated cameras. Faults are set per camera with set_fault(); the names and what
// each does on the wire:
//
//   drop_connections        (action) close every connection of the camera now
//   stall                   value s: send no RTP/RTCP for that long; connections stay open
//   corrupt_packets         rate 0..1: flip one payload byte (after the payload header) per packet
//   lose_packets            rate 0..1: skip packets (their sequence numbers are spent: gaps)
//   timestamp_jump          (action) value ticks added to every later RTP timestamp (negative:
//                           backwards, as Tapo cameras after a reconnect)
//   sdp_without_parameter_sets  bool: no sprop-parameter-sets / sprop-vps/sps/pps in the SDP
//   sdp_parameter_sets      units: these (wrong) parameter sets in the SDP instead of the clip's
//   slow_responses          value ms: every response waits that long
//   partial_responses       value ms: responses leave in 8-byte pieces this far apart
//   rtcp_before_play        bool: an RTCP sender report precedes the PLAY response
//   bogus_rtp_info          bool: RTP-Info says seq=0;rtptime=-1 (Tapo, OMNY)
//   bogus_transport_ssrc    bool: the SETUP Transport names an SSRC the packets do not carry
//   annexb_in_payload       bool: each access unit goes out as one "NAL unit" with Annex-B start
//                           codes inside (single NAL or FU-A/FU payloads, as V380 cameras do)
//   marker_on_sei           bool: the marker bit also on packets ending in SEI / parameter sets
//   ignore_keepalives       bool: once playing, OPTIONS and GET_PARAMETER get no answer
//   live555_tool            value s: SDP a=tool:LIVE555 Streaming Media v2013.04.08, and a TCP
//                           session dropped without TEARDOWN lives on that long ("stale"): its
//                           packets, with its own SSRC and channels, go into the next connection
//                           that addresses the camera, until then or a TEARDOWN naming it
//   oversized_headers       value bytes: every response carries header lines of that total size
//   endless_response        bool: responses whose header section never ends
//   huge_body               value bytes: responses declare this Content-Length (1: 100 MB) and
//                           trickle filler after it
//   garbage_interleaved     rate 0..1 per access unit: a '$' frame on a channel never set up, a
//                           truncated non-RTP frame, or bytes that are not '$' framing at all
//   slowloris               value ms: responses leave one byte at a time this far apart
//
// A value of 0 (or false) switches a fault off; clear_faults() switches all off. Numeric faults
// given 1 (true) use the defaults: stall 1 s, slow_responses 500 ms, partial_responses 20 ms,
// live555_tool 65 s, oversized_headers 64 KiB, huge_body 100 MB, slowloris 100 ms.
class CameraServer {
 public:
  // Binds the listening socket and the UDP port pair, then starts the server thread. Throws
  // IoError when a socket cannot be bound, std::invalid_argument for bad options.
  explicit CameraServer(ServerOptions options);
  ~CameraServer();  // close()
  CameraServer(const CameraServer&) = delete;
  CameraServer& operator=(const CameraServer&) = delete;

  std::uint16_t port() const;
  const std::string& host() const;
  std::uint16_t udp_rtp_port() const;  // the server_port pair: RTP, RTCP = RTP + 1

  // rtsp://host:port/<name>[/sub]. Throws std::invalid_argument for a bad name or a name in use,
  // or when the camera has no main clip.
  std::string add_camera(CameraConfig config);
  // Closes the camera's connections and forgets it. False when there was no such camera.
  bool remove_camera(std::string_view name);
  std::vector<std::string> cameras() const;
  std::string url(std::string_view name, bool sub = false) const;

  // Throws std::invalid_argument for an unknown camera, fault name or value out of range.
  void set_fault(std::string_view camera, std::string_view fault, double value = 1.0);
  void set_fault(std::string_view camera, std::string_view fault, std::vector<Bytes> units);
  void clear_faults(std::string_view camera);
  static const std::vector<std::string>& fault_names();

  CameraStats stats(std::string_view camera) const;
  std::vector<CameraStats> stats() const;

  // Stops the thread and closes every socket; idempotent. Later calls other than port()/host()
  // throw std::runtime_error.
  void close();
  bool is_running() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vms::sim
