// One camera stream's RTSP client session; see session.hpp. RFC 2326 (RTSP 1.0) with the camera
// behaviour documented in engine.md §1.8: every deviation accepted here says which camera needed it.
//
// Threading: all methods run on the session's loop thread, except stats(), which copies a snapshot
// under a mutex.
#include "engine/session.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>

#include "vmscore/depacketize.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtp.hpp"
#include "vmscore/rtsp.hpp"
#include "vmscore/sdp.hpp"

namespace vms::engine {
namespace {

using ingest::EventKind;

constexpr std::size_t kReadChunk = 256 * 1024;
// One readiness event reads at most this much, so a fast camera cannot starve the others on its loop.
constexpr std::size_t kMaxReadPerEvent = 4u << 20;
// Largest buffered input: a maximal RTSP message (headers + body) or interleaved frame, plus a read.
constexpr std::size_t kMaxInput = 1u << 20;
constexpr std::int64_t kMs = 1'000'000;  // nanoseconds per millisecond
constexpr std::int64_t kReceiverReportNs = 5'000 * kMs;
constexpr const char* kUserAgent = "vmscore";

enum class State {
  Idle,
  Resolving,
  Connecting,
  Options,
  Describe,
  Setup,
  Play,
  Playing,
  Backoff,
  Stopped,
};

const char* state_name(State s) {
  switch (s) {
    case State::Idle: return "idle";
    case State::Resolving: return "resolving";
    case State::Connecting: return "connecting";
    case State::Options: return "options";
    case State::Describe: return "describing";
    case State::Setup: return "setting_up";
    case State::Play: return "starting";
    case State::Playing: return "playing";
    case State::Backoff: return "backoff";
    case State::Stopped: return "removed";
  }
  return "idle";
}

// A failure that ends the connection: the session reports it and reconnects after a backoff.
struct SessionFailure : std::runtime_error {
  SessionFailure(const std::string& why, bool auth = false) : std::runtime_error(why), auth_failed(auth) {}
  bool auth_failed;
};

int close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
  return 0;
}

// Bytes received on the RTSP connection and not yet parsed. Unlike a vector it never zero-fills the
// space a recv() is about to overwrite.
class InputBuffer {
 public:
  std::uint8_t* space(std::size_t n) {
    if (cap_ - tail_ < n) {
      if (head_ > 0) {
        std::memmove(data_.get(), data_.get() + head_, tail_ - head_);
        tail_ -= head_;
        head_ = 0;
      }
      if (cap_ - tail_ < n) {
        const std::size_t cap = std::max(cap_ * 2, tail_ + n);
        auto grown = std::make_unique_for_overwrite<std::uint8_t[]>(cap);
        if (tail_) std::memcpy(grown.get(), data_.get(), tail_);
        data_ = std::move(grown);
        cap_ = cap;
      }
    }
    return data_.get() + tail_;
  }
  void produced(std::size_t n) { tail_ += n; }
  void consumed(std::size_t n) {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  ByteSpan data() const { return {data_.get() + head_, tail_ - head_}; }
  std::size_t size() const { return tail_ - head_; }
  void clear() { head_ = tail_ = 0; }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t cap_ = 0;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace

struct Track {
  sdp::Media media;
  std::string control_url;
  ingest::MediaKind kind = ingest::MediaKind::Video;
  std::string codec;
  Codec video_codec = Codec::H264;
  std::uint32_t clock_rate = 90000;
  std::unique_ptr<rtp::Depacketizer> depacketizer;
  rtp::VideoDepacketizer* video = nullptr;
  rtp::SequenceTracker sequence;
  std::unique_ptr<rtp::ReorderWindow> reorder;
  std::unique_ptr<rtp::Timeline> timeline;
  // TCP interleaved channels.
  int rtp_channel = -1;
  int rtcp_channel = -1;
  // UDP.
  int rtp_fd = -1;
  int rtcp_fd = -1;
  std::uint16_t client_port = 0;
  std::uint16_t server_rtp_port = 0;
  std::uint16_t server_rtcp_port = 0;
  bool have_ssrc = false;
  std::uint32_t ssrc = 0;
  // Delivery.
  std::shared_ptr<const ParameterSets> parameter_sets;
  bool python_needs_keyframe = false;
  // Decode timestamps for streams whose decode order differs from presentation order: the n-th
  // decode timestamp is the (n - reorder)-th smallest presentation timestamp seen, which is never
  // after the frame's own presentation time and needs no lookahead (see deliver()).
  int reorder_frames = 0;
  std::priority_queue<std::int64_t, std::vector<std::int64_t>, std::greater<>> pts_heap;
  std::int64_t decoded = 0;
  std::int64_t first_pts = 0;
  std::int64_t last_dts = 0;
  bool have_dts = false;
  // Where this connection's timeline starts on the stream's timeline (see SessionImpl::continuity_).
  std::int64_t pts_offset = 0;
  bool started = false;
};

// The stream's timeline across reconnects: a new connection's timestamps start where the last one
// ended plus the time the stream was away, so downstream (the recorder) never sees time go back.
struct Continuity {
  bool have = false;
  std::int64_t last_pts = 0;
  std::int64_t last_dts = 0;
  std::int64_t last_ns = 0;
};

class SessionImpl : public EventLoop::Handler, public EventLoop::Ticker {
 public:
  SessionImpl(EventLoop& loop, DeliveryQueue& queue, Resolver& resolver, ingest::StreamConfig config)
      : loop_(loop),
        queue_(queue),
        resolver_(resolver),
        config_(std::move(config)),
        identity_(std::make_shared<ingest::StreamIdentity>(ingest::StreamIdentity{config_.id})),
        url_(rtsp::parse_url(config_.url)),
        alive_(std::make_shared<bool>(true)),
        random_(static_cast<std::uint64_t>(loop.now_ns()) ^ std::hash<std::string>{}(config_.id)) {
    username_ = config_.username.empty() ? url_.user : config_.username;
    password_ = config_.username.empty() ? url_.password : config_.password;
    request_url_ = url_.to_string(false);
    backoff_ns_ = config_.reconnect_min_ms * kMs;
    stats_.id = config_.id;
    published_ = stats_;
  }

  ~SessionImpl() override {
    *alive_ = false;
    close_connection();
  }

  void start() {
    loop_.add_ticker(this);
    connect();
  }

  void stop() {
    if (state_ == State::Stopped) return;
    if (fd_ >= 0 && !session_id_.empty()) send_teardown();
    close_connection();
    set_state(State::Stopped);
    loop_.remove_ticker(this);
    emit(EventKind::Removed, "removed");
  }

  void subscribe(ingest::Subscriber* s) {
    if (std::find(subscribers_.begin(), subscribers_.end(), s) == subscribers_.end())
      subscribers_.push_back(s);
  }
  void unsubscribe(ingest::Subscriber* s) {
    subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), s), subscribers_.end());
  }

