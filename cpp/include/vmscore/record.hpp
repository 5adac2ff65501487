// Recording: a GOP-aligned ring of recent access units per stream, and the Recorder that turns the
// rings into fragmented-MP4 segment files on writer threads (one per storage location).
//
// Data path: the ingest loop thread pushes each video unit into its stream's Ring (reference
// counted, no copy) and, once per GOP or flush interval, nudges the storage's writer thread. The
// writer copies the new references out of the ring, muxes them (zero-copy, one writev per
// fragment) into the open segment, and rotates segments at the first keyframe after their target
// length. Ingest never waits for the disk: if a writer falls behind beyond the ring's budget, the
// ring drops its oldest GOPs, and the writer records a gap and an event instead of stalling.
//
// Crash safety: a segment is reported complete (for the index) only after the file and its
// directory were fsynced. Each segment file is self-describing (init segment, a metadata `uuid` box,
// then moof+mdat fragments), so start-up recovery can trim a crashed one to its last fragment.
//
// Threading: Recorder's public methods are thread-safe. Ring is thread-safe. Writer threads and
// loop threads never call into Python; completions are drained with poll().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "vmscore/fmp4.hpp"
#include "vmscore/ingest.hpp"

namespace vms::record {

// A growable circular buffer: amortised O(1) at both ends, no allocation once it has grown to its
// working size (std::deque allocates a block every few access units).
template <typename T>
class Circular {
 public:
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  T& operator[](std::size_t i) { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  const T& operator[](std::size_t i) const { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  T& front() { return (*this)[0]; }
  T& back() { return (*this)[count_ - 1]; }
  void push_back(T v) {
    if (count_ == slots_.size()) grow();
    slots_[(head_ + count_) & (slots_.size() - 1)] = std::move(v);
    ++count_;
  }
  void pop_front() {
    slots_[head_] = T{};
    head_ = (head_ + 1) & (slots_.size() - 1);
    --count_;
  }
  void clear() {
    while (count_) pop_front();
    head_ = 0;
  }

 private:
  void grow() {
    std::vector<T> bigger(slots_.empty() ? 64 : slots_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move((*this)[i]);
    slots_.swap(bigger);
    head_ = 0;
  }
  std::vector<T> slots_;  // size is zero or a power of two
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

// A memory cap shared by many rings.
class MemoryBudget {
 public:
  explicit MemoryBudget(std::size_t cap) : cap_(cap) {}
  void add(std::size_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  void sub(std::size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  bool over() const { return used_.load(std::memory_order_relaxed) > cap_; }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  std::size_t cap() const { return cap_; }

 private:
  std::atomic<std::size_t> used_{0};
  std::size_t cap_;
};

struct RingLimits {
  std::size_t max_bytes = 32u << 20;
  // At least this much history (wall time) is kept when bytes and the budget allow.
  std::int64_t keep_us = 30'000'000;  // raised to the pre-roll plus 2 s
};

struct RingStats {
  std::size_t units = 0;
  std::size_t bytes = 0;
  std::size_t keyframes = 0;
  std::uint64_t first_seq = 0;  // sequence number of the oldest unit held
  std::uint64_t end_seq = 0;    // one past the newest
  std::int64_t first_wall_us = 0;
  std::int64_t last_wall_us = 0;
  std::uint64_t trimmed_units = 0;  // dropped from the front to stay within the limits
  std::uint64_t skipped_units = 0;  // not kept: before the first keyframe, or audio
};

// One stream's recent video access units. The oldest unit held is always a keyframe: whole GOPs are
// trimmed from the front, never the newest GOP, until the ring is within its byte limit, holds no
// more than `keep_us` beyond what is needed, and the shared budget is not exceeded. Units are
// shared references: readers get copies of the references, never of the bytes.
class Ring {
 public:
  Ring(RingLimits limits, MemoryBudget* budget);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Appends a unit; returns its sequence number, or nullopt when it was not kept.
  std::optional<std::uint64_t> push(const ingest::AccessUnit& au);
  // Appends units with sequence numbers from `from_seq` (or the oldest held, if later) up to
  // `max_units`; returns the sequence number of the first unit appended (end_seq when none).
  std::uint64_t copy_from(std::uint64_t from_seq, std::vector<ingest::AccessUnit>& out,
                          std::size_t max_units) const;
  // The newest keyframe whose wall time is at or before `wall_us`, or the oldest keyframe held when
  // none is that old; nullopt when the ring is empty.
  std::optional<std::uint64_t> keyframe_at_or_before(std::int64_t wall_us) const;
  std::optional<std::uint64_t> latest_keyframe() const;
  // The oldest keyframe whose wall time is at or after `wall_us`; nullopt when none is held.
  std::optional<std::uint64_t> keyframe_at_or_after(std::int64_t wall_us) const;
  RingStats stats() const;
  void clear();

 private:
  void trim_locked();
  void pop_front_locked();

  RingLimits limits_;
  MemoryBudget* budget_;
  mutable std::mutex mutex_;
  Circular<ingest::AccessUnit> units_;
  std::size_t bytes_ = 0;
  std::size_t keyframes_ = 0;
  std::uint64_t end_seq_ = 0;
  std::uint64_t trimmed_ = 0;
  std::uint64_t skipped_ = 0;
};

enum class Mode : std::uint8_t { Continuous, Event };

struct StreamSettings {
  std::string stream_id;  // the ingest engine's stream id
  std::string camera;     // directory name and index key (a slug)
  std::string role = "main";
  std::string storage;    // name of a storage location added with add_storage()
  Mode mode = Mode::Continuous;
  std::int64_t pre_roll_us = 5'000'000;   // event mode: recording starts at the keyframe at or
  std::int64_t post_roll_us = 5'000'000;  // before event start - pre_roll, ends at end + post_roll
  std::int64_t segment_us = 60'000'000;   // rotate at the first keyframe after this length
  RingLimits ring;                        // keep_us is raised to cover the pre-roll
};

struct RecorderOptions {
  std::size_t memory_cap = 1u << 30;        // all rings together
  std::int64_t flush_interval_us = 2'000'000;  // a fragment reaches the file at least this often
  std::int64_t sync_interval_us = 30'000'000;  // fdatasync of open segments at least this often
  std::int64_t retry_us = 2'000'000;           // retry a failing storage location this often
  std::int64_t camera_gap_us = 5'000'000;      // a jump in wall time this long closes a segment
};

// A finished segment: its file and directory are on disk (fsynced); ready to be indexed.
struct Segment {
  std::string camera, role, stream_id, storage;
  std::string path;  // relative to the storage location: camera/YYYY-MM-DD/name.mp4
  std::int64_t start_wall_us = 0, end_wall_us = 0;
  std::int64_t start_90k = 0, end_90k = 0;  // the stream's monotonic timeline
  std::uint64_t bytes = 0;
  std::uint64_t frames = 0;
  std::string codec;  // RFC 6381
  std::uint32_t width = 0, height = 0;
  std::vector<fmp4::FragmentInfo> fragments;  // offsets from the start of the file
  std::string reason;  // why it ended: rotated, event_end, parameters_changed, camera_gap, ...
};

// Something the index and the operator should know: a gap in a recording, a storage failing or
// recovering, a pre-roll shorter than asked for.
struct RecorderEvent {
  std::string kind;  // gap, storage_error, storage_ok, preroll_short, segment_abandoned
  std::string camera, role, stream_id, storage;
  std::int64_t start_wall_us = 0, end_wall_us = 0;
  std::string reason;
};

using Completion = std::variant<Segment, RecorderEvent>;

struct StreamRecordStats {
  std::string stream_id, camera, role, storage;
  bool recording = false;  // a segment is open
  RingStats ring;
  std::uint64_t segments = 0, bytes_written = 0, frames_written = 0, gaps = 0;
  std::uint64_t write_calls = 0;
  std::int64_t current_segment_start_wall_us = 0;
  // Where on the wall clock this stream rotates, modulo segment_us: spread across streams so that
  // a station's cameras do not all close and fsync their segments at the same instant.
  std::int64_t rotation_offset_us = 0;
  std::string last_error;
};

struct StorageStats {
  std::string name, path;
  bool failing = false;
  std::string last_error;
  std::uint64_t write_calls = 0, bytes_written = 0, syncs = 0;
};

class RecorderImpl;

class Recorder {
 public:
  explicit Recorder(RecorderOptions options = {});
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // A storage location (a directory); starts its writer thread. max_write_bytes_per_s > 0 caps
  // the rate at which its writer writes (a disk shared with playback, or a slow network share);
  // streams that produce more fall behind and get gaps, as with a disk that cannot keep up.
  void add_storage(const std::string& name, const std::string& path,
                   std::uint64_t max_write_bytes_per_s = 0);
  // Subscribes to the engine's stream. The engine must outlive the stream's membership here
  // (remove_stream() or stop() before the engine is destroyed).
  void add_stream(ingest::IngestEngine& engine, StreamSettings settings);
  // Closes the stream's open segment (reported like any other) and unsubscribes.
  void remove_stream(const std::string& stream_id);
  // Event mode: record [start - pre_roll, end + post_roll]. Call again with a later end to extend.
  void record_event(const std::string& stream_id, std::int64_t start_wall_us,
                    std::int64_t end_wall_us);
  // Shared references to the ring's units from the keyframe at or before `wall_us` (for live
  // viewers, pre-roll checks, snapshots); the latest GOP when wall_us is 0.
  std::vector<ingest::AccessUnit> units_from(const std::string& stream_id, std::int64_t wall_us) const;
  // Waits up to timeout_ms and moves up to max_items completions into `out`. Call without the GIL.
  std::size_t poll(std::vector<Completion>& out, std::int64_t timeout_ms, std::size_t max_items);
  StreamRecordStats stats(const std::string& stream_id) const;
  std::vector<StorageStats> storage_stats() const;
  std::size_t memory_used() const;
  // Closes every open segment (reported), stops the writer threads.
  void stop();

 private:
  std::unique_ptr<RecorderImpl> impl_;
};

}  // namespace vms::record
