// Resolver; see resolver.hpp.
#include "engine/resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

namespace vms::engine {

bool numeric_address(const std::string& host, std::uint16_t port, Address& out) {
  out = Address{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.addr);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void Resolver::resolve(EventLoop& loop, std::string host, std::uint16_t port, Callback done) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) {
    loop.post([done = std::move(done)] { done(false, Address{}, "the engine is stopping"); });
    return;
  }
  if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
  requests_.push_back({&loop, std::move(host), port, std::move(done)});
  wake_.notify_one();
}

void Resolver::stop() {
  std::deque<Request> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    left.swap(requests_);
  }
  wake_.notify_one();
  if (worker_.joinable()) worker_.join();
  for (auto& r : left)
    r.loop->post([done = std::move(r.done)] { done(false, Address{}, "the engine is stopping"); });
}

void Resolver::run() {
  while (true) {
    Request r;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !requests_.empty(); });
      if (stopping_) return;
      r = std::move(requests_.front());
      requests_.pop_front();
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    const int rc = ::getaddrinfo(r.host.c_str(), nullptr, &hints, &result);
    Address address;
    std::string error;
    bool ok = false;
    if (rc == 0 && result) {
      std::memcpy(&address.addr, result->ai_addr, result->ai_addrlen);
      address.len = static_cast<socklen_t>(result->ai_addrlen);
      if (address.addr.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&address.addr)->sin_port = htons(r.port);
      else
        reinterpret_cast<sockaddr_in6*>(&address.addr)->sin6_port = htons(r.port);
      ok = true;
    } else {
      error = std::string("cannot resolve host '") + r.host + "': " + ::gai_strerror(rc);
    }
    if (result) ::freeaddrinfo(result);
    r.loop->post([done = std::move(r.done), ok, address, error] { done(ok, address, error); });
  }
}

}  // namespace vms::engine
