// The Recorder: rings fed by the ingest loop, segment files written by one thread per storage
// location; see vmscore/record.hpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <limits>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

#include "vmscore/error.hpp"
#include "vmscore/fd_sink.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/fmp4_reader.hpp"
#include "vmscore/record.hpp"

namespace vms::record {
namespace {

using ingest::AccessUnit;

std::int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t mono_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string errno_text(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// fsync of a directory, so that a file created (or removed) in it survives a power cut.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw IoError(errno_text("cannot open directory " + dir, errno), errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(errno_text("fsync of directory " + dir + " failed", err), err);
}

// mkdir that fsyncs the parent when it created the directory.
void make_directory(const std::string& parent, const std::string& name) {
  const std::string path = parent + "/" + name;
  if (::mkdir(path.c_str(), 0755) == 0) {
    sync_directory(parent);
  } else if (errno != EEXIST) {
    throw IoError(errno_text("cannot create directory " + path, errno), errno);
  }
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

struct Window {
  std::int64_t start_us;  // event start - pre-roll
  std::int64_t end_us;    // event end + post-roll
  std::optional<std::uint64_t> start_seq;  // resolved against the ring by the writer
};

// Caps a writer's rate: after each write, sleeps until the bytes written fit the budget.
struct Pacer {
  std::uint64_t rate = 0;  // bytes per second, 0: unlimited
  std::int64_t start_us = 0;
  std::uint64_t bytes = 0;
  void wrote(std::uint64_t n) {
    if (rate == 0) return;
    const std::int64_t now = mono_now_us();
    if (start_us == 0 || now - start_us > 10'000'000) {  // a fresh window now and then
      start_us = now;
      bytes = 0;
    }
    bytes += n;
    const auto due = start_us + static_cast<std::int64_t>(bytes * 1'000'000 / rate);
    if (due > now) std::this_thread::sleep_for(std::chrono::microseconds(due - now));
  }
};

// Writes the init segment and the metadata box together (one writev), then fragments; counts what
// reached the file so that a failed write can be trimmed back to the last whole fragment.
class SegmentSink final : public fmp4::Sink {
 public:
  SegmentSink(int fd, std::function<Bytes()> info, std::atomic<std::uint64_t>& calls, Pacer& pacer)
      : fd_(fd), info_(std::move(info)), calls_(calls), pacer_(pacer) {}
  void write(std::span<const ByteSpan> parts) override {
    std::uint64_t total = 0;
    for (ByteSpan p : parts) total += p.size();
    if (position_ == 0) {
      // The first piece is the init segment: the metadata box follows it.
      info_box_ = info_();
      scratch_.assign(parts.begin(), parts.end());
      scratch_.push_back(info_box_);
      write_all(fd_, scratch_);
      total += info_box_.size();
    } else {
      write_all(fd_, parts);
    }
    position_ += total;
    calls_.fetch_add(1, std::memory_order_relaxed);
    pacer_.wrote(total);
  }
  std::uint64_t position() const { return position_; }
  std::uint64_t info_size() const { return info_box_.size(); }

 private:
  int fd_;
  std::function<Bytes()> info_;
  Bytes info_box_;
  std::vector<ByteSpan> scratch_;
  std::uint64_t position_ = 0;
  std::atomic<std::uint64_t>& calls_;
  Pacer& pacer_;
};

struct Storage;

struct OpenSegment {
  int fd = -1;
  std::string dir;       // absolute directory
  std::string relpath;   // camera/day/name.mp4
  std::unique_ptr<SegmentSink> sink;
  std::unique_ptr<fmp4::Muxer> muxer;
  Segment info;
  // Rotation and gaps are judged on the stream's media timeline, which never steps back when
  // the wall clock does.
  std::int64_t rotate_at_90k = 0;
  std::int64_t last_dts_90k = 0;
  std::int64_t last_wall_us = 0;
  std::int64_t last_sync_us = 0;  // monotonic
  bool unsynced = false;
  std::uint64_t fragments_seen = 0;
  std::uint64_t last_seq = 0;
  std::uint64_t first_seq = 0;
};

}  // namespace

struct StreamRec final : public ingest::Subscriber,
                         public std::enable_shared_from_this<StreamRec> {
  StreamRec(StreamSettings s, MemoryBudget* budget, ingest::IngestEngine* e)
      : settings(std::move(s)), ring(settings.ring, budget), engine(e) {}

  // --- loop thread -----------------------------------------------------------------------------
  void on_access_unit(const AccessUnit& au) override;
  void on_event(const ingest::StreamEvent& ev) override;

  StreamSettings settings;
  Ring ring;
  ingest::IngestEngine* engine;
  Storage* storage = nullptr;
  std::atomic<bool> queued{false};
  std::atomic<bool> disconnected{false};
  std::atomic<std::uint64_t> write_calls{0};
  std::int64_t last_nudge_wall_us = 0;  // loop thread only

  // --- writer thread ---------------------------------------------------------------------------
  std::uint64_t next_seq = 0;
  // Event mode: the footage before this instant was recorded by an event that ended.
  std::int64_t covered_until_wall_us = std::numeric_limits<std::int64_t>::min();
  std::optional<OpenSegment> seg;
  Circular<AccessUnit> held;    // units the muxer still references
  std::vector<AccessUnit> batch;
  std::int64_t consumed_wall_us = 0;  // wall time of the last unit handled
  std::int64_t gap_since_us = 0;  // recording wanted but impossible since (0: no gap open)
  std::string gap_reason;
  // End of the stream's last finished segment (writer thread). The next one starts no earlier:
  // a wall clock still converging after a connect (slewing back toward the camera's real time)
  // would otherwise make consecutive segments overlap.
  std::int64_t last_segment_end_wall_us = std::numeric_limits<std::int64_t>::min();
  std::int64_t rotate_offset_us = 0;

  // --- shared (mutex) ----------------------------------------------------------------------------
  mutable std::mutex mutex;
  std::vector<Window> windows;
  StreamRecordStats counters;  // copied out by stats()
};

namespace {

struct Storage {
  std::string name, root;
  RecorderImpl* owner = nullptr;
  std::thread thread;
  std::mutex mutex;
  std::condition_variable cv;
  // Streams nudged since the writer last looked. Weak: a queued stream may be removed, and freed by
  // whoever dropped the last reference (remove_stream(), a record_event() still holding it).
  std::vector<std::weak_ptr<StreamRec>> dirty;
  std::vector<std::function<void()>> commands;
  bool stopping = false;
  // writer thread only
  std::vector<std::shared_ptr<StreamRec>> streams;
  bool failing = false;
  std::int64_t retry_at_us = 0;  // monotonic
  Pacer pacer;
  // counters (under mutex)
  StorageStats stats;
};

}  // namespace

class RecorderImpl {
 public:
  explicit RecorderImpl(RecorderOptions o) : options_(o), budget_(o.memory_cap) {
    if (o.flush_interval_us < 40'000 || o.flush_interval_us > 600'000'000)
      throw std::invalid_argument("flush interval must be 0.04..600 s");
    if (o.sync_interval_us < 0) throw std::invalid_argument("sync interval must not be negative");
    if (o.retry_us < 10'000) throw std::invalid_argument("retry interval must be at least 10 ms");
    if (o.camera_gap_us < 100'000) throw std::invalid_argument("camera gap must be at least 0.1 s");
  }
  ~RecorderImpl() { stop(); }

  void add_storage(const std::string& name, const std::string& path, std::uint64_t max_rate) {
    if (name.empty()) throw std::invalid_argument("storage name must not be empty");
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw std::invalid_argument("storage path '" + path + "' is not a directory");
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) throw std::invalid_argument("the recorder is stopped");
    if (storages_.count(name)) throw std::invalid_argument("storage '" + name + "' exists");
    auto st_ptr = std::make_unique<Storage>();
    Storage* s = st_ptr.get();
    s->name = name;
    s->root = path;
    s->owner = this;
    s->stats.name = name;
    s->stats.path = path;
    s->pacer.rate = max_rate;
    storages_.emplace(name, std::move(st_ptr));
    s->thread = std::thread([this, s] { writer_main(*s); });
  }

  void add_stream(ingest::IngestEngine& engine, StreamSettings settings) {
    // Adding, removing and stopping are serialised, so a stream cannot be subscribed to the
    // engine after stop() has unsubscribed everything.
    std::lock_guard<std::mutex> life(lifecycle_);
    if (settings.stream_id.empty() || settings.camera.empty())
      throw std::invalid_argument("stream id and camera must not be empty");
    for (const std::string* part : {&settings.camera, &settings.role})
      if (part->find('/') != std::string::npos || *part == "." || *part == ".." || part->empty())
        throw std::invalid_argument("camera and role must be plain names, not '" + *part + "'");
    if (settings.segment_us < 1'000'000) throw std::invalid_argument("segments must be at least 1 s");
    if (settings.pre_roll_us < 0 || settings.post_roll_us < 0)
      throw std::invalid_argument("pre- and post-roll must not be negative");
    // The ring must reach back over the pre-roll plus a GOP or two.
    settings.ring.keep_us = std::max(settings.ring.keep_us, settings.pre_roll_us + 2'000'000);
    std::shared_ptr<StreamRec> rec;
    Storage* storage;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) throw std::invalid_argument("the recorder is stopped");
      auto it = storages_.find(settings.storage);
      if (it == storages_.end())
        throw std::invalid_argument("no storage '" + settings.storage + "'");
      if (streams_.count(settings.stream_id))
        throw std::invalid_argument("stream '" + settings.stream_id + "' is already recorded");
      storage = it->second.get();
      rec = std::make_shared<StreamRec>(settings, &budget_, &engine);
      rec->storage = storage;
      // Rotation instants staggered across streams by a hash of the stream id.
      rec->rotate_offset_us = static_cast<std::int64_t>(
          std::hash<std::string>{}(settings.stream_id) % static_cast<std::uint64_t>(settings.segment_us));
      rec->counters.rotation_offset_us = rec->rotate_offset_us;
      rec->counters.stream_id = settings.stream_id;
      rec->counters.camera = settings.camera;
      rec->counters.role = settings.role;
      rec->counters.storage = settings.storage;
      streams_.emplace(settings.stream_id, rec);
    }
    run_on_writer(*storage, [storage, rec] { storage->streams.push_back(rec); });
    try {
      engine.subscribe(settings.stream_id, rec.get());
    } catch (...) {
      forget(settings.stream_id, rec, *storage, false);
      throw;
    }
  }