  ingest::StreamStats stats() const {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return published_;
  }
  const std::string& id() const { return config_.id; }

  // EventLoop::Handler
  void on_io(int fd, std::uint32_t events) override {
    try {
      if (fd == fd_) {
        if (state_ == State::Connecting) {
          on_connected();
          return;
        }
        if (events & EPOLLOUT) flush_output();
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_tcp();
      } else {
        read_udp(fd);
      }
    } catch (const SessionFailure& e) {
      fail(e.what(), e.auth_failed);
    } catch (const BitstreamError& e) {
      fail(std::string("malformed data from the camera: ") + e.what());
    } catch (const IoError& e) {
      fail(e.what());
    } catch (const std::exception& e) {
      fail(std::string("unexpected error: ") + e.what());
    }
  }

  // EventLoop::Ticker
  void on_tick(std::int64_t now) override {
    publish();
    try {
      tick(now);
    } catch (const SessionFailure& e) {
      fail(e.what(), e.auth_failed);
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

 private:
  // ------------------------------------------------------------------------------------------
  // Connection

  void connect() {
    close_connection();
    set_state(State::Resolving);
    emit(EventKind::Connecting, url_.redacted());
    Address address;
    if (numeric_address(url_.host, url_.port, address)) {
      open_socket(address);
      return;
    }
    std::weak_ptr<bool> alive = alive_;
    const std::uint64_t attempt = ++attempt_;
    resolver_.resolve(loop_, url_.host, url_.port,
                      [this, alive, attempt](bool ok, const Address& a, const std::string& error) {
                        auto still = alive.lock();
                        if (!still || !*still || attempt != attempt_ || state_ != State::Resolving)
                          return;
                        if (!ok) {
                          fail(error);
                          return;
                        }
                        try {
                          open_socket(a);
                        } catch (const std::exception& e) {
                          fail(e.what());
                        }
                      });
  }

  void open_socket(const Address& address) {
    peer_ = address;
    fd_ = ::socket(address.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw IoError(std::string("socket: ") + std::strerror(errno), errno);
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Keyframes arrive in bursts of hundreds of kilobytes (engine.md §0.4).
    const int rcvbuf = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    set_state(State::Connecting);
    deadline_ns_ = loop_.now_ns() + config_.connect_timeout_ms * kMs;
    const int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address.addr), address.len);
    if (rc != 0 && errno != EINPROGRESS) {
      const int err = errno;
      throw SessionFailure("cannot connect to " + url_.redacted() + ": " + std::strerror(err));
    }
    loop_.watch(fd_, EPOLLOUT | EPOLLIN | EPOLLRDHUP, this);
  }

  void on_connected() {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) throw SessionFailure("cannot connect to " + url_.redacted() + ": " + std::strerror(err));
    loop_.modify(fd_, EPOLLIN | EPOLLRDHUP, this);
    watching_out_ = false;
    send_request("OPTIONS", request_url_, {});
    set_state(State::Options);
  }

  void close_connection() {
    if (fd_ >= 0) {
      loop_.unwatch(fd_);
      close_fd(fd_);
    }
    for (auto& t : tracks_) {
      for (int* fd : {&t->rtp_fd, &t->rtcp_fd}) {
        if (*fd >= 0) {
          loop_.unwatch(*fd);
          close_fd(*fd);
        }
      }
    }
    tracks_.clear();
    input_.clear();
    output_.clear();
    output_head_ = 0;
    watching_out_ = false;
    session_id_.clear();
    pending_method_.clear();
    challenge_.reset();
    auth_retried_ = false;
    ++attempt_;
  }

  // ------------------------------------------------------------------------------------------
  // Requests

