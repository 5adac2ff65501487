// Internals of the camera simulator (vmscore/camera_server.hpp), shared by server.cpp (sockets,
// thread, control calls, timers), rtsp_handler.cpp (requests, authentication, SDP, hostile
// responses) and streaming.cpp (pacing, packets, faults on the wire).
//
// Threading: everything here belongs to the server thread. The public CameraServer methods reach
// it only through Impl::call(), which runs a function on that thread and waits for it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/loop.hpp"
#include "vmscore/camera_server.hpp"
#include "vmscore/packetize.hpp"
#include "vmscore/rtsp.hpp"

namespace vms::sim::detail {

constexpr std::int64_t kMs = 1'000'000;
// Stands for "seq=..;rtptime=.." in a PLAY answer until its first byte leaves ('{' cannot occur
// in a camera URL).
constexpr std::string_view kRtpInfoMark = "{rtp-info}";
constexpr std::int64_t kSec = 1'000'000'000;

// 90 kHz ticks <-> nanoseconds without overflow for decades of run time.
inline std::int64_t ticks_to_ns(std::int64_t ticks) { return ticks * 100'000 / 9; }
inline std::int64_t ns_to_ticks(std::int64_t ns) { return ns * 9 / 100'000; }

// splitmix64: small, fast, and seeded per camera so that a test's dice do not depend on which other
// cameras exist.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint32_t u32() { return static_cast<std::uint32_t>(next() >> 32); }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return p > 0 && (p >= 1 || uniform() < p); }

 private:
  std::uint64_t state_;
};

std::uint64_t hash_name(std::string_view s);

struct Faults {
  std::int64_t stall_until_ns = 0;
  double corrupt_rate = 0;
  double loss_rate = 0;
  bool sdp_without_parameter_sets = false;
  bool sdp_custom_parameter_sets = false;
  std::vector<Bytes> sdp_parameter_sets;
  std::int64_t slow_ms = 0;
  std::int64_t partial_ms = 0;
  std::int64_t slowloris_ms = 0;
  bool rtcp_before_play = false;
  bool bogus_rtp_info = false;
  bool bogus_transport_ssrc = false;
  bool annexb_in_payload = false;
  bool marker_on_sei = false;
  bool ignore_keepalives = false;
  double live555_stale_s = 0;
  std::size_t oversized_headers = 0;
  bool endless_response = false;
  std::uint64_t huge_body = 0;
  double garbage_rate = 0;
};

class Impl;
struct Camera;
struct Connection;
struct Session;

// One packet of the access unit being sent: its payload in the clip or in the stream's scratch
// buffer (offsets, not pointers, so the scratch buffer may grow while packets are prepared).
struct PacketDesc {
  std::uint32_t offset = 0;
  std::uint16_t size = 0;
  bool in_scratch = false;
  bool marker = false;
  bool skip = false;  // lost on purpose: its sequence number is spent, nothing is sent
};

// One access unit already on the camera's timeline, kept from the latest keyframe on so that a
// client starting to play gets the current GOP at once. Only these few numbers are kept: the
// packets are rebuilt from the clip.
struct Emitted {
  std::uint32_t unit = 0;
  std::uint16_t first_seq = 0;
  std::uint16_t packets = 0;
  std::uint32_t rtp_ts = 0;
  bool annexb = false;  // packetized with the annexb_in_payload quirk
};

// One stream of a camera (main or sub): its own clip, timeline, SSRC and sequence numbers. All
// clients of a stream get the same packets; each access unit is prepared once and written to
// every client.
struct Stream {
  Camera* camera = nullptr;
  bool is_sub = false;
  std::shared_ptr<const Clip> clip;
  std::uint32_t ssrc = 0;
  std::uint16_t next_seq = 0;
  std::uint32_t ts_base = 0;
  std::int64_t ts_jump = 0;
  std::int64_t t0_ns = 0;  // when loop 0, dts 0 was (or would have been) due
  std::size_t cursor = 0;  // next unit to emit
  std::int64_t loop = 0;
  std::vector<Emitted> history;  // from the latest keyframe (or an older pinned one) on
  std::size_t key_at = 0;        // index of the latest keyframe in history
  // PLAY answers on their way whose RTP-Info names a keyframe in history: it is kept until they
  // are out, so the first packet a client gets is the one RTP-Info promised, however slowly
  // (partial, slowloris) the answer leaves.
  int pins = 0;
  std::vector<Session*> playing;
  std::int64_t next_sr_ns = 0;
  std::uint32_t sr_packets = 0;
  std::uint32_t sr_octets = 0;
  Rng rng;

  // Reused for every access unit: no allocation per packet once warm.
  std::vector<PacketDesc> descs;
  Bytes headers;  // 16 bytes per packet: 4-byte interleaved header + 12-byte RTP header
  std::uint8_t headers_channel = 0;
  std::uint32_t headers_ssrc = 0;
  Bytes scratch;
  Bytes garbage;
  std::vector<iovec> iov;      // TCP: [garbage] then header + payload per packet
  std::size_t iov_bytes = 0;
  std::uint32_t wire_packets = 0;  // packets in iov (lost ones left out)
  // The annexb_in_payload quirk re-packetizes each access unit as one NAL unit.
  std::optional<rtp::Packetizer> annexb_packetizer;
  Bytes annexb_src;
  Bytes packet_buf;
  std::vector<iovec> udp_iov;  // UDP: RTP header + payload per packet
  std::vector<mmsghdr> msgs;
  Bytes sr;                    // the last sender report, RTCP bytes with a 4-byte '$' header room
  std::size_t sr_size = 0;
};

struct Camera {
  CameraConfig config;
  std::unique_ptr<Stream> main;
  std::unique_ptr<Stream> sub;
  Faults faults;
  CameraStats stats;
  std::vector<Session*> stale;  // sessions left behind by the live555 quirk
};

struct Session {
  std::string id;
  Camera* camera = nullptr;
  Stream* stream = nullptr;
  Connection* conn = nullptr;  // TCP: where its packets go; null for a stale session in between
  bool tcp = true;
  std::uint8_t rtp_channel = 0;
  std::uint8_t rtcp_channel = 1;
  sockaddr_in rtp_addr{};
  sockaddr_in rtcp_addr{};
  std::uint32_t ssrc = 0;  // what its packets carry (the stream's, or a stale session's own)
  bool playing = false;
  bool waiting_keyframe = false;
  bool pinned = false;  // its PLAY answer named history entry pin_seq (see Stream::pins)
  std::uint16_t pin_seq = 0;
  bool stale = false;
  std::int64_t stale_until_ns = 0;
  std::int64_t last_seen_ns = 0;
};

// Bytes of a response that leave over time: slow, partial or slowloris responses, and the endless
// ones of the hostile modes.
struct Trickle {
  enum class Endless : std::uint8_t { No, Headers, Body };
  std::string data;
  std::size_t pos = 0;
  std::size_t chunk = 0;
  std::int64_t interval_ns = 0;
  std::int64_t next_ns = 0;
  Endless endless = Endless::No;
  std::uint64_t body_left = 0;
  std::uint64_t filler = 0;
  Session* start_playing = nullptr;  // PLAY: the session starts once the answer is out
  bool rendered = false;             // PLAY: RTP-Info filled in (when the first byte leaves)
};

struct Connection final : engine::EventLoop::Handler {
  Impl* server = nullptr;
  int fd = -1;
  std::uint64_t serial = 0;
  sockaddr_in peer{};
  sockaddr_in local{};
  Camera* camera = nullptr;  // the first camera a request named
  bool closed = false;
  bool close_pending = false;
  bool want_out = false;
  Bytes in;
  Bytes out;
  std::size_t out_off = 0;
  std::deque<Trickle> trickles;
  std::vector<Session*> sessions;
  std::uint8_t next_channel = 0;
  rtsp::Message request;

  void on_io(int fd, std::uint32_t events) override;
  std::size_t pending() const { return out.size() - out_off; }
  // A response is partly on the wire: interleaved data must wait, or it would split it.
  bool busy() const { return !trickles.empty() && trickles.front().pos > 0; }
};

class Impl : public engine::EventLoop::Ticker {
 public:
  explicit Impl(ServerOptions options);
  ~Impl() override;

  // Runs f on the server thread and waits; throws std::runtime_error once closed.
  template <typename F>
  auto call(F&& f) -> decltype(f()) {
    using R = decltype(f());
    std::packaged_task<R()> task(std::forward<F>(f));
    std::future<R> result = task.get_future();
    {
      std::lock_guard<std::mutex> lock(control_mutex_);
      if (!running_) throw std::runtime_error("camera server: closed");
      if (loop_.on_loop_thread()) {
        task();
        return result.get();
      }
      auto shared = std::make_shared<std::packaged_task<R()>>(std::move(task));
      loop_.post([shared] { (*shared)(); });
    }
    return result.get();
  }
  void close();
  bool running() const;

  // Control (server thread).
  std::string add_camera(CameraConfig config);
  bool remove_camera(std::string_view name);
  std::vector<std::string> camera_names() const;
  void set_fault(std::string_view camera, std::string_view fault, double value);
  void set_fault_units(std::string_view camera, std::string_view fault, std::vector<Bytes> units);
  void clear_faults(std::string_view camera);
  CameraStats stats_of(std::string_view camera) const;
  std::vector<CameraStats> all_stats() const;
  std::string url(std::string_view name, bool sub) const;

  // Server thread.
  void on_tick(std::int64_t now_ns) override;
  void on_accept();
  void on_udp(int fd);
  void handle_request(Connection& c, const rtsp::Message& m);
  void on_connection_io(Connection& c, std::uint32_t events);

  // Output to a connection: RTSP text (respond / send_text) or media (write_iov). Write errors
  // close the connection later, never while a stream iterates its clients.
  void respond(Connection& c, Camera* camera, std::string text, Session* start_playing = nullptr);
  void push_out(Connection& c, const void* data, std::size_t size);
  void write_iov(Connection& c, const iovec* iov, std::size_t count, std::size_t total);
  void flush_out(Connection& c);
  void close_later(Connection& c);
  void process_closes();
  void close_now(Connection& c);
  void run_trickles(Connection& c, std::int64_t now);
  void render_play(Trickle& t);

  // Streaming (streaming.cpp).
  std::unique_ptr<Stream> make_stream(Camera& camera, std::shared_ptr<const Clip> clip, bool sub,
                                      std::int64_t now);
  void advance(Stream& s, std::int64_t now);
  void start_playing(Session& session);
  void stop_playing(Session& session);
  void send_sender_report(Stream& s, Session* only, std::int64_t now);
  std::uint32_t next_rtp_ts(const Stream& s) const;
  // The RTP-Info of a PLAY answer whose first byte leaves now; pins what it names.
  std::string play_rtp_info(Session& session);
  void unpin(Session& session);

  // Sessions.
  Session* find_session(std::string_view id);
  void destroy_session(Session* s);
  void detach_sessions(Connection& c);
  void attach_stale_sessions(Connection& c, Camera& camera);
  std::string new_session_id();

  const ServerOptions& options() const { return options_; }
  std::int64_t now_ns() const { return clock_.now_ns(); }
  std::int64_t wall_us() const { return clock_.wall_us(); }
  std::uint16_t port() const { return port_; }
  std::uint16_t udp_port() const { return udp_port_; }
  const std::string& nonce() const { return nonce_; }
  Camera* find_camera(std::string_view name);

 private:
  friend struct Connection;
  void start();  // runs the loop thread; called once the object is fully constructed
  void thread_main();
  void emit_unit(Stream& s, std::int64_t now);
  std::size_t prepare(Stream& s, const Emitted& e, bool live);
  void build_wire(Stream& s, const Emitted& e, bool live);
  void patch_headers(Stream& s, std::uint8_t channel, std::uint32_t ssrc);
  void send_prepared(Stream& s, const Emitted& e, Session* only);
  void send_udp(Stream& s, const Session& session);
  void send_rtcp(Session& session, const std::uint8_t* data, std::size_t size);
  void make_garbage(Stream& s);
  void expire_sessions(std::int64_t now);

  ServerOptions options_;
  engine::SystemClock clock_;
  engine::EventLoop loop_;
  std::thread thread_;
  mutable std::mutex control_mutex_;
  bool running_ = false;

  struct FdHandler final : engine::EventLoop::Handler {
    Impl* impl = nullptr;
    void on_io(int fd, std::uint32_t events) override;
  };
  FdHandler fd_handler_;
  int listen_fd_ = -1;
  int udp_rtp_fd_ = -1;
  int udp_rtcp_fd_ = -1;
  std::uint16_t port_ = 0;
  std::uint16_t udp_port_ = 0;
  std::string nonce_;
  Rng rng_;

  std::map<std::string, std::unique_ptr<Camera>, std::less<>> cameras_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::vector<Connection*> to_close_;
  std::vector<std::unique_ptr<Connection>> dead_;
  std::uint64_t next_serial_ = 1;
  std::int64_t next_expiry_check_ns_ = 0;
  Bytes udp_buf_;
  Bytes read_buf_;

  friend class vms::sim::CameraServer;
};

}  // namespace vms::sim::detail