  void remove_stream(const std::string& id) {
    std::lock_guard<std::mutex> life(lifecycle_);
    std::shared_ptr<StreamRec> rec;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = streams_.find(id);
      if (it == streams_.end()) throw std::invalid_argument("no recorded stream '" + id + "'");
      rec = it->second;
    }
    forget(id, rec, *rec->storage, true);
  }

  void record_event(const std::string& id, std::int64_t start, std::int64_t end) {
    if (end < start) throw std::invalid_argument("an event must not end before it starts");
    auto rec = find(id);
    {
      std::lock_guard<std::mutex> lock(rec->mutex);
      Window w{start - rec->settings.pre_roll_us, end + rec->settings.post_roll_us, std::nullopt};
      bool merged = false;
      for (Window& x : rec->windows) {
        if (w.start_us > x.end_us || x.start_us > w.end_us) continue;
        if (!x.start_seq) {
          x.start_us = std::min(x.start_us, w.start_us);
          x.end_us = std::max(x.end_us, w.end_us);
          merged = true;
        } else if (w.end_us > x.end_us) {
          // x is being (or was) recorded: what is new is its tail, a window of its own that
          // continues x's segment if still open, or starts at the keyframe before it if not.
          w.start_us = x.end_us;
        } else {
          merged = true;  // nothing new
        }
        break;
      }
      if (!merged) rec->windows.push_back(w);
    }
    nudge(*rec);
  }