  void send_request(const std::string& method, const std::string& uri,
                    std::vector<rtsp::Header> headers, bool expect_response = true) {
    const std::uint32_t cseq = ++cseq_;
    headers.push_back({"User-Agent", kUserAgent});
    if (!session_id_.empty() && method != "OPTIONS" && method != "DESCRIBE")
      headers.push_back({"Session", session_id_});
    if (challenge_) {
      std::string cnonce;
      if (challenge_->scheme == rtsp::AuthScheme::Digest) {
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(random_()));
        cnonce = buf;
      }
      headers.push_back(
          {"Authorization", rtsp::authorization(*challenge_, username_, password_, method, uri, cnonce, ++nonce_count_)});
    }
    const std::string text = rtsp::format_request(method, uri, cseq, headers);
    if (expect_response) {
      pending_method_ = method;
      pending_uri_ = uri;
      pending_headers_ = std::move(headers);
      pending_cseq_ = cseq;
      deadline_ns_ = loop_.now_ns() + config_.connect_timeout_ms * kMs;
    }
    write_output(text);
  }

  void resend_with_auth() {
    // The same request again, now with credentials; the Authorization header is rebuilt.
    std::vector<rtsp::Header> headers;
    for (auto& h : pending_headers_)
      if (!rtsp::iequals(h.name, "Authorization") && !rtsp::iequals(h.name, "User-Agent") &&
          !rtsp::iequals(h.name, "Session"))
        headers.push_back(h);
    const std::string method = pending_method_;
    const std::string uri = pending_uri_;
    send_request(method, uri, std::move(headers));
  }

  void send_teardown() {
    try {
      send_request("TEARDOWN", aggregate_url_.empty() ? request_url_ : aggregate_url_, {}, false);
    } catch (const std::exception&) {
      // Best effort: the connection closes right after anyway.
    }
  }

  void write_output(const std::string& text) {
    if (fd_ < 0) return;
    if (output_.size() - output_head_ + text.size() > kMaxInput)
      throw SessionFailure("the camera does not read its RTSP connection");
    output_.insert(output_.end(), text.begin(), text.end());
    flush_output();
  }

  void flush_output() {
    while (output_head_ < output_.size()) {
      const ssize_t n = ::send(fd_, output_.data() + output_head_, output_.size() - output_head_,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        const int err = errno;
        throw SessionFailure(std::string("connection lost: ") + std::strerror(err));
      }
      output_head_ += static_cast<std::size_t>(n);
    }
    if (output_head_ == output_.size()) {
      output_.clear();
      output_head_ = 0;
    }
    const bool want_out = !output_.empty();
    if (want_out != watching_out_ && fd_ >= 0) {
      loop_.modify(fd_, EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0u), this);
      watching_out_ = want_out;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Reading the RTSP connection

  void read_tcp() {
    std::size_t total = 0;
    while (total < kMaxReadPerEvent && fd_ >= 0) {
      if (input_.size() > kMaxInput)
        throw SessionFailure("RTSP message from the camera exceeds the size limits");
      std::uint8_t* space = input_.space(kReadChunk);
      const ssize_t n = ::recv(fd_, space, kReadChunk, MSG_DONTWAIT);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        const std::string why = n == 0 ? std::string("the camera closed the connection")
                                       : std::string("connection lost: ") + std::strerror(errno);
        throw SessionFailure(why);
      }
      input_.produced(static_cast<std::size_t>(n));
      total += static_cast<std::size_t>(n);
      parse_input();
    }
  }

  void parse_input() {
    while (fd_ >= 0 && input_.size() > 0) {
      const rtsp::Item item = rtsp::parse_next(input_.data(), message_, limits_);
      if (item.kind == rtsp::ItemKind::NeedMore) break;
      // Payload spans point into the buffer: handle the item before consuming it.
      if (item.kind == rtsp::ItemKind::Interleaved)
        on_interleaved(item.frame.channel, item.frame.payload);
      else
        on_message(message_);
      if (fd_ < 0) break;  // the item ended the connection
      input_.consumed(item.consumed);
    }
  }

  void on_message(const rtsp::Message& m) {
    if (m.is_request) {
      // Servers may send requests (OPTIONS as a keepalive probe, ANNOUNCE, SET_PARAMETER). Answer
      // so that strict servers keep the session.
      const auto cseq = m.cseq().value_or(0);
      write_output(rtsp::format_response(m.method == "OPTIONS" ? 200 : 501,
                                         m.method == "OPTIONS" ? "OK" : "Not Implemented", cseq));
      return;
    }
    const auto cseq = m.cseq();
    if (pending_method_.empty() || (cseq && *cseq != pending_cseq_)) {
      // A late keepalive answer or a reply we did not wait for: nothing depends on it.
      if (m.status == 454 || m.status == 408)
        throw SessionFailure("the camera ended the session (" + std::to_string(m.status) + " " + m.reason + ")");
      return;
    }
    const std::string method = std::move(pending_method_);
    pending_method_.clear();
    deadline_ns_ = 0;
    if (m.status == 401) {
      on_unauthorized(m, method);
      return;
    }
    if (m.status < 200 || m.status >= 300) {
      if (method == "GET_PARAMETER") {
        keepalive_method_ = "OPTIONS";  // it does not speak GET_PARAMETER after all
        return;
      }
      if (method == "OPTIONS" && state_ == State::Options) {
        // OPTIONS is optional for a server; go on with DESCRIBE.
        send_describe();
        return;
      }
      throw SessionFailure(method + " failed: " + std::to_string(m.status) + " " + m.reason);
    }
    auth_retried_ = false;
    if (state_ == State::Options && method == "OPTIONS") {
      on_options(m);
    } else if (state_ == State::Describe && method == "DESCRIBE") {
      on_describe(m);
    } else if (state_ == State::Setup && method == "SETUP") {
      on_setup(m);
    } else if (state_ == State::Play && method == "PLAY") {
      on_play(m);
    }
  }

  void on_unauthorized(const rtsp::Message& m, const std::string& method) {
    const std::vector<rtsp::Challenge> challenges = rtsp::parse_challenges(m);
    const rtsp::Challenge* best = rtsp::best_challenge(challenges);
    if (!best) throw SessionFailure(method + ": the camera asks for an authentication scheme we do not support", true);
    if (username_.empty()) throw SessionFailure(method + ": the camera requires credentials and none were given", true);
    // A second 401 for the same request means the credentials are wrong, unless the server says the
    // nonce went stale (then the same credentials are tried with the new nonce).
    if (auth_retried_ && !best->stale) throw SessionFailure(method + ": wrong user name or password (401 Unauthorized)", true);
    challenge_ = *best;
    nonce_count_ = 0;
    auth_retried_ = true;
    pending_method_ = method;
    resend_with_auth();
  }

  void on_options(const rtsp::Message& m) {
    if (auto pub = m.header("Public")) {
      for (const auto& method : rtsp::parse_public(*pub))
        if (method == "GET_PARAMETER") keepalive_method_ = "GET_PARAMETER";
    }
    send_describe();
  }

  void send_describe() {
    set_state(State::Describe);
    send_request("DESCRIBE", request_url_, {{"Accept", "application/sdp"}});
  }

  void on_describe(const rtsp::Message& m) {
    if (m.body.empty()) throw SessionFailure("DESCRIBE answer has no SDP");
    const sdp::Session description = sdp::parse(m.body);
    const std::string base = rtsp::content_base(m, request_url_);
    aggregate_url_ = description.control.empty() ? base : rtsp::resolve_control(base, description.control);
    live555_bug_ = sdp::has_live555_tcp_bug(description);
    std::string offered;
    for (const sdp::Media& media : description.media) {
      offered += (offered.empty() ? "" : ", ") + media.type + "/" + media.encoding;
      auto track = make_track(media, base);
      if (track) tracks_.push_back(std::move(track));
    }
    const bool has_video = std::any_of(tracks_.begin(), tracks_.end(),
                                       [](const auto& t) { return t->kind == ingest::MediaKind::Video; });
    if (!has_video) {
      tracks_.clear();
      throw SessionFailure("the camera offers no H.264 or H.265 video (offered: " +
                           (offered.empty() ? std::string("nothing") : offered) + ")");
    }
    // Video first: it is what the stream is for; audio is optional and set up after it.
    std::stable_partition(tracks_.begin(), tracks_.end(),
                          [](const auto& t) { return t->kind == ingest::MediaKind::Video; });
    setup_index_ = 0;
    set_state(State::Setup);
    send_setup();
  }

  std::unique_ptr<Track> make_track(const sdp::Media& media, const std::string& base) {
    auto t = std::make_unique<Track>();
    t->media = media;
    t->control_url = rtsp::resolve_control(base, media.control);
    const std::string& enc = media.encoding;
    if (media.type == "video" && (enc == "H264" || enc == "H265")) {
      t->kind = ingest::MediaKind::Video;
      t->video_codec = enc == "H264" ? Codec::H264 : Codec::H265;
      t->codec = enc == "H264" ? "h264" : "h265";
      rtp::VideoDepacketizerOptions opt;
      opt.payload_type = media.payload_type;
      opt.max_access_unit_bytes = config_.max_access_unit_bytes;
      opt.max_don_diff = static_cast<int>(sdp::sprop_max_don_diff(media));
      auto video = std::make_unique<rtp::VideoDepacketizer>(t->video_codec, sdp::parameter_sets(media), opt);
      t->video = video.get();
      t->depacketizer = std::move(video);
      t->clock_rate = 90000;
    } else if (config_.audio && media.type == "audio" && (enc == "MPEG4-GENERIC" || enc == "PCMU" || enc == "PCMA")) {
      t->kind = ingest::MediaKind::Audio;
      t->clock_rate = media.clock_rate ? media.clock_rate : 8000;
      if (enc == "MPEG4-GENERIC") {
        t->codec = "aac";
        rtp::AacOptions opt;
        opt.payload_type = media.payload_type;
        if (auto aac = sdp::aac_config(media)) {
          opt.size_length = static_cast<int>(aac->size_length);
          opt.index_length = static_cast<int>(aac->index_length);
          opt.index_delta_length = static_cast<int>(aac->index_delta_length);
        }
        t->depacketizer = std::make_unique<rtp::AacDepacketizer>(opt);
      } else {
        t->codec = enc == "PCMU" ? "pcmu" : "pcma";
        t->depacketizer = std::make_unique<rtp::G711Depacketizer>(media.payload_type);
      }
    } else {
      return nullptr;
    }
    rtp::TimelineOptions topt;
    topt.clock_rate = t->clock_rate;
    if (t->kind == ingest::MediaKind::Audio) topt.frame_duration_ticks = t->codec == "aac" ? 1024 : 160;
    // RTP carries presentation times: with B-frames they step back by a few frames in decode
    // order. Two seconds covers any real reorder depth; larger backward steps are camera resets.
    if (t->kind == ingest::MediaKind::Video) topt.max_backward_ticks = 2 * 90000;
    t->timeline = std::make_unique<rtp::Timeline>(topt);
    if (!config_.tcp) {
      rtp::ReorderOptions ro;
      ro.capacity = static_cast<std::size_t>(config_.udp_reorder_packets);
      ro.max_delay_us = config_.udp_reorder_delay_ms * 1000;
      t->reorder = std::make_unique<rtp::ReorderWindow>(ro);
    }
    return t;
  }

  void send_setup() {
    Track& t = *tracks_[setup_index_];
    std::string transport;
    if (config_.tcp) {
      const int channel = static_cast<int>(setup_index_) * 2;
      transport = "RTP/AVP/TCP;unicast;interleaved=" + std::to_string(channel) + "-" + std::to_string(channel + 1);
    } else {
      open_udp_pair(t);
      transport = "RTP/AVP;unicast;client_port=" + std::to_string(t.client_port) + "-" +
                  std::to_string(t.client_port + 1);
    }
    send_request("SETUP", t.control_url, {{"Transport", transport}});
  }

  void on_setup(const rtsp::Message& m) {
    Track& t = *tracks_[setup_index_];
    if (auto session = m.header("Session")) {
      const rtsp::Session s = rtsp::parse_session(*session);
      // Some cameras change the session id between SETUPs; the first one is the session (retina's
      // SessionIdPolicy::UseFirst).
      if (session_id_.empty()) session_id_ = s.id;
      timeout_s_ = s.timeout_s;
    } else if (session_id_.empty()) {
      throw SessionFailure("SETUP answer has no Session header");
    }
    const auto transport_value = m.header("Transport");
    if (!transport_value) throw SessionFailure("SETUP answer has no Transport header");
    const rtsp::Transport tr = rtsp::parse_transport(*transport_value);
    if (config_.tcp) {
      if (!tr.tcp && !tr.interleaved) throw SessionFailure("the camera refused RTP over TCP (answered " + tr.to_string() + ")");
      const int channel = static_cast<int>(setup_index_) * 2;
      t.rtp_channel = tr.interleaved ? tr.interleaved->first : channel;
      t.rtcp_channel = tr.interleaved ? tr.interleaved->second : channel + 1;
    } else {
      if (tr.tcp) throw SessionFailure("the camera answered UDP SETUP with TCP transport");
      if (tr.server_port) {
        t.server_rtp_port = tr.server_port->first;
        t.server_rtcp_port = tr.server_port->second;
      }
      punch_udp(t);
    }
    if (tr.ssrc) {
      t.have_ssrc = true;
      t.ssrc = *tr.ssrc;
    }
    if (++setup_index_ < tracks_.size()) {
      send_setup();
      return;
    }
    set_state(State::Play);
    send_request("PLAY", aggregate_url_, {{"Range", "npt=0.000-"}});
  }

  void on_play(const rtsp::Message&) {
    // RTP-Info is not used: cameras send bogus seq and rtptime there (Hikvision, Tapo, OMNY); the
    // sequence tracker and the timeline start from the first packets instead.
    set_state(State::Playing);
    const std::int64_t now = loop_.now_ns();
    last_media_ns_ = now;
    playing_since_ns_ = now;
    // Half the session timeout, capped at 30 s for NAT boxes with short timeouts (retina).
    const std::int64_t timeout_ms = std::int64_t(std::min<std::uint32_t>(timeout_s_ ? timeout_s_ : 60, 60)) * 1000;
    keepalive_interval_ns_ = std::max<std::int64_t>(500, timeout_ms / 2) * kMs;
    next_keepalive_ns_ = now + keepalive_interval_ns_;
    next_report_ns_ = now + kReceiverReportNs;
    {
      stats_.playing_since_wall_us = loop_.clock().wall_us();
      const Track& v = *tracks_.front();
      stats_.codec = v.codec;
    }
    emit(EventKind::Playing, std::string("playing ") + tracks_.front()->codec + " over " + (config_.tcp ? "TCP" : "UDP"));
  }

  // ------------------------------------------------------------------------------------------
  // Media

  void on_interleaved(std::uint8_t channel, ByteSpan payload) {
    for (auto& t : tracks_) {
      if (channel == t->rtp_channel) {
        on_rtp(*t, payload);
        return;
      }
      if (channel == t->rtcp_channel) {
        on_rtcp(*t, payload);
        return;
      }
    }
    // Data on a channel never set up (some cameras; or a stale live555 session): ignored.
    ++ignored_frames_;
  }

  void on_rtp(Track& t, ByteSpan data) {
    const rtp::Packet packet = rtp::parse_packet(data);
    const std::int64_t now = loop_.now_ns();
    last_media_ns_ = now;
    {
      ++stats_.packets;
      stats_.bytes += packet.payload.size();
    }
    if (t.reorder) {
      t.reorder->push(data, now / 1000, [&](const rtp::Packet& p, std::uint32_t lost) { released(t, p, lost); });
      return;
    }
    check_ssrc(t, packet);
    const rtp::SequenceResult seq = t.sequence.update(packet.sequence);
    if (!rtp::deliverable(seq.event)) return;  // duplicates and late packets
    if (seq.event == rtp::SequenceEvent::Restart) t.depacketizer->reset();
    depacketize(t, packet, seq.lost);
  }

  // A packet the UDP reorder window releases in sequence order.
  void released(Track& t, const rtp::Packet& p, std::uint32_t lost) {
    check_ssrc(t, p);
    t.sequence.update(p.sequence);  // for receiver reports; the window already counted the loss
    depacketize(t, p, lost);
  }

  void check_ssrc(Track& t, const rtp::Packet& packet) {
    // The SSRC in the SETUP answer may be wrong (engine.md §1.8); the first packet's wins. A new
    // SSRC later is a new source (a camera restart): start its sequence and access units afresh.
    if (!t.have_ssrc || !t.sequence.started()) {
      t.have_ssrc = true;
      t.ssrc = packet.ssrc;
      return;
    }
    if (packet.ssrc != t.ssrc) {
      t.ssrc = packet.ssrc;
      t.sequence.reset();
      t.depacketizer->reset();
      ++ssrc_changes_;
    }
  }

  void depacketize(Track& t, const rtp::Packet& packet, std::uint32_t lost) {
    if (lost) {
      stats_.packets_lost += lost;
    }
    const auto units = t.depacketizer->push(packet, lost);
    for (const rtp::AccessUnit& au : units) deliver(t, au);
  }

  void on_rtcp(Track& t, ByteSpan data) {
    rtp::parse_rtcp(data, rtcp_);
    const std::int64_t wall = loop_.clock().wall_us();
    for (const rtp::SenderReport& sr : rtcp_.sender_reports) {
      if (t.have_ssrc && sr.ssrc != t.ssrc) continue;  // unknown SSRC (Tapo): ignored
      t.timeline->on_sender_report(sr.ntp_time, sr.rtp_time);
      t.sequence.on_sender_report(sr.ntp_time, wall);
    }
    if (!rtcp_.byes.empty() && t.kind == ingest::MediaKind::Video)
      throw SessionFailure("the camera ended the stream (RTCP BYE)");
  }

  void deliver(Track& t, const rtp::AccessUnit& unit) {
    // With the arrival time the timeline tells a stalled camera (time really passed) from a
    // timestamp jump.
    const std::int64_t ticks = t.timeline->advance(unit.rtp_timestamp, loop_.now_ns() / 1000);
    const bool discontinuity = t.timeline->discontinuity();
    Continuity& c = continuity_[t.kind == ingest::MediaKind::Video ? 0 : 1];
    const std::int64_t now = loop_.now_ns();
    if (!t.started) {
      t.started = true;
      if (c.have) {
        const std::int64_t away_90k = (now - c.last_ns) / 1'000'000 * 90;
        t.pts_offset = c.last_pts + std::max<std::int64_t>(away_90k, 1);
        t.last_dts = c.last_dts;
        t.have_dts = true;
      }
    }
    const std::int64_t pts = t.pts_offset + (t.clock_rate == 90000 ? ticks : ticks * 90000 / t.clock_rate);
    ingest::AccessUnit au;
    au.stream = identity_;
    au.kind = t.kind;
    au.codec = t.codec;
    au.data = BytePool::shared().acquire(unit.data.size());
    std::memcpy(au.data->data(), unit.data.data(), unit.data.size());
    au.pts_90k = pts;
    au.dts_90k = decode_time(t, pts, discontinuity);
    c.have = true;
    c.last_pts = std::max(c.last_pts, pts);
    c.last_dts = au.dts_90k;
    c.last_ns = now;
    au.wall_us = t.timeline->wall_clock_us(ticks, loop_.clock().wall_us());
    au.keyframe = unit.keyframe;
    au.gap = unit.gap;
    au.dropped_frames = unit.dropped_frames;
    au.lost_packets = unit.lost_packets;
    au.clock_rate = t.clock_rate;
    if (t.video) {
      if (unit.parameter_sets_changed || !t.parameter_sets) {
        // The unit's own sets: when one packet completes two units, the depacketizer's current
        // sets may already be the second one's.
        t.parameter_sets = std::make_shared<const ParameterSets>(
            unit.parameter_sets ? *unit.parameter_sets : t.video->parameter_sets());
        au.parameters_changed = true;
        on_parameters(t);
      }
      au.parameter_sets = t.parameter_sets;
      ++stats_.frames;
      ++frames_window_;
      stats_.frames_dropped += unit.dropped_frames;
      stats_.timestamp_discontinuities += discontinuity ? 1 : 0;
      if (unit.keyframe) stats_.last_keyframe_wall_us = au.wall_us;
    }
    for (ingest::Subscriber* s : subscribers_) s->on_access_unit(au);
    if (!config_.deliver) return;
    if (t.python_needs_keyframe && !(unit.keyframe || t.kind == ingest::MediaKind::Audio)) {
      ++stats_.frames_dropped_queue;
      return;
    }
    if (!queue_.push(std::move(au))) {
      // Python is not keeping up: drop to the next keyframe so what it gets stays decodable.
      t.python_needs_keyframe = t.kind == ingest::MediaKind::Video;
      ++stats_.frames_dropped_queue;
      return;
    }
    t.python_needs_keyframe = false;
  }

  std::int64_t decode_time(Track& t, std::int64_t pts, bool discontinuity) {
    if (t.kind == ingest::MediaKind::Audio || t.reorder_frames == 0) {
      // No reordering: decode time is presentation time; kept strictly increasing for muxers.
      const std::int64_t dts = t.have_dts && pts <= t.last_dts ? t.last_dts + 1 : pts;
      t.last_dts = dts;
      t.have_dts = true;
      return dts;
    }
    if (discontinuity) {
      t.pts_heap = {};
      t.decoded = 0;
    }
    if (t.decoded == 0) t.first_pts = pts;
    t.pts_heap.push(pts);
    std::int64_t dts;
    if (t.decoded < t.reorder_frames) {
      // Before `reorder_frames` frames are known, decode times step back from the first one.
      dts = t.first_pts - (t.reorder_frames - t.decoded) * frame_duration(t);
    } else {
      dts = t.pts_heap.top();
      t.pts_heap.pop();
    }
    ++t.decoded;
    if (t.have_dts && dts <= t.last_dts) dts = t.last_dts + 1;
    t.last_dts = dts;
    t.have_dts = true;
    return dts;
  }

  std::int64_t frame_duration(const Track& t) const {
    if (t.parameter_sets && !t.parameter_sets->sps.empty()) {
      try {
        const double fps = parse_sps(t.video_codec, t.parameter_sets->sps.front()).frame_rate();
        if (fps > 0.5 && fps < 1000) return static_cast<std::int64_t>(90000.0 / fps + 0.5);
      } catch (const BitstreamError&) {
      }
    }
    return 3600;  // 25 fps
  }

  void on_parameters(Track& t) {
    SpsInfo sps;
    try {
      sps = parse_sps(t.video_codec, t.parameter_sets->sps.front());
    } catch (const BitstreamError&) {
      return;
    }
    const int reorder = std::max(0, sps.max_num_reorder_frames);
    if (reorder != t.reorder_frames) {
      t.reorder_frames = reorder;
      t.pts_heap = {};
      t.decoded = 0;
    }
    bool changed;
    {
      changed = stats_.width != 0 && (stats_.width != sps.width || stats_.height != sps.height);
      stats_.width = sps.width;
      stats_.height = sps.height;
    }
    emit(EventKind::ParametersChanged,
         std::string(t.codec) + " " + std::to_string(sps.width) + "x" + std::to_string(sps.height) +
             (changed ? " (changed)" : ""));
  }

  // ------------------------------------------------------------------------------------------
  // UDP

  void open_udp_pair(Track& t) {
    const int family = peer_.addr.ss_family;
    std::uniform_int_distribution<int> pick(10000, 30000);
    for (int attempt = 0; attempt < 50; ++attempt) {
      const auto port = static_cast<std::uint16_t>(pick(random_) * 2);
      int rtp = bind_udp(family, port);
      if (rtp < 0) continue;
      int rtcp = bind_udp(family, static_cast<std::uint16_t>(port + 1));
      if (rtcp < 0) {
        close_fd(rtp);
        continue;
      }
      t.rtp_fd = rtp;
      t.rtcp_fd = rtcp;
      t.client_port = port;
      loop_.watch(rtp, EPOLLIN, this);
      loop_.watch(rtcp, EPOLLIN, this);
      return;
    }
    throw SessionFailure("no free UDP port pair for RTP/RTCP");
  }

  static int bind_udp(int family, std::uint16_t port) {
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_storage addr{};
    socklen_t len;
    if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_any;
      a->sin6_port = htons(port);
      len = sizeof(sockaddr_in6);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_ANY);
      a->sin_port = htons(port);
      len = sizeof(sockaddr_in);
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      ::close(fd);
      return -1;
    }
    // A 1080p keyframe is hundreds of packets in one burst: the default buffer drops them.
    const int rcvbuf = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    return fd;
  }

  static bool same_host(const sockaddr_storage& a, const Address& b) {
    if (a.ss_family != b.addr.ss_family) return false;
    if (a.ss_family == AF_INET)
      return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr ==
             reinterpret_cast<const sockaddr_in&>(b.addr).sin_addr.s_addr;
    return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                       &reinterpret_cast<const sockaddr_in6&>(b.addr).sin6_addr, sizeof(in6_addr)) == 0;
  }

  Address server_udp(std::uint16_t port) const {
    Address a = peer_;
    if (a.addr.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&a.addr)->sin6_port = htons(port);
    else
      reinterpret_cast<sockaddr_in*>(&a.addr)->sin_port = htons(port);
    return a;
  }

  // Sends a receiver report toward the server's RTCP port: it opens NAT/firewall state for the
  // media and tells the camera we are alive (RFC 3550 §6).
  void punch_udp(Track& t) { send_receiver_report(t); }

  void send_receiver_report(Track& t) {
    if (t.rtcp_fd < 0 || t.server_rtcp_port == 0) return;
    rtp::ReceptionReport block = t.sequence.report(t.ssrc, loop_.clock().wall_us());
    const std::size_t blocks = t.sequence.started() ? 1 : 0;
    std::uint8_t buf[256];
    const std::size_t n = rtp::write_receiver_report(our_ssrc_, std::span(&block, blocks), "vmscore", buf);
    const Address to = server_udp(t.server_rtcp_port);
    // Errors (ECONNREFUSED before the server listens) do not matter: reports are periodic.
    ::sendto(t.rtcp_fd, buf, n, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to.addr), to.len);
  }

  void read_udp(int fd) {
    Track* track = nullptr;
    bool is_rtcp = false;
    for (auto& t : tracks_) {
      if (t->rtp_fd == fd) track = t.get();
      if (t->rtcp_fd == fd) {
        track = t.get();
        is_rtcp = true;
      }
    }
    if (!track) return;
    constexpr int kBatch = 32;
    constexpr std::size_t kDatagram = 65536;
    if (udp_buffer_.size() < kBatch * kDatagram) udp_buffer_.resize(kBatch * kDatagram);
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage from[kBatch];
    for (int round = 0; round < 64; ++round) {  // bounded: fairness between cameras
      for (int i = 0; i < kBatch; ++i) {
        iov[i] = {udp_buffer_.data() + static_cast<std::size_t>(i) * kDatagram, kDatagram};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      const int n = ::recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;
      for (int i = 0; i < n; ++i) {
        // Only the camera's address may feed its stream: anyone can send datagrams to our ports.
        if (!same_host(from[i], peer_)) {
          ++foreign_datagrams_;
          continue;
        }
        const ByteSpan data(static_cast<const std::uint8_t*>(iov[i].iov_base), msgs[i].msg_len);
        try {
          if (is_rtcp)
            on_rtcp(*track, data);
          else
            on_rtp(*track, data);
        } catch (const BitstreamError&) {
          // One malformed datagram is not the camera's whole stream: count and go on.
          ++malformed_datagrams_;
        }
      }
      if (n < kBatch) return;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Time

  void tick(std::int64_t now) {
    update_rates(now);
    switch (state_) {
      case State::Backoff:
        if (now >= retry_at_ns_) {
          {
                  ++stats_.reconnects;
          }
          emit(EventKind::Reconnecting, "reconnecting to " + url_.redacted());
          connect();
        }
        return;
      case State::Stopped:
      case State::Idle:
      case State::Resolving:
        return;
      case State::Playing:
        break;
      default:
        if (deadline_ns_ && now > deadline_ns_)
          throw SessionFailure(state_ == State::Connecting
                                   ? "timed out connecting to " + url_.redacted()
                                   : "no answer to " + pending_method_ + " within " +
                                         std::to_string(config_.connect_timeout_ms) + " ms");
        return;
    }
    for (auto& t : tracks_) {
      if (t->reorder && t->reorder->next_deadline_us() <= now / 1000) {
        t->reorder->poll(now / 1000, [&](const rtp::Packet& p, std::uint32_t lost) { released(*t, p, lost); });
      }
    }
    if (now - last_media_ns_ > config_.stall_timeout_ms * kMs) {
      emit(EventKind::Stalled, "no media for " + std::to_string(config_.stall_timeout_ms / 1000) + " s");
      throw SessionFailure("stalled: no media for " + std::to_string((now - last_media_ns_) / 1'000'000) + " ms");
    }
    if (now >= next_keepalive_ns_) {
      // Keepalive answers are not waited for: cameras that ignore them (GW Security) keep streaming,
      // and the stall check above catches a session that really died.
      send_request(keepalive_method_, aggregate_url_, {}, false);
      next_keepalive_ns_ = now + keepalive_interval_ns_;
    }
    if (!config_.tcp && now >= next_report_ns_) {
      for (auto& t : tracks_) send_receiver_report(*t);
      next_report_ns_ = now + std::min(kReceiverReportNs, keepalive_interval_ns_);
    }
    // A session that has played for a while earns a fresh backoff.
    if (now - playing_since_ns_ > 30'000 * kMs) backoff_ns_ = config_.reconnect_min_ms * kMs;
  }

  void update_rates(std::int64_t now) {
    if (now - rate_since_ns_ < 1000 * kMs) return;
    const double secs = double(now - rate_since_ns_) / 1e9;
    if (rate_since_ns_ != 0 && secs > 0) {
      stats_.fps = double(frames_window_) / secs;
      stats_.bitrate_bps = double(stats_.bytes - bytes_at_window_) * 8.0 / secs;
    }
    frames_window_ = 0;
    bytes_at_window_ = stats_.bytes;
    rate_since_ns_ = now;
    stats_.state = state_name(state_);
  }

  // ------------------------------------------------------------------------------------------
  // Failure and events

  void fail(const std::string& why, bool auth_failed = false) {
    if (state_ == State::Stopped) return;
    const bool unclean = fd_ >= 0 && live555_bug_;
    if (fd_ >= 0 && !session_id_.empty()) send_teardown();
    close_connection();
    {
      stats_.last_error = why;
      stats_.fps = 0;
      stats_.bitrate_bps = 0;
    }
    publish();
    emit(auth_failed ? EventKind::Error : EventKind::Disconnected, why);
    std::int64_t delay = backoff_ns_;
    // Wrong credentials will not fix themselves quickly; do not hammer the camera (and its lockout).
    if (auth_failed) delay = config_.reconnect_max_ms * kMs;
    // A live555 server with the TCP bug keeps the old session sending into reused sockets until it
    // expires; reconnecting earlier mixes old data into the new connection.
    if (unclean) delay = std::max(delay, config_.stale_session_wait_ms * kMs);
    retry_at_ns_ = loop_.now_ns() + delay;
    backoff_ns_ = std::min(backoff_ns_ * 2, config_.reconnect_max_ms * kMs);
    set_state(State::Backoff);
  }

  void emit(EventKind kind, std::string reason) {
    ingest::StreamEvent ev;
    ev.stream = identity_;
    ev.kind = kind;
    ev.reason = std::move(reason);
    ev.wall_us = loop_.clock().wall_us();
    for (ingest::Subscriber* s : subscribers_) s->on_event(ev);
    queue_.push(std::move(ev));
  }

  void set_state(State s) {
    state_ = s;
    stats_.state = state_name(s);
    publish();
  }

  // The counters are the loop thread's alone (no lock per packet); readers get a copy made here,
  // at every tick and state change.
  void publish() {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    published_ = stats_;
  }

  EventLoop& loop_;
  DeliveryQueue& queue_;
  Resolver& resolver_;
  ingest::StreamConfig config_;
  std::shared_ptr<const ingest::StreamIdentity> identity_;
  rtsp::Url url_;
  std::shared_ptr<bool> alive_;
  std::mt19937_64 random_;
  std::string username_, password_;
  std::string request_url_;
  std::string aggregate_url_;
  Address peer_;

  State state_ = State::Idle;
  int fd_ = -1;
  InputBuffer input_;
  Bytes output_;
  std::size_t output_head_ = 0;
  bool watching_out_ = false;
  rtsp::Message message_;
  rtsp::Limits limits_;
  rtp::RtcpCompound rtcp_;
  Bytes udp_buffer_;

  std::uint32_t cseq_ = 0;
  std::string pending_method_;
  std::string pending_uri_;
  std::vector<rtsp::Header> pending_headers_;
  std::uint32_t pending_cseq_ = 0;
  std::optional<rtsp::Challenge> challenge_;
  std::uint32_t nonce_count_ = 0;
  bool auth_retried_ = false;
  std::string session_id_;
  std::uint32_t timeout_s_ = 60;
  std::string keepalive_method_ = "OPTIONS";
  bool live555_bug_ = false;
  std::uint32_t our_ssrc_ = 0x766d7363;  // "vmsc"

  std::vector<std::unique_ptr<Track>> tracks_;
  std::size_t setup_index_ = 0;
  Continuity continuity_[2];  // video, audio

  std::uint64_t attempt_ = 0;
  std::int64_t deadline_ns_ = 0;
  std::int64_t retry_at_ns_ = 0;
  std::int64_t backoff_ns_ = 0;
  std::int64_t last_media_ns_ = 0;
  std::int64_t playing_since_ns_ = 0;
  std::int64_t next_keepalive_ns_ = 0;
  std::int64_t keepalive_interval_ns_ = 0;
  std::int64_t next_report_ns_ = 0;
  std::int64_t rate_since_ns_ = 0;
  std::uint64_t frames_window_ = 0;
  std::uint64_t bytes_at_window_ = 0;
  std::uint64_t ignored_frames_ = 0;
  std::uint64_t ssrc_changes_ = 0;
  std::uint64_t malformed_datagrams_ = 0;
  std::uint64_t foreign_datagrams_ = 0;

  std::vector<ingest::Subscriber*> subscribers_;
  ingest::StreamStats stats_;      // loop thread only
  mutable std::mutex stats_mutex_;
  ingest::StreamStats published_;  // what stats() returns
};

Session::Session(EventLoop& loop, DeliveryQueue& queue, Resolver& resolver, ingest::StreamConfig config)
    : impl_(std::make_unique<SessionImpl>(loop, queue, resolver, std::move(config))) {}
Session::~Session() = default;
void Session::start() { impl_->start(); }
void Session::stop() { impl_->stop(); }
void Session::subscribe(ingest::Subscriber* s) { impl_->subscribe(s); }
void Session::unsubscribe(ingest::Subscriber* s) { impl_->unsubscribe(s); }
ingest::StreamStats Session::stats() const { return impl_->stats(); }
const std::string& Session::id() const { return impl_->id(); }

void validate(const ingest::StreamConfig& config) {
  if (config.id.empty()) throw std::invalid_argument("stream id must not be empty");
  rtsp::Url url;
  try {
    url = rtsp::parse_url(config.url);
  } catch (const BitstreamError& e) {
    throw std::invalid_argument(std::string("bad stream URL: ") + e.what());
  }
  if (url.scheme != "rtsp")
    throw std::invalid_argument("only rtsp:// URLs are supported, not " + url.scheme + "://");
  if (config.connect_timeout_ms <= 0 || config.stall_timeout_ms <= 0)
    throw std::invalid_argument("timeouts must be positive");
  if (config.reconnect_min_ms <= 0 || config.reconnect_max_ms < config.reconnect_min_ms)
    throw std::invalid_argument("reconnect backoff must satisfy 0 < min <= max");
  if (config.max_access_unit_bytes < 1024) throw std::invalid_argument("max_access_unit_bytes too small");
}

}  // namespace vms::engine
