// Live view sources and viewers; see vmscore/live.hpp.
#include "vmscore/live.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/record.hpp"
#include "vmscore/shared_bytes.hpp"

namespace vms::live {

namespace {

// One init segment and what a player needs to know about it; shared by its fragments.
struct Init {
  Bytes data;
  std::string codec;
  std::uint32_t width = 0, height = 0;
  std::uint32_t generation = 0;
};

struct Fragment {
  BytesRef data;
  std::uint64_t seq = 0;
  std::int64_t dts = 0;
  std::int64_t wall_us = 0;
  bool keyframe = false;
  std::shared_ptr<const Init> init;
};

// Copies each finished fragment into one pooled block (the only copy live view makes; steady state
// allocates nothing).
class PooledSink final : public fmp4::Sink {
 public:
  void write(std::span<const ByteSpan> parts) override {
    if (!capture) return;  // the init segment, taken from the muxer itself
    std::size_t n = 0;
    for (ByteSpan p : parts) n += p.size();
    out = BytePool::shared().acquire(n);
    std::uint8_t* dst = out->data();
    for (ByteSpan p : parts) {
      if (!p.empty()) std::memcpy(dst, p.data(), p.size());
      dst += p.size();
    }
  }
  bool capture = false;
  BytesRef out;
};

}  // namespace

struct Source;

struct Viewer {
  std::uint64_t id = 0;
  std::shared_ptr<Source> src;
  std::uint64_t cursor = 0;
  std::uint32_t sent_generation = 0;
  std::uint64_t state_seen = 0;  // the source's state version last reported
  bool in_flight = false;
  LiveViewerStats stats;
};

struct Source final : ingest::Subscriber {
  Source(LiveHubImpl& owner, std::string id) : hub(owner), stream_id(std::move(id)) {}
  void on_access_unit(const ingest::AccessUnit& au) override;
  void on_event(const ingest::StreamEvent& e) override;

  // All below under the hub's mutex.
  void start_muxing();
  void stop_muxing();
  void mux(const ingest::AccessUnit& au);
  bool add_to_muxer(const ingest::AccessUnit& au);
  std::uint64_t start_seq() const;  // where a new or skipping viewer starts
  void trim();

  LiveHubImpl& hub;
  const std::string stream_id;
  bool removed = false;
  record::Circular<ingest::AccessUnit> gop;  // the latest GOP, references only
  std::size_t gop_bytes = 0;
  std::size_t viewers = 0;
  bool muxing = false;
  std::unique_ptr<fmp4::Muxer> muxer;
  bool fresh_muxer = false;
  PooledSink sink;
  std::optional<std::int64_t> origin;
  std::shared_ptr<const Init> init;
  std::uint32_t generation = 0;
  record::Circular<Fragment> frags;
  std::size_t frag_bytes = 0;
  std::uint64_t next_seq = 0;
  std::optional<std::uint64_t> newest_key;
  std::uint64_t muxed = 0, mux_errors = 0;
  std::string state = "connecting", reason;
  std::uint64_t state_version = 1;
};

class LiveHubImpl {
 public:
  LiveHubImpl(ingest::IngestEngine& e, LiveOptions o) : engine(e), opt(o) {}

  ingest::IngestEngine& engine;
  const LiveOptions opt;
  mutable std::mutex mutex;
  std::condition_variable cv;
  std::unordered_map<std::string, std::shared_ptr<Source>> sources;
  std::unordered_map<std::uint64_t, Viewer> viewers;
  std::uint64_t next_viewer = 1;
  bool woken = false;