  std::vector<AccessUnit> units_from(const std::string& id, std::int64_t wall_us) const {
    auto rec = find(id);
    const auto seq = wall_us == 0 ? rec->ring.latest_keyframe() : rec->ring.keyframe_at_or_before(wall_us);
    std::vector<AccessUnit> out;
    if (seq) rec->ring.copy_from(*seq, out, SIZE_MAX);
    return out;
  }

  std::size_t poll(std::vector<Completion>& out, std::int64_t timeout_ms, std::size_t max_items) {
    std::unique_lock<std::mutex> lock(done_mutex_);
    done_cv_.wait_for(lock, std::chrono::milliseconds(std::max<std::int64_t>(0, timeout_ms)),
                      [&] { return !done_.empty(); });
    std::size_t n = 0;
    while (!done_.empty() && n < max_items) {
      out.push_back(std::move(done_.front()));
      done_.pop_front();
      ++n;
    }
    return n;
  }

  StreamRecordStats stats(const std::string& id) const {
    auto rec = find(id);
    StreamRecordStats s;
    {
      std::lock_guard<std::mutex> lock(rec->mutex);
      s = rec->counters;
    }
    s.ring = rec->ring.stats();
    s.write_calls = rec->write_calls.load();
    return s;
  }

  std::vector<StorageStats> storage_stats() const {
    std::vector<StorageStats> out;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [_, s] : storages_) {
      std::lock_guard<std::mutex> slock(s->mutex);
      out.push_back(s->stats);
    }
    return out;
  }

  std::size_t memory_used() const { return budget_.used(); }

