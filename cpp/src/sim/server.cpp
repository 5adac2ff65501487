// The camera simulator's server: its thread, sockets (the RTSP listener, one UDP port pair for
// every UDP session), connections and their output queues, session lifetimes, the control calls
// of CameraServer and the fault switches. See vmscore/camera_server.hpp; requests are handled in
// rtsp_handler.cpp, media in streaming.cpp.
//
// Threading: one server thread runs everything below except the CameraServer methods, which post
// to it through Impl::call() and wait.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "sim/server_impl.hpp"
#include "vmscore/error.hpp"

namespace vms::sim {
namespace detail {
namespace {

[[noreturn]] void fail_errno(const std::string& what) {
  const int err = errno;
  throw IoError("camera server: " + what + ": " + std::strerror(err), err);
}

int bind_socket(int type, const sockaddr_in& addr) {
  const int fd = ::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  const int one = 1;
  if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 200 || name == "." || name == "..") return false;
  for (const char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~';
    if (!ok) return false;
  }
  return true;
}

const char kHex[] = "0123456789abcdef";

}  // namespace

std::uint64_t hash_name(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

// Handlers never let an exception reach the event loop: it would end the server thread for every
// camera. A failing connection is closed; anything else is dropped with the event that caused it.
void Connection::on_io(int, std::uint32_t events) {
  try {
    server->on_connection_io(*this, events);
  } catch (const std::exception&) {
    server->close_later(*this);
    server->process_closes();
  }
}

void Impl::FdHandler::on_io(int fd, std::uint32_t) {
  try {
    if (fd == impl->listen_fd_)
      impl->on_accept();
    else
      impl->on_udp(fd);
    impl->process_closes();
  } catch (const std::exception&) {
  }
}

Impl::Impl(ServerOptions options)
    : options_(std::move(options)), loop_(clock_, options_.tick_ms), rng_(options_.seed ^ 0xC0FFEEull) {
  if (options_.tick_ms < 1 || options_.tick_ms > 100)
    throw std::invalid_argument("camera server: tick_ms must be 1..100");
  if (options_.session_timeout_s < 1 || options_.session_timeout_s > 86400)
    throw std::invalid_argument("camera server: session_timeout_s must be 1..86400");
  if (options_.client_queue_bytes < 64 * 1024)
    throw std::invalid_argument("camera server: client_queue_bytes must be at least 64 KiB");
  if (options_.send_buffer_bytes > (64u << 20))
    throw std::invalid_argument("camera server: send_buffer_bytes must be at most 64 MiB");
  if (!(options_.sender_report_interval_s >= 0.1) || !(options_.sender_report_interval_s <= 3600))
    throw std::invalid_argument("camera server: sender_report_interval_s must be 0.1..3600");
  if (options_.realm.find_first_of("\"\\\r\n") != std::string::npos)
    throw std::invalid_argument("camera server: the realm may not hold quotes, backslashes or line ends");
  if (!options_.username.empty() && options_.username.find_first_of(":\r\n") != std::string::npos)
    throw std::invalid_argument("camera server: the user name may not hold ':' or line ends");

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1)
    throw std::invalid_argument("camera server: host must be an IPv4 address, not '" + options_.host + "'");
  addr.sin_port = htons(options_.port);
  listen_fd_ = bind_socket(SOCK_STREAM, addr);
  if (listen_fd_ < 0) fail_errno("bind " + options_.host + ":" + std::to_string(options_.port));
  if (::listen(listen_fd_, 1024) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    errno = err;
    fail_errno("listen");
  }
  port_ = local_port(listen_fd_);

  // The UDP pair: RTP on an even port, RTCP on the next one (RFC 3550 §11), shared by every UDP
  // session; clients are told it in server_port.
  for (int attempt = 0; attempt < 64 && udp_rtcp_fd_ < 0; ++attempt) {
    sockaddr_in u = addr;
    u.sin_port = 0;
    const int rtp = bind_socket(SOCK_DGRAM, u);
    if (rtp < 0) break;
    const std::uint16_t p = local_port(rtp);
    if (p % 2 == 0 && p < 65535) {
      u.sin_port = htons(static_cast<std::uint16_t>(p + 1));
      const int rtcp = bind_socket(SOCK_DGRAM, u);
      if (rtcp >= 0) {
        udp_rtp_fd_ = rtp;
        udp_rtcp_fd_ = rtcp;
        udp_port_ = p;
        break;
      }
    }
    ::close(rtp);
  }
  if (udp_rtcp_fd_ < 0) {
    ::close(listen_fd_);
    throw IoError("camera server: no free UDP port pair", EADDRINUSE);
  }
  // Keyframes leave in one burst; a larger send buffer keeps sendmmsg from failing half-way.
  const int sndbuf = 4 << 20;
  ::setsockopt(udp_rtp_fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  for (int i = 0; i < 32; ++i) nonce_ += kHex[rng_.next() & 15];
  udp_buf_.resize(64 * 1024);
  read_buf_.resize(64 * 1024);
  fd_handler_.impl = this;
  loop_.watch(listen_fd_, EPOLLIN, &fd_handler_);
  loop_.watch(udp_rtp_fd_, EPOLLIN, &fd_handler_);
  loop_.watch(udp_rtcp_fd_, EPOLLIN, &fd_handler_);
  loop_.add_ticker(this);
}

// Not in the constructor: the thread calls virtual functions of the complete object, which a
// derived class's constructor is still writing (ThreadSanitizer caught the vtable race).
void Impl::start() {
  running_ = true;
  thread_ = std::thread(&Impl::thread_main, this);
}

Impl::~Impl() { close(); }

bool Impl::running() const {
  std::lock_guard<std::mutex> lock(control_mutex_);
  return running_;
}

void Impl::close() {
  {
    std::lock_guard<std::mutex> lock(control_mutex_);
    if (!running_) {
      if (thread_.joinable()) thread_.join();
      return;
    }
    running_ = false;
  }
  loop_.stop();
  if (thread_.joinable()) thread_.join();
}

void Impl::thread_main() {
  try {
    loop_.run();
  } catch (...) {
    // epoll itself failed: nothing can be served any more. Later control calls see "closed";
    // calls already waiting are answered below.
    std::lock_guard<std::mutex> lock(control_mutex_);
    running_ = false;
  }
  // Shutdown on the server thread, which owns everything: sessions, connections, sockets.
  for (auto& [serial, c] : connections_) {
    if (c->fd >= 0) {
      loop_.unwatch(c->fd);
      ::close(c->fd);
      c->fd = -1;
    }
    c->closed = true;
  }
  sessions_.clear();
  connections_.clear();
  dead_.clear();
  to_close_.clear();
  cameras_.clear();
  for (int* fd : {&listen_fd_, &udp_rtp_fd_, &udp_rtcp_fd_}) {
    if (*fd >= 0) {
      loop_.unwatch(*fd);
      ::close(*fd);
      *fd = -1;
    }
  }
  loop_.remove_ticker(this);
}

// ---------------------------------------------------------------------------------------------
// Sockets and connections

void Impl::on_accept() {
  // Bounded per readiness event, so that a connection storm cannot starve the cameras' pacing.
  for (int i = 0; i < 64; ++i) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a connection that died in the backlog, or EMFILE
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (options_.send_buffer_bytes > 0) {
      const int size = static_cast<int>(options_.send_buffer_bytes);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
    auto c = std::make_unique<Connection>();
    c->server = this;
    c->fd = fd;
    c->serial = next_serial_++;
    c->peer = peer;
    len = sizeof c->local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&c->local), &len);
    c->in.reserve(4096);
    try {
      loop_.watch(fd, EPOLLIN | EPOLLRDHUP, c.get());
    } catch (const IoError&) {
      ::close(fd);
      continue;
    }
    connections_.emplace(c->serial, std::move(c));
  }
}

