// Event loop; see loop.hpp.
#include "engine/loop.hpp"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "vmscore/error.hpp"

namespace vms::engine {
namespace {

std::uint64_t this_thread_key() {
  return std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1;
}

[[noreturn]] void fail(const char* what) {
  const int err = errno;
  throw IoError(std::string(what) + ": " + std::strerror(err), err);
}

}  // namespace

std::int64_t SystemClock::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t SystemClock::wall_us() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

EventLoop::EventLoop(const Clock& clock, int tick_ms, int batch_us)
    : clock_(clock), tick_ms_(tick_ms), batch_us_(batch_us) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) fail("epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int err = errno;
    ::close(epoll_fd_);
    errno = err;
    fail("eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake fd is the one registration without a Watch
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) fail("epoll_ctl");
}

EventLoop::~EventLoop() {
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

bool EventLoop::on_loop_thread() const { return thread_id_.load() == this_thread_key(); }

void EventLoop::stop() {
  stopping_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void EventLoop::post(std::function<void()> command) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_.push_back(std::move(command));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void EventLoop::watch(int fd, std::uint32_t events, Handler* handler) {
  if (fd < 0) throw IoError("watch: bad file descriptor", EBADF);
  const auto slot = static_cast<std::size_t>(fd);
  if (watches_.size() <= slot) watches_.resize(slot + 1);
  if (watches_[slot]) graveyard_.push_back(std::move(watches_[slot]));
  watches_[slot] = std::make_unique<Watch>(Watch{fd, handler});
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = watches_[slot].get();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    watches_[slot].reset();
    fail("epoll_ctl add");
  }
}

void EventLoop::modify(int fd, std::uint32_t events, Handler* handler) {
  const auto slot = static_cast<std::size_t>(fd);
  if (slot >= watches_.size() || !watches_[slot]) throw IoError("modify: fd not watched", EBADF);
  watches_[slot]->handler = handler;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = watches_[slot].get();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) fail("epoll_ctl mod");
}

void EventLoop::unwatch(int fd) {
  const auto slot = static_cast<std::size_t>(fd);
  if (slot >= watches_.size() || !watches_[slot]) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  watches_[slot]->handler = nullptr;
  graveyard_.push_back(std::move(watches_[slot]));
}

void EventLoop::add_ticker(Ticker* t) {
  tickers_.push_back(t);
  tickers_changed_ = true;
}

void EventLoop::remove_ticker(Ticker* t) {
  // Nulled, not erased: tick() may be iterating. Compacted at the next tick.
  for (auto& p : tickers_)
    if (p == t) p = nullptr;
  tickers_changed_ = true;
}

void EventLoop::drain_commands() {
  std::uint64_t counter;
  [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &counter, sizeof counter);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.swap(commands_);
  }
  for (auto& c : running_) c();
  running_.clear();
}

void EventLoop::tick() {
  if (tickers_changed_) {
    tickers_.erase(std::remove(tickers_.begin(), tickers_.end(), nullptr), tickers_.end());
    tickers_changed_ = false;
  }
  const std::int64_t now = clock_.now_ns();
  // Index loop: a ticker may add tickers (appended) or remove them (nulled) while we iterate.
  for (std::size_t i = 0; i < tickers_.size(); ++i)
    if (tickers_[i]) tickers_[i]->on_tick(now);
}

void EventLoop::run() {
  thread_id_.store(this_thread_key());
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  next_tick_ns_ = clock_.now_ns();
  while (!stopping_.load()) {
    const std::int64_t now = clock_.now_ns();
    if (now >= next_tick_ns_) {
      tick();
      next_tick_ns_ = now + std::int64_t(tick_ms_) * 1'000'000;
    }
    const auto wait_ms = static_cast<int>(std::max<std::int64_t>(0, (next_tick_ns_ - now + 999'999) / 1'000'000));
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    bool commands = false;
    for (int i = 0; i < n; ++i) {
      auto* w = static_cast<Watch*>(events[i].data.ptr);
      if (!w) {
        drain_commands();
        commands = true;
        continue;
      }
      if (w->handler) w->handler->on_io(w->fd, events[i].events);
    }
    graveyard_.clear();
    // A light wake-up (a few sockets with a packet or two each) is followed by a short pause, so
    // the next one finds more data per socket. A saturated loop never pauses, nor does one that
    // was woken by a command (stop, add, remove should be prompt).
    if (batch_us_ > 0 && n > 0 && n < kMaxEvents / 4 && !commands && !stopping_.load()) {
      const timespec pause{0, static_cast<long>(batch_us_) * 1000};
      ::nanosleep(&pause, nullptr);
    }
  }
  // Commands posted during shutdown still run (they release resources).
  drain_commands();
  graveyard_.clear();
}

}  // namespace vms::engine