  void stop() {
    std::lock_guard<std::mutex> life(lifecycle_);
    std::vector<std::pair<std::string, std::shared_ptr<StreamRec>>> streams;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
      streams.assign(streams_.begin(), streams_.end());
    }
    for (auto& [id, rec] : streams) unsubscribe(*rec);
    for (auto& [_, s] : storages_) {
      {
        std::lock_guard<std::mutex> lock(s->mutex);
        s->stopping = true;
      }
      s->cv.notify_all();
    }
    for (auto& [_, s] : storages_)
      if (s->thread.joinable()) s->thread.join();
    std::lock_guard<std::mutex> lock(mutex_);
    streams_.clear();
  }

  void nudge(StreamRec& rec) {
    if (rec.queued.exchange(true)) return;
    Storage& s = *rec.storage;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.dirty.push_back(rec.weak_from_this());
    }
    s.cv.notify_one();
  }

  const RecorderOptions& options() const { return options_; }

 private:
  std::shared_ptr<StreamRec> find(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = streams_.find(id);
    if (it == streams_.end()) throw std::invalid_argument("no recorded stream '" + id + "'");
    return it->second;
  }

  static void unsubscribe(StreamRec& rec) {
    try {
      rec.engine->unsubscribe(rec.settings.stream_id, &rec);
    } catch (const std::invalid_argument&) {
      // The engine already dropped the stream (removed or stopped): nothing calls us any more.
    }
  }

  // Unsubscribes, then has the writer close the stream's segment and drop it.
  void forget(const std::string& id, const std::shared_ptr<StreamRec>& rec, Storage& storage,
              bool subscribed) {
    if (subscribed) unsubscribe(*rec);
    run_on_writer(storage, [this, &storage, rec] {
      process(storage, *rec);
      finish(storage, *rec, "stopped");
      auto& v = storage.streams;
      v.erase(std::remove(v.begin(), v.end(), rec), v.end());
    });
    std::lock_guard<std::mutex> lock(mutex_);
    streams_.erase(id);
  }

  // Runs `fn` on the storage's writer thread and waits for it.
  void run_on_writer(Storage& s, std::function<void()> fn) {
    std::promise<void> done;
    auto finished = done.get_future();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (s.stopping) return;
      s.commands.push_back([&] {
        fn();
        done.set_value();
      });
    }
    s.cv.notify_one();
    finished.wait();
  }

  void emit(Completion c) {
    {
      std::lock_guard<std::mutex> lock(done_mutex_);
      // Completions are few (one per segment, a few per fault); the cap only guards against a
      // caller that never polls.
      if (done_.size() >= kMaxCompletions) done_.pop_front();
      done_.push_back(std::move(c));
    }
    done_cv_.notify_all();
  }

  void event(const StreamRec& rec, const std::string& kind, std::int64_t start, std::int64_t end,
             const std::string& reason) {
    RecorderEvent ev;
    ev.kind = kind;
    ev.camera = rec.settings.camera;
    ev.role = rec.settings.role;
    ev.stream_id = rec.settings.stream_id;
    ev.storage = rec.settings.storage;
    ev.start_wall_us = start;
    ev.end_wall_us = end;
    ev.reason = reason;
    emit(std::move(ev));
  }

  // ---------------------------------------------------------------------------------------------
  // Writer thread

  void writer_main(Storage& s) {
    std::vector<std::weak_ptr<StreamRec>> dirty;
    std::vector<std::function<void()>> commands;
    std::int64_t next_sweep = 0;
    for (;;) {
      bool stopping;
      {
        std::unique_lock<std::mutex> lock(s.mutex);
        s.cv.wait_for(lock, std::chrono::milliseconds(kSweepMs),
                      [&] { return !s.dirty.empty() || !s.commands.empty() || s.stopping; });
        dirty.swap(s.dirty);
        commands.swap(s.commands);
        stopping = s.stopping;
      }
      for (auto& c : commands) c();
      commands.clear();
      for (const auto& weak : dirty) {
        const std::shared_ptr<StreamRec> rec = weak.lock();
        if (!rec) continue;
        rec->queued.store(false);
        // A stream removed by a command is no longer this writer's, even while a caller holds it.
        if (std::find(s.streams.begin(), s.streams.end(), rec) != s.streams.end()) process(s, *rec);
      }
      dirty.clear();
      const std::int64_t now = mono_now_us();
      if (now >= next_sweep || stopping) {
        // Time-driven work: syncs, event ends, disconnections, data below the nudge threshold.
        for (auto& rec : s.streams) process(s, *rec);
        next_sweep = now + kSweepMs * 1000;
      }
      if (stopping) {
        for (auto& rec : s.streams) finish(s, *rec, "stopped");
        s.streams.clear();
        // No command can be left: run_on_writer() refuses new ones once stopping is set, and
        // those queued before were taken with the same lock as the flag.
        return;
      }
    }
  }

  bool active(StreamRec& rec, std::uint64_t seq, const AccessUnit& au) {
    if (rec.settings.mode == Mode::Continuous) return true;
    std::lock_guard<std::mutex> lock(rec.mutex);
    for (Window& w : rec.windows) {
      // A window reached while a segment is open continues that segment.
      if (!w.start_seq && rec.seg && w.start_us <= au.wall_us) w.start_seq = rec.seg->first_seq;
      if (w.start_seq && seq >= *w.start_seq && au.wall_us < w.end_us) return true;
    }
    return false;
  }

  // Event windows, while no segment is open: resolve each start against the ring (the keyframe
  // at or before start - pre-roll) and rewind to it. An event recording ends at a keyframe (the
  // one after end + post-roll), so a window reaching back into footage an earlier event recorded
  // starts at that keyframe: no frame twice, none lost in between.
  void resolve_windows(StreamRec& rec) {
    if (rec.settings.mode != Mode::Event || rec.seg) return;
    const RingStats rs = rec.ring.stats();
    std::vector<std::pair<std::int64_t, std::int64_t>> short_preroll;
    {
      std::lock_guard<std::mutex> lock(rec.mutex);
      for (Window& w : rec.windows) {
        if (w.start_seq || rs.units == 0) continue;
        const std::int64_t from = std::max(w.start_us, rec.covered_until_wall_us);
        if (from >= w.end_us) continue;              // already recorded; dropped below
        if (rs.last_wall_us < from) continue;        // starts in the future: resolve later
        std::optional<std::uint64_t> kf = rec.ring.keyframe_at_or_before(from);
        if (kf && rec.covered_until_wall_us > std::numeric_limits<std::int64_t>::min()) {
          // Only when the camera stopped within the earlier recording can the keyframe before
          // `from` lie inside it: start after it instead.
          std::vector<AccessUnit> probe;
          rec.ring.copy_from(*kf, probe, 1);
          if (!probe.empty() && probe.front().wall_us < rec.covered_until_wall_us) {
            kf = rec.ring.keyframe_at_or_after(rec.covered_until_wall_us);
            if (!kf) continue;  // resolve when that keyframe arrives
          }
        }
        const std::uint64_t seq = kf.value_or(rs.first_seq);
        if (rs.first_wall_us > from) short_preroll.emplace_back(from, rs.first_wall_us);
        w.start_seq = seq;
        rec.next_seq = std::min(rec.next_seq, seq);
      }
    }
    for (auto [want, have] : short_preroll)
      event(rec, "preroll_short", want, have,
            "the ring held footage only from " + std::to_string((have - want) / 1000) +
                " ms after the requested pre-roll start");
  }

  void process(Storage& s, StreamRec& rec) {
    resolve_windows(rec);
    constexpr std::size_t kBatch = 256;
    for (;;) {
      rec.batch.clear();
      const std::uint64_t first = rec.ring.copy_from(rec.next_seq, rec.batch, kBatch);
      if (first > rec.next_seq && rec.seg) {
        // The ring dropped units the writer had not written: the disk is too slow.
        const std::int64_t from = rec.seg->last_wall_us;
        finish(s, rec, "ring_overflow");
        const std::int64_t to = rec.batch.empty() ? from : rec.batch.front().wall_us;
        note_gap(rec, from, to,
                 "storage too slow: " + std::to_string(first - rec.next_seq) +
                     " frames dropped from the ring before they were written");
      }
      rec.next_seq = first;
      for (const AccessUnit& au : rec.batch) {
        rec.consumed_wall_us = au.wall_us;
        handle(s, rec, rec.next_seq++, au);
      }
      if (rec.batch.size() < kBatch) break;
    }
    rec.batch.clear();
    if (rec.disconnected.exchange(false) && rec.seg) {
      const std::int64_t last = rec.seg->last_wall_us;
      finish(s, rec, "camera_disconnected");
      rec.covered_until_wall_us = std::max(rec.covered_until_wall_us, last + 1);
      if (rec.settings.mode == Mode::Continuous && !rec.gap_since_us) {
        // Reported as a gap when the camera is back and recording resumes.
        rec.gap_since_us = last;
        rec.gap_reason = "camera disconnected";
      }
    }
    if (rec.seg && rec.settings.mode == Mode::Event && !event_running(rec)) {
      const std::int64_t last = rec.seg->last_wall_us;
      finish(s, rec, "event_end");
      rec.covered_until_wall_us = std::max(rec.covered_until_wall_us, last + 1);
    }
    drop_finished_windows(rec);
    if (rec.seg && rec.seg->unsynced && options_.sync_interval_us >= 0 &&
        mono_now_us() - rec.seg->last_sync_us >= options_.sync_interval_us) {
      if (::fdatasync(rec.seg->fd) != 0) {
        abandon(s, rec, errno_text("fdatasync failed", errno), errno);
      } else {
        rec.seg->unsynced = false;
        rec.seg->last_sync_us = mono_now_us();
        std::lock_guard<std::mutex> lock(s.mutex);
        ++s.stats.syncs;
      }
    }
  }

  // Event mode, with no new units: the segment stays open while an event window may still
  // bring frames (a camera that stopped sending ends it once the window is over in wall time).
  bool event_running(StreamRec& rec) {
    const std::int64_t now = wall_now_us();
    std::lock_guard<std::mutex> lock(rec.mutex);
    for (const Window& w : rec.windows)
      if (w.start_seq && now < w.end_us + options_.camera_gap_us) return true;
    return false;
  }

  void drop_finished_windows(StreamRec& rec) {
    if (rec.seg) return;
    std::lock_guard<std::mutex> lock(rec.mutex);
    std::erase_if(rec.windows, [&](const Window& w) {
      return w.end_us <= rec.covered_until_wall_us ||
             (w.start_seq && rec.next_seq > *w.start_seq && rec.consumed_wall_us >= w.end_us);
    });
  }

  void note_gap(StreamRec& rec, std::int64_t from, std::int64_t to, const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(rec.mutex);
      ++rec.counters.gaps;
    }
    event(rec, "gap", from, to, why);
  }

  void handle(Storage& s, StreamRec& rec, std::uint64_t seq, const AccessUnit& au) {
    bool want = active(rec, seq, au);
    if (rec.seg && !want) {
      if (au.keyframe) {
        // An event recording ends at a keyframe, so the next one can start exactly here.
        finish(s, rec, "event_end");
        rec.covered_until_wall_us = au.wall_us;  // recorded up to (not including) this unit
      } else {
        want = true;  // complete the GOP
      }
    }
    if (!want) return;
    if (rec.seg && (au.wall_us - rec.seg->last_wall_us > options_.camera_gap_us ||
                    au.dts_90k - rec.seg->last_dts_90k > options_.camera_gap_us * 9 / 100)) {
      const std::int64_t from = rec.seg->last_wall_us;
      finish(s, rec, "camera_gap");
      note_gap(rec, from, au.wall_us, "no video from the camera for " +
                                          std::to_string((au.wall_us - from) / 1000) + " ms");
    } else if (rec.seg && au.gap) {
      note_gap(rec, rec.seg->last_wall_us, au.wall_us,
               "the camera's stream lost " + std::to_string(au.lost_packets) + " packets (" +
                   std::to_string(au.dropped_frames) + " frames)");
    }
    if (rec.seg && au.keyframe && au.dts_90k >= rec.seg->rotate_at_90k) finish(s, rec, "rotated");
    if (!rec.seg) {
      if (!au.keyframe) return;  // a segment starts at a keyframe
      if (s.failing && mono_now_us() < s.retry_at_us) {
        if (!rec.gap_since_us) rec.gap_since_us = au.wall_us;
        return;
      }
      if (!open(s, rec, seq, au)) return;
    }
    add(s, rec, seq, au);
  }

  void add(Storage& s, StreamRec& rec, std::uint64_t seq, const AccessUnit& au) {
    OpenSegment& g = *rec.seg;
    try {
      g.muxer->add(au.data.span(), au.pts_90k, au.dts_90k, au.keyframe);
    } catch (const ParametersChangedError&) {
      finish(s, rec, "parameters_changed");
      if (au.keyframe && open(s, rec, seq, au)) add(s, rec, seq, au);
      return;
    } catch (const IoError& e) {
      abandon(s, rec, e.what(), e.errno_value());
      return;
    } catch (const std::exception& e) {
      // Timestamps going backwards, a unit without a slice: start over at the next keyframe.
      finish(s, rec, "bad_unit");
      event(rec, "segment_error", au.wall_us, au.wall_us, e.what());
      return;
    }
    rec.held.push_back(au);
    g.last_wall_us = au.wall_us;
    g.last_dts_90k = au.dts_90k;
    g.last_seq = seq;
    g.unsynced = true;
    track_fragments(s, rec);
  }

  void track_fragments(Storage& s, StreamRec& rec) {
    OpenSegment& g = *rec.seg;
    while (rec.held.size() > static_cast<std::size_t>(g.muxer->pending_samples())) rec.held.pop_front();
    const auto& ms = g.muxer->stats();
    if (ms.fragments == g.fragments_seen) return;
    g.fragments_seen = ms.fragments;
    const fmp4::FragmentInfo& f = g.muxer->last_fragment();
    g.info.fragments.push_back(f);
    g.info.fragments.back().offset += g.sink->info_size();  // the metadata box precedes it
    g.info.frames += f.samples;
    std::lock_guard<std::mutex> lock(rec.mutex);
    rec.counters.frames_written += f.samples;
    rec.counters.bytes_written += f.size;
    std::lock_guard<std::mutex> slock(s.mutex);
    ++s.stats.write_calls;
    s.stats.bytes_written += f.size;
  }

  bool open(Storage& s, StreamRec& rec, std::uint64_t seq, const AccessUnit& au) {
    std::tm tm{};
    const std::time_t secs = static_cast<std::time_t>(au.wall_us / 1'000'000);
    ::gmtime_r(&secs, &tm);
    char day[16], name[64];
    std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
    std::strftime(name, sizeof name, "%Y%m%dT%H%M%S", &tm);
    const auto millis = static_cast<int>((au.wall_us / 1000) % 1000);
    const std::string cam_dir = s.root + "/" + rec.settings.camera;
    OpenSegment g;
    g.dir = cam_dir + "/" + day;
    try {
      make_directory(s.root, rec.settings.camera);
      make_directory(cam_dir, day);
      for (int attempt = 0; g.fd < 0; ++attempt) {
        char file[128];
        std::snprintf(file, sizeof file, "%s.%03dZ-%s%s.mp4", name, millis,
                      rec.settings.role.c_str(),
                      attempt ? ("-" + std::to_string(attempt)).c_str() : "");
        const std::string rel = rec.settings.camera + "/" + day + "/" + file;
        g.fd = ::open((s.root + "/" + rel).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (g.fd >= 0) {
          g.relpath = rel;
        } else if (errno != EEXIST || attempt > 100) {
          throw IoError(errno_text("cannot create " + s.root + "/" + rel, errno), errno);
        }
      }
    } catch (const IoError& e) {
      storage_failed(s, rec, e.what(), au.wall_us);
      return false;
    }
    g.info.camera = rec.settings.camera;
    g.info.role = rec.settings.role;
    g.info.stream_id = rec.settings.stream_id;
    g.info.storage = s.name;
    g.info.path = g.relpath;
    // Clamped to the previous segment's end when they overlap by a converging clock (at most a
    // few seconds); a larger overlap is a clock that really jumped and is kept as it is.
    const bool overlaps = rec.last_segment_end_wall_us > au.wall_us &&
                          rec.last_segment_end_wall_us - au.wall_us <= kMaxClampUs;
    g.info.start_wall_us = overlaps ? rec.last_segment_end_wall_us : au.wall_us;
    g.info.start_90k = au.dts_90k;
    const std::int64_t seg_len = rec.settings.segment_us;
    // The first instant at least half a segment away that is on this stream's rotation grid.
    const std::int64_t earliest = au.wall_us + seg_len / 2;
    const std::int64_t k = (earliest - rec.rotate_offset_us + seg_len - 1) / seg_len;
    g.rotate_at_90k = au.dts_90k + (k * seg_len + rec.rotate_offset_us - au.wall_us) * 9 / 100;
    g.last_wall_us = au.wall_us;
    g.last_dts_90k = au.dts_90k;
    g.first_seq = seq;
    g.last_sync_us = mono_now_us();
    fmp4::MuxerOptions mo;
    mo.input_annexb = false;
    mo.fragment_duration_90k = options_.flush_interval_us * 9 / 100;
    rec.seg.emplace(std::move(g));
    OpenSegment& og = *rec.seg;
    og.sink = std::make_unique<SegmentSink>(og.fd, [&rec] { return info_box(rec); }, rec.write_calls, s.pacer);
    og.muxer = std::make_unique<fmp4::Muxer>(au.parameter_sets ? *au.parameter_sets : ParameterSets{},
                                             mo, *og.sink);
    if (s.failing) {
      s.failing = false;
      {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.stats.failing = false;
      }
      event(rec, "storage_ok", au.wall_us, au.wall_us, "writing to " + s.root + " again");
    }
    if (rec.gap_since_us) {
      note_gap(rec, rec.gap_since_us, au.wall_us, rec.gap_reason);
      rec.gap_since_us = 0;
    }
    std::lock_guard<std::mutex> lock(rec.mutex);
    rec.counters.recording = true;
    rec.counters.current_segment_start_wall_us = au.wall_us;
    return true;
  }

  static Bytes info_box(const StreamRec& rec) {
    const OpenSegment& g = *rec.seg;
    std::string json = "{\"format\":\"vmscore-segment\",\"version\":1,\"camera\":";
    append_json_string(json, rec.settings.camera);
    json += ",\"stream\":";
    append_json_string(json, rec.settings.role);
    json += ",\"stream_id\":";
    append_json_string(json, rec.settings.stream_id);
    json += ",\"start_wall_us\":" + std::to_string(g.info.start_wall_us);
    json += ",\"start_90k\":" + std::to_string(g.info.start_90k);
    json += ",\"codec\":";
    append_json_string(json, g.muxer->codec_string());
    json += "}";
    return fmp4::make_metadata_box(
        ByteSpan(reinterpret_cast<const std::uint8_t*>(json.data()), json.size()));
  }

  void storage_failed(Storage& s, StreamRec& rec, const std::string& why, std::int64_t wall_us) {
    const bool first = !s.failing;
    s.failing = true;
    s.retry_at_us = mono_now_us() + options_.retry_us;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.stats.failing = true;
      s.stats.last_error = why;
    }
    {
      std::lock_guard<std::mutex> lock(rec.mutex);
      rec.counters.last_error = why;
      rec.counters.recording = false;
    }
    if (!rec.gap_since_us) rec.gap_since_us = wall_us;
    rec.gap_reason = "storage error: " + why;
    if (first) event(rec, "storage_error", wall_us, wall_us, why);
  }

  // A write or sync failed: keep what reached the file up to the last whole fragment.
  void abandon(Storage& s, StreamRec& rec, const std::string& why, int /*err*/) {
    OpenSegment& g = *rec.seg;
    const std::int64_t at = g.last_wall_us;
    const std::uint64_t keep = g.sink->position();
    bool kept = false;
    if (!g.info.fragments.empty() && ::ftruncate(g.fd, static_cast<off_t>(keep)) == 0 &&
        ::fsync(g.fd) == 0) {
      kept = true;
    }
    ::close(g.fd);
    g.fd = -1;
    if (kept) {
      try {
        sync_directory(g.dir);
        report(rec, g, "storage_error");
      } catch (const IoError&) {
        kept = false;
      }
    }
    if (!kept) ::unlink((s.root + "/" + g.relpath).c_str());
    rec.seg.reset();
    rec.held.clear();
    storage_failed(s, rec, why, at);
  }

  void finish(Storage& s, StreamRec& rec, const std::string& reason) {
    if (!rec.seg) return;
    OpenSegment& g = *rec.seg;
    try {
      g.muxer->flush();
      track_fragments(s, rec);
    } catch (const IoError& e) {
      abandon(s, rec, e.what(), e.errno_value());
      return;
    }
    if (g.sink->position() == 0 || g.info.fragments.empty()) {
      ::close(g.fd);
      ::unlink((s.root + "/" + g.relpath).c_str());
      rec.seg.reset();
      rec.held.clear();
      return;
    }
    if (::fsync(g.fd) != 0) {
      abandon(s, rec, errno_text("fsync failed", errno), errno);
      return;
    }
    ::close(g.fd);
    g.fd = -1;
    try {
      sync_directory(g.dir);
    } catch (const IoError& e) {
      // After a failed directory fsync the file's name may not survive; the segment is not
      // reported (start-up recovery will find it if it did).
      rec.seg.reset();
      rec.held.clear();
      storage_failed(s, rec, e.what(), g.last_wall_us);
      return;
    }
    report(rec, g, reason);
    rec.seg.reset();
    rec.held.clear();
    std::lock_guard<std::mutex> lock(rec.mutex);
    rec.counters.recording = false;
    ++rec.counters.segments;
  }

  void report(StreamRec& rec, OpenSegment& g, const std::string& reason) {
    Segment seg = std::move(g.info);
    const fmp4::FragmentInfo& last = seg.fragments.back();
    const std::int64_t end_rel = last.base_dts_90k + last.duration_90k;
    seg.end_90k = seg.start_90k + end_rel;
    seg.end_wall_us = seg.start_wall_us + end_rel * 100 / 9;
    seg.bytes = g.sink->position();
    seg.codec = g.muxer->codec_string();
    seg.width = g.muxer->sps().width;
    seg.height = g.muxer->sps().height;
    seg.reason = reason;
    rec.last_segment_end_wall_us = seg.end_wall_us;
    emit(std::move(seg));
  }

  static constexpr std::int64_t kSweepMs = 200;
  static constexpr std::int64_t kMaxClampUs = 5'000'000;
  static constexpr std::size_t kMaxCompletions = 1u << 16;

  RecorderOptions options_;
  MemoryBudget budget_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  std::mutex lifecycle_;  // held by add_stream, remove_stream and stop (never by the threads they
                          // wait for: writer threads and engine loops)
  std::map<std::string, std::unique_ptr<Storage>> storages_;
  std::map<std::string, std::shared_ptr<StreamRec>> streams_;

  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  std::deque<Completion> done_;
};

