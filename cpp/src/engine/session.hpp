// One camera stream: an RTSP client session (OPTIONS, DESCRIBE, SETUP, PLAY, keepalive, TEARDOWN)
// with RTP over the RTSP connection or over UDP, depacketization into access units, timestamps,
// statistics, and reconnection with bounded exponential backoff. Faults become events and a
// reconnect, never exceptions that escape the loop.
//
// Threading: lives on one event loop thread; stats() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/loop.hpp"
#include "engine/queue.hpp"
#include "engine/resolver.hpp"
#include "vmscore/ingest.hpp"

namespace vms::engine {

class SessionImpl;

class Session {
 public:
  Session(EventLoop& loop, DeliveryQueue& queue, Resolver& resolver, ingest::StreamConfig config);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Loop thread.
  void start();
  void stop();  // best-effort TEARDOWN, closes everything, emits Removed
  void subscribe(ingest::Subscriber* s);
  void unsubscribe(ingest::Subscriber* s);

  // Any thread.
  ingest::StreamStats stats() const;
  const std::string& id() const;

 private:
  std::unique_ptr<SessionImpl> impl_;
};

// Checks a stream configuration before a session is created (URL syntax, timeouts), so add_stream
// fails in the caller's thread with a clear message.
void validate(const ingest::StreamConfig& config);

}  // namespace vms::engine
