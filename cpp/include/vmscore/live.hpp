// Live view: fragmented MP4 for browsers (Media Source Extensions), remuxed from the ingest
// engine's access units without transcoding.
//
// Per stream, a LiveHub source subscribes to the engine and always holds references to the latest
// GOP (no copy: the engine's pooled buffers). While someone watches, it muxes each access unit
// into its own fragment (one moof+mdat per frame, so a frame reaches the viewer as soon as it
// arrived) on one timeline, once, whatever the number of viewers: viewers share the fragments and
// differ only in where they are. A new viewer starts at the latest keyframe. A viewer that falls
// more than `max_lag` behind skips to the newest keyframe (and is told how many frames it
// skipped) instead of falling further behind; the fragments a source keeps are bounded in bytes.
//
// Delivery is pull-based with one outstanding chunk per viewer: poll() hands each ready viewer
// everything it has not had yet (its init segment first, again after a change of parameter
// sets), and the viewer gets more only after ack(): a slow network connection holds back only its
// own viewer, which then skips. One poll() serves every viewer, so a single thread feeds them all.
//
// Threading: LiveHub's public methods are thread-safe. Sources run on the engine's loop threads and
// never block beyond the hub's mutex; no thread calls into Python.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/ingest.hpp"
#include "vmscore/shared_bytes.hpp"

namespace vms::live {

struct LiveOptions {
  std::int64_t max_lag_90k = 90000;          // a viewer further behind skips to the newest keyframe
  std::size_t max_source_bytes = 16u << 20;  // fragments kept per watched stream
  std::int64_t keep_90k = 5 * 90000;         // ...and at most this much media time
  std::size_t max_chunk_bytes = 8u << 20;    // one poll() hands a viewer at most this much media
  // After the first viewer is ready, poll() waits this much longer so that one wake-up serves the
  // frames of many cameras (a wake-up per frame costs more than the muxing); 0: no batching.
  std::int64_t batch_us = 2000;
};

// What poll() hands one viewer.
struct LiveChunk {
  std::uint64_t viewer = 0;
  // An init segment (ftyp+moov) to append before `media`: the first chunk, and after the stream's
  // parameter sets changed. Empty otherwise.
  Bytes init;
  std::string codec;  // RFC 6381, with init
  std::uint32_t width = 0, height = 0;
  // The fragments (moof+mdat, one per frame), shared with the stream's other viewers: nothing is
  // copied until the caller joins them (once, into what it sends).
  std::vector<BytesRef> media;
  std::size_t media_bytes = 0;
  std::uint32_t fragments = 0;
  std::uint64_t skipped = 0;  // frames skipped since the previous chunk (a slow viewer)
  std::int64_t first_wall_us = 0, last_wall_us = 0;  // wall times of the first and last frame
  // The stream's state when it changed since the previous chunk (else empty): "playing",
  // "connecting", "offline" (disconnected or stalled), "removed"; `reason` says why.
  std::string state;
  std::string reason;
};

struct LiveViewerStats {
  std::string stream_id;
  std::uint64_t chunks = 0, fragments = 0, bytes = 0, skipped = 0, skips = 0;
  bool waiting_for_ack = false;
};

struct LiveSourceStats {
  std::string stream_id;
  std::size_t viewers = 0;
  bool muxing = false;
  std::size_t gop_units = 0;       // units of the latest GOP held
  std::size_t fragments = 0;       // fragments kept
  std::size_t bytes = 0;           // their bytes
  std::uint64_t muxed = 0;         // fragments made since the source was added
  std::uint64_t mux_errors = 0;    // units that could not be muxed (the source restarts at a keyframe)
  std::uint32_t generation = 0;    // init segments made (parameter-set changes)
  std::string state, reason;
};

class LiveHubImpl;

class LiveHub {
 public:
  // The engine must outlive the hub's streams (remove_stream() or the hub's destruction first).
  explicit LiveHub(ingest::IngestEngine& engine, LiveOptions options = {});
  ~LiveHub();
  LiveHub(const LiveHub&) = delete;
  LiveHub& operator=(const LiveHub&) = delete;

  // Subscribes to an engine stream (throws std::invalid_argument when the engine has no such
  // stream, or the hub has it already).
  void add_stream(const std::string& stream_id);
  // Unsubscribes; its viewers get a last chunk with state "removed".
  void remove_stream(const std::string& stream_id);
  // A new viewer of the stream; throws std::invalid_argument when the hub does not have it.
  std::uint64_t open(const std::string& stream_id);
  void close(std::uint64_t viewer);
  // The viewer has sent its last chunk and may have the next.
  void ack(std::uint64_t viewer);
  // Waits up to timeout_ms until a viewer has something, then hands out a chunk to every viewer
  // that is ready. Call without the GIL.
  std::size_t poll(std::vector<LiveChunk>& out, std::int64_t timeout_ms);
  void wake();  // makes a waiting poll() return
  LiveViewerStats viewer_stats(std::uint64_t viewer) const;
  std::vector<LiveSourceStats> source_stats() const;

 private:
  std::unique_ptr<LiveHubImpl> impl_;
};

}  // namespace vms::live
