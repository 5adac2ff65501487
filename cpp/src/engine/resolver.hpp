// Host name resolution off the event loops: getaddrinfo blocks, sometimes for seconds, and one slow
// DNS answer must not stall every camera on a loop. Numeric addresses (the common case for cameras)
// never come here. One worker thread resolves requests in order and posts each answer back to the
// loop that asked.
//
// Threading: resolve() from loop threads; the worker thread only calls getaddrinfo and post().
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "engine/loop.hpp"

namespace vms::engine {

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// Parses a numeric IPv4/IPv6 address; false for a host name.
bool numeric_address(const std::string& host, std::uint16_t port, Address& out);

class Resolver {
 public:
  using Callback = std::function<void(bool ok, const Address& address, const std::string& error)>;
  Resolver() = default;
  ~Resolver() { stop(); }
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The callback runs on `loop`'s thread.
  void resolve(EventLoop& loop, std::string host, std::uint16_t port, Callback done);
  // Stops the worker; pending requests are answered with an error. Call before the loops stop.
  void stop();

 private:
  struct Request {
    EventLoop* loop;
    std::string host;
    std::uint16_t port;
    Callback done;
  };
  void run();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Request> requests_;
  std::thread worker_;
  bool stopping_ = false;
};

}  // namespace vms::engine