  bool ready(const Viewer& v) const {
    return !v.in_flight &&
           (v.cursor < v.src->next_seq || v.state_seen != v.src->state_version);
  }
  bool any_ready() const {
    for (const auto& [id, v] : viewers)
      if (ready(v)) return true;
    return false;
  }
  void notify_if_watched(const Source& s) {
    if (s.viewers > 0) cv.notify_all();
  }
  LiveChunk take(Viewer& v);
};

// -- source ---------------------------------------------------------------------------------------

void Source::on_access_unit(const ingest::AccessUnit& au) {
  if (au.kind != ingest::MediaKind::Video) return;
  std::lock_guard<std::mutex> lock(hub.mutex);
  if (removed) return;
  if (au.keyframe) {
    gop.clear();
    gop_bytes = 0;
  }
  if (!gop.empty() || au.keyframe) {
    gop.push_back(au);
    gop_bytes += au.data.span().size();
    // A GOP too long to hold is let go; viewers then start at the next keyframe.
    if (gop_bytes > hub.opt.max_source_bytes) {
      gop.clear();
      gop_bytes = 0;
    }
  }
  if (muxing) {
    mux(au);
    hub.notify_if_watched(*this);
  }
}

void Source::on_event(const ingest::StreamEvent& e) {
  using ingest::EventKind;
  const char* next = nullptr;
  switch (e.kind) {
    case EventKind::Playing: next = "playing"; break;
    case EventKind::Connecting:
    case EventKind::Reconnecting: next = "connecting"; break;
    case EventKind::Stalled:
    case EventKind::Disconnected:
    case EventKind::Error: next = "offline"; break;
    case EventKind::Removed: next = "removed"; break;
    case EventKind::ParametersChanged: break;
  }
  if (!next) return;
  std::lock_guard<std::mutex> lock(hub.mutex);
  // "connecting" after "offline" keeps the reason the camera went away in front of the operator.
  if (state == next || (state == "offline" && std::string_view(next) == "connecting")) return;
  state = next;
  reason = e.reason;
  ++state_version;
  hub.notify_if_watched(*this);
}

void Source::start_muxing() {
  muxing = true;
  for (std::size_t i = 0; i < gop.size(); ++i) mux(gop[i]);
}

void Source::stop_muxing() {
  muxing = false;
  muxer.reset();
  frags.clear();
  frag_bytes = 0;
  newest_key.reset();
  origin.reset();
  init.reset();
}

bool Source::add_to_muxer(const ingest::AccessUnit& au) {
  if (!muxer) {
    if (!au.keyframe || !au.parameter_sets || !au.parameter_sets->complete()) return false;
    fmp4::MuxerOptions mo;
    mo.input_annexb = false;
    if (!origin) origin = au.dts_90k;
    mo.origin_dts_90k = origin;
    muxer = std::make_unique<fmp4::Muxer>(*au.parameter_sets, mo, sink);
    fresh_muxer = true;
  }
  return muxer->add(au.data.span(), au.pts_90k, au.dts_90k, au.keyframe);
}

void Source::mux(const ingest::AccessUnit& au) {
  bool taken = false;
  try {
    try {
      taken = add_to_muxer(au);
    } catch (const ParametersChangedError&) {
      muxer.reset();  // a new init segment on the same timeline, from this unit on
      taken = add_to_muxer(au);
    }
    if (!taken) return;
    if (fresh_muxer) {
      // A new muxer has a new init segment: the first, or after a change of parameter sets.
      fresh_muxer = false;
      const ByteSpan is = muxer->init_segment();
      auto next = std::make_shared<Init>();
      next->data.assign(is.begin(), is.end());
      next->codec = muxer->codec_string();
      next->width = muxer->sps().width;
      next->height = muxer->sps().height;
      next->generation = ++generation;
      init = std::move(next);
    }
    sink.capture = true;
    muxer->flush();
    sink.capture = false;
  } catch (const std::exception&) {
    // A unit the muxer refuses (timestamps going back after a camera reset, a broken bitstream):
    // start again at the next keyframe on a fresh timeline; viewers get a new init segment.
    sink.capture = false;
    sink.out.reset();
    muxer.reset();
    origin.reset();
    init.reset();
    ++mux_errors;
    return;
  }
  Fragment f;
  f.data = std::move(sink.out);
  f.seq = next_seq++;
  f.dts = au.dts_90k;
  f.wall_us = au.wall_us;
  f.keyframe = au.keyframe;
  f.init = init;
  frag_bytes += f.data.span().size();
  if (f.keyframe) newest_key = f.seq;
  frags.push_back(std::move(f));
  ++muxed;
  trim();
}

void Source::trim() {
  // Oldest first, never from the newest keyframe on: a viewer can always start there.
  while (!frags.empty() && newest_key && frags.front().seq < *newest_key &&
         (frag_bytes > hub.opt.max_source_bytes ||
          frags.back().dts - frags.front().dts > hub.opt.keep_90k)) {
    frag_bytes -= frags.front().data.span().size();
    frags.pop_front();
  }
}

std::uint64_t Source::start_seq() const { return newest_key ? *newest_key : next_seq; }

// -- viewers --------------------------------------------------------------------------------------

LiveChunk LiveHubImpl::take(Viewer& v) {
  Source& s = *v.src;
  LiveChunk c;
  c.viewer = v.id;
  if (v.state_seen != s.state_version) {
    c.state = s.state;
    c.reason = s.reason;
    v.state_seen = s.state_version;
  }
  if (!s.frags.empty()) {
    const std::uint64_t first = s.frags.front().seq;
    const Fragment& newest = s.frags.back();
    bool skip = v.cursor < first;
    if (!skip && v.cursor < s.next_seq && s.newest_key && *s.newest_key > v.cursor) {
      const Fragment& at = s.frags[static_cast<std::size_t>(v.cursor - first)];
      skip = newest.dts - at.dts > opt.max_lag_90k;
    }
    if (skip) {
      const std::uint64_t to = s.start_seq();
      c.skipped = to > v.cursor ? to - v.cursor : 0;
      v.stats.skipped += c.skipped;
      ++v.stats.skips;
      v.cursor = to;
    }
    std::size_t i = static_cast<std::size_t>(v.cursor - first);
    const Init* gen = nullptr;
    while (i < s.frags.size()) {
      const Fragment& f = s.frags[i];
      if (!f.init) break;
      if (gen == nullptr) {
        gen = f.init.get();
        if (gen->generation != v.sent_generation) {
          c.init = gen->data;
          c.codec = gen->codec;
          c.width = gen->width;
          c.height = gen->height;
          v.sent_generation = gen->generation;
        }
        c.first_wall_us = f.wall_us;
      } else if (f.init.get() != gen) {
        break;  // a new init segment: the next chunk starts with it
      }
      const auto span = f.data.span();
      if (!c.media.empty() && c.media_bytes + span.size() > opt.max_chunk_bytes) break;
      c.media.push_back(f.data);
      c.media_bytes += span.size();
      c.last_wall_us = f.wall_us;
      ++c.fragments;
      ++i;
      ++v.cursor;
    }
  } else if (v.cursor < s.next_seq) {
    v.cursor = s.next_seq;  // everything was let go (the muxer restarted)
  }
  v.in_flight = true;
  ++v.stats.chunks;
  v.stats.fragments += c.fragments;
  v.stats.bytes += c.media_bytes + c.init.size();
  return c;
}

// -- hub ------------------------------------------------------------------------------------------

LiveHub::LiveHub(ingest::IngestEngine& engine, LiveOptions options)
    : impl_(std::make_unique<LiveHubImpl>(engine, options)) {
  if (options.max_lag_90k <= 0 || options.keep_90k <= 0 || options.max_source_bytes == 0 ||
      options.max_chunk_bytes == 0 || options.batch_us < 0 || options.batch_us > 1'000'000)
    throw std::invalid_argument("live options must be positive");
}

LiveHub::~LiveHub() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    for (const auto& [id, s] : impl_->sources) ids.push_back(id);
  }
  for (const auto& id : ids) remove_stream(id);
}

