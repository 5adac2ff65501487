// The ingest engine: RTSP/RTP sessions for many cameras driven by a few event-loop threads (one by
// default), handing out access units to C++ subscribers (recorder, live view) on the loop thread and
// to Python through a bounded queue drained in batches with poll().
//
// Threading: IngestEngine's public methods are thread-safe. Subscribers are called on a loop thread
// and must not block. Loop threads never call into Python.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "vmscore/nal.hpp"
#include "vmscore/shared_bytes.hpp"

namespace vms::ingest {

struct StreamConfig {
  std::string id;        // caller's stable name, e.g. "school-12-gym-east/main"
  std::string url;       // rtsp://[user:password@]host[:port]/path
  std::string username;  // overrides credentials in the URL when not empty
  std::string password;
  bool tcp = true;       // RTP interleaved on the RTSP connection; false: UDP port pairs
  bool audio = false;    // pass audio tracks through (otherwise not SET UP)
  bool deliver = true;   // queue access units for poll(); C++ subscribers get them regardless
  std::int64_t connect_timeout_ms = 10000;  // TCP connect and each RTSP response
  std::int64_t stall_timeout_ms = 10000;    // no media for this long: reconnect
  std::int64_t reconnect_min_ms = 1000;     // backoff doubles from here...
  std::int64_t reconnect_max_ms = 30000;    // ...up to here
  std::size_t max_access_unit_bytes = 16u << 20;
  // How long a live555 server with its stale-TCP-session bug (before 2017.06.04) keeps an old
  // session sending after a connection drops; reconnects wait it out (retina's 65 s).
  std::int64_t stale_session_wait_ms = 65000;
  int udp_reorder_packets = 64;
  std::int64_t udp_reorder_delay_ms = 100;
};

enum class MediaKind : std::uint8_t { Video, Audio };

// What every access unit and event of one stream shares; one allocation per stream.
struct StreamIdentity {
  std::string id;
};

struct AccessUnit {
  std::shared_ptr<const StreamIdentity> stream;
  MediaKind kind = MediaKind::Video;
  std::string codec;  // "h264", "h265", "aac", "pcmu", "pcma"
  // Video: 4-byte length-prefixed NAL units (parameter sets in-band as the camera sent them).
  // Audio: one encoded frame.
  BytesRef data;
  std::int64_t pts_90k = 0;  // monotonic per stream (wraps and camera resets are taken out)
  std::int64_t dts_90k = 0;
  std::int64_t wall_us = 0;  // UTC, from RTCP sender reports when the camera sends them
  bool keyframe = false;
  bool gap = false;                // frames were lost before this one
  bool parameters_changed = false; // the first unit with new parameter sets
  std::uint32_t dropped_frames = 0;
  std::uint32_t lost_packets = 0;
  std::shared_ptr<const ParameterSets> parameter_sets;  // video: the current complete set
  std::uint32_t clock_rate = 90000;                     // audio: the RTP clock rate
};

enum class EventKind : std::uint8_t {
  Connecting,
  Playing,
  ParametersChanged,
  Stalled,
  Disconnected,
  Reconnecting,
  Removed,
  Error,
};
const char* event_kind_name(EventKind k);

struct StreamEvent {
  std::shared_ptr<const StreamIdentity> stream;
  EventKind kind = EventKind::Connecting;
  std::string reason;
  std::int64_t wall_us = 0;
};

using Delivery = std::variant<AccessUnit, StreamEvent>;

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void on_access_unit(const AccessUnit& au) = 0;
  virtual void on_event(const StreamEvent&) {}
};

// Counters of one stream, as of the loop's last tick (tick_ms) or state change.
struct StreamStats {
  std::string id;
  std::string state;  // connecting, describing, playing, backoff, removed
  std::string codec;
  std::uint32_t width = 0, height = 0;
  std::uint64_t bytes = 0;          // media payload bytes received
  std::uint64_t frames = 0;         // video access units delivered
  std::uint64_t packets = 0;        // RTP packets
  std::uint64_t packets_lost = 0;
  std::uint64_t frames_dropped = 0;         // after loss, until the next keyframe
  std::uint64_t frames_dropped_queue = 0;   // the Python queue was full
  std::uint64_t reconnects = 0;
  std::uint64_t timestamp_discontinuities = 0;
  double fps = 0;                   // over the last few seconds
  double bitrate_bps = 0;
  std::string last_error;
  std::int64_t last_keyframe_wall_us = 0;
  std::int64_t playing_since_wall_us = 0;
};

struct EngineOptions {
  int loops = 1;
  int tick_ms = 50;
  // Pause after a light wake-up so each one reads more data from more sockets (see EventLoop).
  int batch_us = 4000;
  std::size_t queue_frames = 4096;        // Python queue bounds; beyond them frames are dropped
  std::size_t queue_bytes = 256u << 20;   // to the next keyframe per stream, and counted
};

class Engine;

class IngestEngine {
 public:
  explicit IngestEngine(EngineOptions options = {});
  ~IngestEngine();
  IngestEngine(const IngestEngine&) = delete;
  IngestEngine& operator=(const IngestEngine&) = delete;

  void add_stream(StreamConfig config);  // throws std::invalid_argument on a bad URL or duplicate id
  void remove_stream(const std::string& id);  // TEARDOWN; a Removed event follows
  void subscribe(const std::string& id, Subscriber* s);
  void unsubscribe(const std::string& id, Subscriber* s);
  // Waits up to timeout_ms for deliveries and moves up to max_items into `out`. Call without the GIL.
  std::size_t poll(std::vector<Delivery>& out, std::int64_t timeout_ms, std::size_t max_items);
  void wake();  // makes a waiting poll() return
  StreamStats stats(const std::string& id) const;
  std::vector<std::string> stream_ids() const;
  void stop();

 private:
  std::unique_ptr<Engine> impl_;
};

}  // namespace vms::ingest