void Impl::on_udp(int fd) {
  // RTCP receiver reports (and FFmpeg's port-punching packets on the RTP port) show that a UDP
  // client is alive: they keep its session from timing out.
  const std::int64_t now = now_ns();
  for (int i = 0; i < 256; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd, udp_buf_.data(), udp_buf_.size(), 0,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;
    for (auto& [id, s] : sessions_) {
      if (s->tcp) continue;
      const sockaddr_in& want = fd == udp_rtcp_fd_ ? s->rtcp_addr : s->rtp_addr;
      if (want.sin_port == from.sin_port && want.sin_addr.s_addr == from.sin_addr.s_addr)
        s->last_seen_ns = now;
    }
  }
}

void Impl::on_connection_io(Connection& c, std::uint32_t events) {
  if (c.closed || c.close_pending) return;
  if (events & EPOLLOUT) flush_out(c);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    bool eof = false;
    // Up to 1 MiB per event: a client flooding interleaved data gets its share, not the loop.
    for (int i = 0; i < 16 && !c.close_pending; ++i) {
      const ssize_t n = ::recv(c.fd, read_buf_.data(), read_buf_.size(), 0);
      if (n > 0) {
        const std::size_t at = c.in.size();
        c.in.resize(at + static_cast<std::size_t>(n));
        std::memcpy(c.in.data() + at, read_buf_.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = true;
      break;
    }
    std::size_t off = 0;
    try {
      while (!c.close_pending && off < c.in.size()) {
        const rtsp::Item item =
            rtsp::parse_next(ByteSpan(c.in).subspan(off), c.request, rtsp::Limits{});
        if (item.kind == rtsp::ItemKind::NeedMore) break;
        off += item.consumed;
        if (item.kind == rtsp::ItemKind::Interleaved) {
          // A client's RTCP on an interleaved channel: a sign of life for its session.
          for (Session* s : c.sessions)
            if (s->rtcp_channel == item.frame.channel || s->rtp_channel == item.frame.channel)
              s->last_seen_ns = now_ns();
        } else if (c.request.is_request) {
          handle_request(c, c.request);
        }
      }
    } catch (const BitstreamError&) {
      // Not RTSP: answer once and hang up, as a camera would.
      const std::string text = rtsp::format_response(400, "Bad Request", 0);
      push_out(c, text.data(), text.size());
      close_later(c);
    }
    if (off > 0) c.in.erase(c.in.begin(), c.in.begin() + std::ptrdiff_t(off));
    if (eof) close_later(c);
  }
  process_closes();
}

void Impl::push_out(Connection& c, const void* data, std::size_t size) {
  if (c.closed || size == 0) return;
  const auto* p = static_cast<const std::uint8_t*>(data);
  if (c.pending() == 0) {
    const ssize_t n = ::send(c.fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      close_later(c);
      return;
    }
    const std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    p += sent;
    size -= sent;
    if (size == 0) return;
  }
  const std::size_t at = c.out.size();
  c.out.resize(at + size);
  std::memcpy(c.out.data() + at, p, size);
  if (!c.want_out) {
    c.want_out = true;
    loop_.modify(c.fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c);
  }
}

void Impl::write_iov(Connection& c, const iovec* iov, std::size_t count, std::size_t total) {
  if (c.closed || total == 0) return;
  std::size_t done = 0;     // iovecs fully written
  std::size_t partial = 0;  // bytes of iov[done] written
  if (c.pending() == 0) {
    while (done < count) {
      std::size_t end;
      ssize_t n;
      if (partial == 0) {
        end = done + std::min<std::size_t>(count - done, IOV_MAX);
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov + done);
        msg.msg_iovlen = end - done;
        // sendmsg rather than writev: MSG_NOSIGNAL, so a vanished client is an error, not SIGPIPE.
        n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        end = done + 1;  // finish the partly written iovec first
        n = ::send(c.fd, static_cast<const std::uint8_t*>(iov[done].iov_base) + partial,
                   iov[done].iov_len - partial, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        close_later(c);
        return;
      }
      for (std::size_t left = static_cast<std::size_t>(n); left > 0 && done < count;) {
        const std::size_t rest = iov[done].iov_len - partial;
        if (left < rest) {
          partial += left;
          break;
        }
        left -= rest;
        ++done;
        partial = 0;
      }
      if (done < end) break;  // a short write: the socket buffer is full
    }
    if (done == count) return;
  }
  // Queue the rest (the caller checked the bound).
  std::size_t rest = 0;
  for (std::size_t i = done; i < count; ++i) rest += iov[i].iov_len;
  rest -= partial;
  const std::size_t at = c.out.size();
  c.out.resize(at + rest);
  std::uint8_t* dst = c.out.data() + at;
  for (std::size_t i = done; i < count; ++i) {
    const std::size_t skip = i == done ? partial : 0;
    const std::size_t len = iov[i].iov_len - skip;
    if (len) std::memcpy(dst, static_cast<const std::uint8_t*>(iov[i].iov_base) + skip, len);
    dst += len;
  }
  if (!c.want_out) {
    c.want_out = true;
    loop_.modify(c.fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c);
  }
}

void Impl::flush_out(Connection& c) {
  while (c.pending() > 0) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      close_later(c);
      return;
    }
    c.out_off += static_cast<std::size_t>(n);
  }
  if (c.pending() == 0) {
    c.out.clear();  // keeps its capacity: a slow client's queue is allocated once
    c.out_off = 0;
    if (c.want_out) {
      c.want_out = false;
      loop_.modify(c.fd, EPOLLIN | EPOLLRDHUP, &c);
    }
  } else if (c.out_off >= 256 * 1024 && c.out_off * 2 >= c.out.size()) {
    c.out.erase(c.out.begin(), c.out.begin() + std::ptrdiff_t(c.out_off));
    c.out_off = 0;
  }
}