void LiveHub::add_stream(const std::string& stream_id) {
  auto src = std::make_shared<Source>(*impl_, stream_id);
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (impl_->sources.count(stream_id))
      throw std::invalid_argument("live view has stream '" + stream_id + "' already");
    impl_->sources.emplace(stream_id, src);
  }
  try {
    impl_->engine.subscribe(stream_id, src.get());
  } catch (...) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->sources.erase(stream_id);
    throw;
  }
}

void LiveHub::remove_stream(const std::string& stream_id) {
  std::shared_ptr<Source> src;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto it = impl_->sources.find(stream_id);
    if (it == impl_->sources.end()) return;
    src = it->second;
    impl_->sources.erase(it);
  }
  // Without the hub's mutex: unsubscribe waits for the loop thread, which may be waiting for it.
  try {
    impl_->engine.unsubscribe(stream_id, src.get());
  } catch (const std::invalid_argument&) {
    // the engine removed the stream first
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  src->removed = true;
  src->stop_muxing();
  src->gop.clear();
  src->state = "removed";
  src->reason = "the camera was removed or changed";
  ++src->state_version;
  impl_->cv.notify_all();
}

std::uint64_t LiveHub::open(const std::string& stream_id) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->sources.find(stream_id);
  if (it == impl_->sources.end())
    throw std::invalid_argument("no live stream '" + stream_id + "'");
  Source& s = *it->second;
  if (!s.muxing) s.start_muxing();
  ++s.viewers;
  Viewer v;
  v.id = impl_->next_viewer++;
  v.src = it->second;
  v.cursor = s.start_seq();
  v.stats.stream_id = stream_id;
  const std::uint64_t id = v.id;
  impl_->viewers.emplace(id, std::move(v));
  impl_->cv.notify_all();
  return id;
}

