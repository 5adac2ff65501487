// IngestEngine: owns the loop threads, the sessions and the Python delivery queue. Sessions are
// spread over loops by count; commands reach a loop through EventLoop::post.
#include <algorithm>
#include <future>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "engine/loop.hpp"
#include "engine/queue.hpp"
#include "engine/resolver.hpp"
#include "engine/session.hpp"
#include "vmscore/ingest.hpp"

namespace vms::ingest {

const char* event_kind_name(EventKind k) {
  switch (k) {
    case EventKind::Connecting: return "connecting";
    case EventKind::Playing: return "playing";
    case EventKind::ParametersChanged: return "parameters_changed";
    case EventKind::Stalled: return "stalled";
    case EventKind::Disconnected: return "disconnected";
    case EventKind::Reconnecting: return "reconnecting";
    case EventKind::Removed: return "removed";
    case EventKind::Error: return "error";
  }
  return "error";
}

class Engine {
 public:
  explicit Engine(EngineOptions options)
      : options_(options), queue_(options.queue_frames, options.queue_bytes) {
    if (options_.loops < 1 || options_.loops > 64) throw std::invalid_argument("loops must be 1..64");
    if (options_.tick_ms < 1 || options_.tick_ms > 1000)
      throw std::invalid_argument("tick_ms must be 1..1000");
    if (options_.batch_us < 0 || options_.batch_us > 50000)
      throw std::invalid_argument("batch_us must be 0..50000");
    for (int i = 0; i < options_.loops; ++i) {
      loops_.push_back(std::make_unique<Loop>(clock_, options_.tick_ms, options_.batch_us));
    }
    for (auto& l : loops_) l->thread = std::thread([loop = l.get()] { loop->loop.run(); });
  }

  ~Engine() { stop(); }

  void add_stream(StreamConfig config) {
    engine::validate(config);
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) throw std::invalid_argument("the engine is stopped");
    if (sessions_.count(config.id)) throw std::invalid_argument("stream '" + config.id + "' exists");
    Loop* loop = std::min_element(loops_.begin(), loops_.end(), [](const auto& a, const auto& b) {
                   return a->count < b->count;
                 })->get();
    ++loop->count;
    auto session =
        std::make_shared<engine::Session>(loop->loop, queue_, resolver_, std::move(config));
    sessions_.emplace(session->id(), Entry{session, loop});
    loop->loop.post([session] { session->start(); });
  }

  void remove_stream(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) throw std::invalid_argument("no stream '" + id + "'");
    Entry e = it->second;
    sessions_.erase(it);
    --e.loop->count;
    // The command holds the last reference: the session dies on its loop thread after stop().
    e.loop->loop.post([s = e.session] { s->stop(); });
  }

  // Waits until the loop thread has applied the change, so after unsubscribe() returns the
  // subscriber is never called again and may be destroyed.
  void subscribe(const std::string& id, Subscriber* s, bool add) {
    std::shared_ptr<engine::Session> session;
    Loop* loop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = sessions_.find(id);
      if (it == sessions_.end()) throw std::invalid_argument("no stream '" + id + "'");
      session = it->second.session;
      loop = it->second.loop;
    }
    auto apply = [session, s, add] {
      if (add)
        session->subscribe(s);
      else
        session->unsubscribe(s);
    };
    if (loop->loop.on_loop_thread()) {
      apply();
      return;
    }
    std::promise<void> done;
    auto applied = done.get_future();
    loop->loop.post([&] {
      apply();
      done.set_value();
    });
    applied.wait();
  }

  std::size_t poll(std::vector<Delivery>& out, std::int64_t timeout_ms, std::size_t max_items) {
    return queue_.pop(out, timeout_ms, max_items);
  }
  void wake() { queue_.wake(); }

  StreamStats stats(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) throw std::invalid_argument("no stream '" + id + "'");
    return it->second.session->stats();
  }

  std::vector<std::string> stream_ids() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> ids;
    for (const auto& [id, _] : sessions_) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  void stop() {
    std::unordered_map<std::string, Entry> sessions;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
      sessions.swap(sessions_);
    }
    for (auto& [_, e] : sessions) e.loop->loop.post([s = e.session] { s->stop(); });
    sessions.clear();
    resolver_.stop();
    for (auto& l : loops_) l->loop.stop();
    for (auto& l : loops_)
      if (l->thread.joinable()) l->thread.join();
    queue_.close();
  }

 private:
  struct Loop {
    Loop(const engine::Clock& clock, int tick_ms, int batch_us) : loop(clock, tick_ms, batch_us) {}
    engine::EventLoop loop;
    std::thread thread;
    std::size_t count = 0;
  };
  struct Entry {
    std::shared_ptr<engine::Session> session;
    Loop* loop;
  };

  EngineOptions options_;
  engine::SystemClock clock_;
  engine::DeliveryQueue queue_;
  engine::Resolver resolver_;
  std::vector<std::unique_ptr<Loop>> loops_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> sessions_;
  bool stopped_ = false;
};

IngestEngine::IngestEngine(EngineOptions options) : impl_(std::make_unique<Engine>(options)) {}
IngestEngine::~IngestEngine() = default;
void IngestEngine::add_stream(StreamConfig config) { impl_->add_stream(std::move(config)); }
void IngestEngine::remove_stream(const std::string& id) { impl_->remove_stream(id); }
void IngestEngine::subscribe(const std::string& id, Subscriber* s) { impl_->subscribe(id, s, true); }
void IngestEngine::unsubscribe(const std::string& id, Subscriber* s) {
  impl_->subscribe(id, s, false);
}
std::size_t IngestEngine::poll(std::vector<Delivery>& out, std::int64_t timeout_ms,
                               std::size_t max_items) {
  return impl_->poll(out, timeout_ms, max_items);
}
void IngestEngine::wake() { impl_->wake(); }
StreamStats IngestEngine::stats(const std::string& id) const { return impl_->stats(id); }
std::vector<std::string> IngestEngine::stream_ids() const { return impl_->stream_ids(); }
void IngestEngine::stop() { impl_->stop(); }

}  // namespace vms::ingest