void Impl::close_later(Connection& c) {
  if (c.close_pending || c.closed) return;
  c.close_pending = true;
  to_close_.push_back(&c);
}

void Impl::process_closes() {
  while (!to_close_.empty()) {
    Connection* c = to_close_.back();
    to_close_.pop_back();
    close_now(*c);
  }
}

void Impl::close_now(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  detach_sessions(c);
  loop_.unwatch(c.fd);
  ::close(c.fd);
  c.fd = -1;
  auto it = connections_.find(c.serial);
  if (it != connections_.end()) {
    dead_.push_back(std::move(it->second));
    connections_.erase(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Sessions

Session* Impl::find_session(std::string_view id) {
  auto it = sessions_.find(std::string(id));
  return it == sessions_.end() ? nullptr : it->second.get();
}

std::string Impl::new_session_id() {
  for (;;) {
    std::string id;
    std::uint64_t v = rng_.next();
    for (int i = 0; i < 16; ++i, v >>= 4) id += "0123456789ABCDEF"[v & 15];
    if (!sessions_.count(id)) return id;
  }
}

void Impl::destroy_session(Session* s) {
  if (!s) return;
  unpin(*s);
  stop_playing(*s);
  if (s->conn) {
    std::erase(s->conn->sessions, s);
    for (Trickle& t : s->conn->trickles)
      if (t.start_playing == s) t.start_playing = nullptr;
  }
  if (s->camera) std::erase(s->camera->stale, s);
  const std::string id = s->id;  // erase() must not read the key of the element it destroys
  sessions_.erase(id);
}

void Impl::detach_sessions(Connection& c) {
  const std::int64_t now = now_ns();
  std::vector<Session*> list;
  list.swap(c.sessions);
  for (Session* s : list) {
    s->conn = nullptr;
    if (s->stale) continue;  // an old stale session passing through: it waits for the next one
    // A UDP session outlives its RTSP connection (RFC 2326 §3.4) until TEARDOWN or its timeout,
    // as on real cameras: a client that drops the connection without TEARDOWN keeps costing the
    // camera a session slot.
    if (!s->tcp) continue;
    Camera* cam = s->camera;
    if (s->tcp && s->playing && cam && cam->faults.live555_stale_s > 0) {
      // live555 before 2017.06.04 keeps a TCP session whose connection died without TEARDOWN,
      // writing to whatever socket next gets its descriptor.
      s->stale = true;
      s->stale_until_ns = now + static_cast<std::int64_t>(cam->faults.live555_stale_s * 1e9);
      s->ssrc = s->stream->ssrc ^ (rng_.u32() | 1u);
      cam->stale.push_back(s);
      ++cam->stats.stale_sessions;
      continue;
    }
    destroy_session(s);
  }
}

void Impl::attach_stale_sessions(Connection& c, Camera& camera) {
  for (Session* s : camera.stale) {
    if (s->conn) continue;
    s->conn = &c;
    c.sessions.push_back(s);
  }
}

void Impl::expire_sessions(std::int64_t now) {
  std::vector<Session*> doomed;
  const std::int64_t timeout = std::int64_t(options_.session_timeout_s) * kSec;
  for (auto& [id, s] : sessions_) {
    if (s->stale ? now >= s->stale_until_ns : (!s->tcp && now - s->last_seen_ns > timeout)) {
      doomed.push_back(s.get());
      if (!s->stale && s->camera) ++s->camera->stats.sessions_timed_out;
    }
  }
  for (Session* s : doomed) destroy_session(s);
}

// ---------------------------------------------------------------------------------------------
// Ticks

void Impl::on_tick(std::int64_t now) {
  dead_.clear();
  for (auto& [name, cam] : cameras_) {
    try {
      advance(*cam->main, now);
      if (cam->sub) advance(*cam->sub, now);
    } catch (const std::exception&) {
      // Only allocation can fail here; the camera tries again at the next tick.
    }
  }
  for (auto& [serial, c] : connections_) {
    if (c->trickles.empty() || c->closed) continue;
    try {
      run_trickles(*c, now);
    } catch (const std::exception&) {
      close_later(*c);
    }
  }
  if (now >= next_expiry_check_ns_) {
    expire_sessions(now);
    next_expiry_check_ns_ = now + 200 * kMs;
  }
  process_closes();
}

// ---------------------------------------------------------------------------------------------
// Control

Camera* Impl::find_camera(std::string_view name) {
  auto it = cameras_.find(name);
  return it == cameras_.end() ? nullptr : it->second.get();
}

std::string Impl::url(std::string_view name, bool sub) const {
  // A server listening on every interface is still reached at the loopback address locally.
  const std::string host = options_.host == "0.0.0.0" ? std::string("127.0.0.1") : options_.host;
  std::string u = "rtsp://";
  u += host;
  u += ':';
  u += std::to_string(port_);
  u += '/';
  u += name;
  if (sub) u += "/sub";
  return u;
}

std::string Impl::add_camera(CameraConfig config) {
  if (!valid_name(config.name))
    throw std::invalid_argument("camera name '" + config.name +
                                "' must be 1..200 characters of A-Z a-z 0-9 - _ . ~");
  if (!config.main) throw std::invalid_argument("camera '" + config.name + "' has no main clip");
  if (!std::isfinite(config.start_offset_s) || config.start_offset_s < 0)
    throw std::invalid_argument("start_offset_s must be a finite number >= 0");
  if (!config.allow_tcp && !config.allow_udp)
    throw std::invalid_argument("a camera must allow TCP or UDP");
  if (config.has_credentials && config.username.find_first_of(":\r\n") != std::string::npos)
    throw std::invalid_argument("the user name may not hold ':' or line ends");
  if (cameras_.count(config.name)) throw std::invalid_argument("camera '" + config.name + "' exists");
  auto cam = std::make_unique<Camera>();
  cam->config = std::move(config);
  cam->stats.name = cam->config.name;
  const std::int64_t now = now_ns();
  cam->main = make_stream(*cam, cam->config.main, false, now);
  if (cam->config.sub) cam->sub = make_stream(*cam, cam->config.sub, true, now);
  const std::string name = cam->config.name;
  cameras_.emplace(name, std::move(cam));
  return url(name, false);
}

bool Impl::remove_camera(std::string_view name) {
  Camera* cam = find_camera(name);
  if (!cam) return false;
  std::vector<Session*> doomed;
  for (auto& [id, s] : sessions_)
    if (s->camera == cam) doomed.push_back(s.get());
  for (Session* s : doomed) destroy_session(s);
  for (auto& [serial, c] : connections_)
    if (c->camera == cam) {
      c->camera = nullptr;
      close_later(*c);
    }
  process_closes();
  cameras_.erase(cameras_.find(name));
  return true;
}

std::vector<std::string> Impl::camera_names() const {
  std::vector<std::string> out;
  out.reserve(cameras_.size());
  for (const auto& [name, cam] : cameras_) out.push_back(name);
  return out;
}

void Impl::set_fault(std::string_view camera, std::string_view fault, double value) {
  Camera* cam = find_camera(camera);
  if (!cam) throw std::invalid_argument("no camera '" + std::string(camera) + "'");
  if (!std::isfinite(value)) throw std::invalid_argument("fault values must be finite");
  Faults& f = cam->faults;
  const bool on = value != 0;
  const auto rate = [&](double& slot) {
    if (value < 0 || value > 1) throw std::invalid_argument(std::string(fault) + ": a rate in 0..1");
    slot = value;
  };
  // 1 (true) picks the default of a numeric fault; other values are taken as given.
  const auto amount = [&](double dflt, double max) {
    if (value < 0 || value > max)
      throw std::invalid_argument(std::string(fault) + ": a value in 0.." + std::to_string(max));
    return value == 1.0 ? dflt : value;
  };
  const std::int64_t now = now_ns();
  if (fault == "drop_connections") {
    if (!on) return;
    for (auto& [serial, c] : connections_) {
      bool mine = c->camera == cam;
      for (Session* s : c->sessions) mine = mine || s->camera == cam;
      if (mine) close_later(*c);
    }
    process_closes();
  } else if (fault == "stall") {
    const double s = amount(1.0, 86400);
    f.stall_until_ns = on ? now + static_cast<std::int64_t>(s * 1e9) : 0;
  } else if (fault == "corrupt_packets") {
    rate(f.corrupt_rate);
  } else if (fault == "lose_packets") {
    rate(f.loss_rate);
  } else if (fault == "timestamp_jump") {
    if (std::fabs(value) > 4294967295.0) throw std::invalid_argument("timestamp_jump: |ticks| < 2^32");
    const auto ticks = static_cast<std::int64_t>(std::llround(value));
    cam->main->ts_jump += ticks;
    if (cam->sub) cam->sub->ts_jump += ticks;
  } else if (fault == "sdp_without_parameter_sets") {
    f.sdp_without_parameter_sets = on;
  } else if (fault == "sdp_parameter_sets") {
    if (on) throw std::invalid_argument("sdp_parameter_sets: give the parameter sets (or 0 to switch off)");
    f.sdp_custom_parameter_sets = false;
    f.sdp_parameter_sets.clear();
  } else if (fault == "slow_responses") {
    f.slow_ms = static_cast<std::int64_t>(amount(500, 600'000));
  } else if (fault == "partial_responses") {
    f.partial_ms = static_cast<std::int64_t>(amount(20, 600'000));
  } else if (fault == "slowloris") {
    f.slowloris_ms = static_cast<std::int64_t>(amount(100, 600'000));
  } else if (fault == "rtcp_before_play") {
    f.rtcp_before_play = on;
  } else if (fault == "bogus_rtp_info") {
    f.bogus_rtp_info = on;
  } else if (fault == "bogus_transport_ssrc") {
    f.bogus_transport_ssrc = on;
  } else if (fault == "annexb_in_payload") {
    f.annexb_in_payload = on;
  } else if (fault == "marker_on_sei") {
    f.marker_on_sei = on;
  } else if (fault == "ignore_keepalives") {
    f.ignore_keepalives = on;
  } else if (fault == "live555_tool") {
    f.live555_stale_s = amount(65, 86400);
  } else if (fault == "oversized_headers") {
    f.oversized_headers = static_cast<std::size_t>(amount(64 * 1024, 64.0 * 1024 * 1024));
  } else if (fault == "endless_response") {
    f.endless_response = on;
  } else if (fault == "huge_body") {
    f.huge_body = static_cast<std::uint64_t>(amount(100.0 * 1000 * 1000, 1e12));
  } else if (fault == "garbage_interleaved") {
    rate(f.garbage_rate);
  } else {
    throw std::invalid_argument("unknown fault '" + std::string(fault) + "'");
  }
}

void Impl::set_fault_units(std::string_view camera, std::string_view fault, std::vector<Bytes> units) {
  Camera* cam = find_camera(camera);
  if (!cam) throw std::invalid_argument("no camera '" + std::string(camera) + "'");
  if (fault != "sdp_parameter_sets")
    throw std::invalid_argument("fault '" + std::string(fault) + "' takes a number, not NAL units");
  for (const Bytes& u : units)
    if (u.empty()) throw std::invalid_argument("sdp_parameter_sets: an empty NAL unit");
  cam->faults.sdp_custom_parameter_sets = !units.empty();
  cam->faults.sdp_parameter_sets = std::move(units);
}

void Impl::clear_faults(std::string_view camera) {
  Camera* cam = find_camera(camera);
  if (!cam) throw std::invalid_argument("no camera '" + std::string(camera) + "'");
  cam->faults = Faults{};
}

CameraStats Impl::stats_of(std::string_view camera) const {
  auto it = cameras_.find(camera);
  if (it == cameras_.end()) throw std::invalid_argument("no camera '" + std::string(camera) + "'");
  const Camera& cam = *it->second;
  CameraStats st = cam.stats;
  st.clients = 0;
  for (const Stream* s : {cam.main.get(), cam.sub.get()})
    if (s)
      for (const Session* ses : s->playing)
        if (!ses->stale && (!ses->tcp || ses->conn)) ++st.clients;
  return st;
}

std::vector<CameraStats> Impl::all_stats() const {
  std::vector<CameraStats> out;
  out.reserve(cameras_.size());
  for (const auto& [name, cam] : cameras_) out.push_back(stats_of(name));
  return out;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// CameraServer

class CameraServer::Impl : public detail::Impl {
 public:
  using detail::Impl::Impl;
};

CameraServer::CameraServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->start();
}
// The thread stops before destruction begins, for the same reason start() is not in the constructor.
CameraServer::~CameraServer() {
  if (impl_) impl_->close();
}

std::uint16_t CameraServer::port() const { return impl_->port(); }
const std::string& CameraServer::host() const { return impl_->options().host; }
std::uint16_t CameraServer::udp_rtp_port() const { return impl_->udp_port(); }

std::string CameraServer::add_camera(CameraConfig config) {
  return impl_->call([&] { return impl_->add_camera(std::move(config)); });
}
bool CameraServer::remove_camera(std::string_view name) {
  return impl_->call([&] { return impl_->remove_camera(name); });
}
std::vector<std::string> CameraServer::cameras() const {
  return impl_->call([&] { return impl_->camera_names(); });
}
std::string CameraServer::url(std::string_view name, bool sub) const {
  return impl_->call([&] {
    const detail::Camera* cam = impl_->find_camera(name);
    if (!cam) throw std::invalid_argument("no camera '" + std::string(name) + "'");
    if (sub && !cam->sub) throw std::invalid_argument("camera '" + std::string(name) + "' has no sub-stream");
    return impl_->url(name, sub);
  });
}
void CameraServer::set_fault(std::string_view camera, std::string_view fault, double value) {
  impl_->call([&] { impl_->set_fault(camera, fault, value); });
}
void CameraServer::set_fault(std::string_view camera, std::string_view fault, std::vector<Bytes> units) {
  impl_->call([&] { impl_->set_fault_units(camera, fault, std::move(units)); });
}
void CameraServer::clear_faults(std::string_view camera) {
  impl_->call([&] { impl_->clear_faults(camera); });
}
CameraStats CameraServer::stats(std::string_view camera) const {
  return impl_->call([&] { return impl_->stats_of(camera); });
}
std::vector<CameraStats> CameraServer::stats() const {
  return impl_->call([&] { return impl_->all_stats(); });
}
void CameraServer::close() { impl_->close(); }
bool CameraServer::is_running() const { return impl_->running(); }

const std::vector<std::string>& CameraServer::fault_names() {
  static const std::vector<std::string> names = {
      "drop_connections", "stall", "corrupt_packets", "lose_packets", "timestamp_jump",
      "sdp_without_parameter_sets", "sdp_parameter_sets", "slow_responses", "partial_responses",
      "rtcp_before_play", "bogus_rtp_info", "bogus_transport_ssrc", "annexb_in_payload",
      "marker_on_sei", "ignore_keepalives", "live555_tool", "oversized_headers",
      "endless_response", "huge_body", "garbage_interleaved", "slowloris"};
  return names;
}

}  // namespace vms::sim