// ----------------------------------------------------------------------------------------------
// Loop thread side

void StreamRec::on_access_unit(const AccessUnit& au) {
  const auto seq = ring.push(au);
  if (!seq) return;
  // Nudge the writer once per GOP, and often enough that a fragment reaches the file within the
  // flush interval; the writer's sweep catches the rest.
  RecorderImpl& owner = *storage->owner;
  const std::int64_t half = owner.options().flush_interval_us / 2;
  if (au.keyframe || au.wall_us - last_nudge_wall_us >= half) {
    last_nudge_wall_us = au.wall_us;
    owner.nudge(*this);
  }
}

void StreamRec::on_event(const ingest::StreamEvent& ev) {
  using ingest::EventKind;
  if (ev.kind == EventKind::Disconnected || ev.kind == EventKind::Stalled ||
      ev.kind == EventKind::Removed) {
    disconnected.store(true);
    storage->owner->nudge(*this);
  }
}

Recorder::Recorder(RecorderOptions options) : impl_(std::make_unique<RecorderImpl>(options)) {}
Recorder::~Recorder() = default;
void Recorder::add_storage(const std::string& name, const std::string& path,
                           std::uint64_t max_write_bytes_per_s) {
  impl_->add_storage(name, path, max_write_bytes_per_s);
}
void Recorder::add_stream(ingest::IngestEngine& engine, StreamSettings settings) {
  impl_->add_stream(engine, std::move(settings));
}
void Recorder::remove_stream(const std::string& id) { impl_->remove_stream(id); }
void Recorder::record_event(const std::string& id, std::int64_t start, std::int64_t end) {
  impl_->record_event(id, start, end);
}
std::vector<AccessUnit> Recorder::units_from(const std::string& id, std::int64_t wall_us) const {
  return impl_->units_from(id, wall_us);
}
std::size_t Recorder::poll(std::vector<Completion>& out, std::int64_t timeout_ms,
                           std::size_t max_items) {
  return impl_->poll(out, timeout_ms, max_items);
}
StreamRecordStats Recorder::stats(const std::string& id) const { return impl_->stats(id); }
std::vector<StorageStats> Recorder::storage_stats() const { return impl_->storage_stats(); }
std::size_t Recorder::memory_used() const { return impl_->memory_used(); }
void Recorder::stop() { impl_->stop(); }

}  // namespace vms::record
