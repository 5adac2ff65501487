// One event loop thread: epoll for socket readiness, an eventfd for commands from other threads,
// and a periodic tick that drives every timeout (keepalive, stall, reconnect backoff, response
// deadlines). A tick scan over all sessions costs O(sessions) every tick_ms, which for hundreds of
// cameras is far cheaper than re-arming a timer on every packet.
//
// Threading: everything but post() and stop() runs on the loop thread.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace vms::engine {

// Monotonic time in nanoseconds; injectable so tests can control time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ns() const = 0;
  virtual std::int64_t wall_us() const = 0;  // UTC microseconds
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ns() const override;
  std::int64_t wall_us() const override;
};

class EventLoop {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void on_io(int fd, std::uint32_t events) = 0;
  };
  class Ticker {
   public:
    virtual ~Ticker() = default;
    virtual void on_tick(std::int64_t now_ns) = 0;
  };

  // batch_us: after a wake-up that found little to do, wait this long before the next epoll_wait,
  // so that each wake-up handles many sockets with more data each (fewer context switches and
  // system calls per packet: engine.md §6.3). Adds at most that much latency; 0 disables it.
  EventLoop(const Clock& clock, int tick_ms, int batch_us = 0);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs until stop(); call on the loop thread.
  void run();
  // Thread-safe.
  void stop();
  void post(std::function<void()> command);

  void watch(int fd, std::uint32_t events, Handler* handler);
  void modify(int fd, std::uint32_t events, Handler* handler);
  void unwatch(int fd);
  void add_ticker(Ticker* t);
  void remove_ticker(Ticker* t);

  const Clock& clock() const { return clock_; }
  std::int64_t now_ns() const { return clock_.now_ns(); }
  bool on_loop_thread() const;

 private:
  struct Watch {
    int fd;
    Handler* handler;  // null once unwatched
  };
  void drain_commands();
  void tick();

  const Clock& clock_;
  int tick_ms_;
  int batch_us_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<std::function<void()>> commands_;
  std::vector<std::function<void()>> running_;
  std::vector<std::unique_ptr<Watch>> watches_;  // indexed by fd
  // Unwatched registrations live until the current epoll batch is done: later events of the same
  // batch may still point at them.
  std::vector<std::unique_ptr<Watch>> graveyard_;
  std::vector<Ticker*> tickers_;
  bool tickers_changed_ = false;
  std::int64_t next_tick_ns_ = 0;
  std::atomic<std::uint64_t> thread_id_{0};
};

}  // namespace vms::engine