void LiveHub::close(std::uint64_t viewer) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->viewers.find(viewer);
  if (it == impl_->viewers.end()) return;
  Source& s = *it->second.src;
  impl_->viewers.erase(it);
  if (--s.viewers == 0 && s.muxing) s.stop_muxing();
}

void LiveHub::ack(std::uint64_t viewer) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->viewers.find(viewer);
  if (it == impl_->viewers.end()) return;
  it->second.in_flight = false;
  if (impl_->ready(it->second)) impl_->cv.notify_all();
}

std::size_t LiveHub::poll(std::vector<LiveChunk>& out, std::int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  const bool ready =
      impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms),
                         [&] { return impl_->woken || impl_->any_ready(); });
  if (ready && !impl_->woken && impl_->opt.batch_us > 0) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(impl_->opt.batch_us));
    lock.lock();
  }
  impl_->woken = false;
  std::size_t n = 0;
  for (auto& [id, v] : impl_->viewers) {
    if (!impl_->ready(v)) continue;
    out.push_back(impl_->take(v));
    ++n;
  }
  return n;
}

void LiveHub::wake() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->woken = true;
  impl_->cv.notify_all();
}

LiveViewerStats LiveHub::viewer_stats(std::uint64_t viewer) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->viewers.find(viewer);
  if (it == impl_->viewers.end()) throw std::invalid_argument("no such viewer");
  LiveViewerStats st = it->second.stats;
  st.waiting_for_ack = it->second.in_flight;
  return st;
}

std::vector<LiveSourceStats> LiveHub::source_stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<LiveSourceStats> out;
  for (const auto& [id, s] : impl_->sources) {
    LiveSourceStats st;
    st.stream_id = id;
    st.viewers = s->viewers;
    st.muxing = s->muxing;
    st.gop_units = s->gop.size();
    st.fragments = s->frags.size();
    st.bytes = s->frag_bytes;
    st.muxed = s->muxed;
    st.mux_errors = s->mux_errors;
    st.generation = s->generation;
    st.state = s->state;
    st.reason = s->reason;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace vms::live
