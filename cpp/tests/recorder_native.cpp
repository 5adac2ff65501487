// Native test of the Recorder with every thread it meets in a station and no Python anywhere: the
// camera simulator serves a clip to a few cameras, the ingest engine feeds the recorder's rings on
// its loop thread, and two storage locations each run a writer thread. Meanwhile other threads call
// record_event() on an event-mode stream, units_from() / stats() / storage_stats() as readers, and
// poll() for completions; the main thread adds and removes one stream over and over while another
// thread calls record_event() on it, removes a continuous stream mid-run, and then stops.
// Afterwards every reported segment is checked against the disk with the segment scanner.
// Built with sanitizers (ASan+UBSan, or TSan) by tests/test_cpp.py.
//
// Usage: recorder_native CLIP.h264 FPS OUT_DIR
// Exit status 0 when every check passed; each failure is printed.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "clip_file.hpp"
#include "vmscore/camera_server.hpp"
#include "vmscore/ingest.hpp"
#include "vmscore/record.hpp"
#include "vmscore/segment_file.hpp"

namespace {

namespace fs = std::filesystem;
using vms::record::Completion;
using vms::record::RecorderEvent;
using vms::record::Segment;

constexpr std::int64_t kSec = 1'000'000;
constexpr std::int64_t kPreRoll = 1'500'000;
constexpr std::int64_t kPostRoll = 500'000;

std::mutex failures_mutex;
int failures = 0;

void check(bool ok, const std::string& what) {
  if (ok) return;
  std::lock_guard<std::mutex> lock(failures_mutex);
  std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  ++failures;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

template <typename T>
std::string str(T v) {
  return std::to_string(v);
}

// Every regular file under `root`, as paths relative to it.
std::set<std::string> files_under(const fs::path& root) {
  std::set<std::string> out;
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), root).string());
  return out;
}

// Units handed out by units_from(): one stream, starting at a keyframe, decode order.
void check_units(const std::vector<vms::ingest::AccessUnit>& units, const std::string& id,
                 bool latest_gop) {
  if (units.empty()) return;
  check(units.front().keyframe, id + ": units_from() does not start at a keyframe");
  std::size_t keyframes = 0;
  for (std::size_t i = 0; i < units.size(); ++i) {
    const auto& u = units[i];
    keyframes += u.keyframe;
    if (!u.stream || u.stream->id != id) {
      check(false, id + ": units_from() returned a unit of another stream");
      return;
    }
    if (u.data.span().size() < 5) check(false, id + ": units_from() returned an empty unit");
    if (i && u.dts_90k <= units[i - 1].dts_90k) {
      check(false, id + ": units_from() is not in decode order");
      return;
    }
  }
  if (latest_gop)
    check(keyframes == 1, id + ": units_from(0) holds " + str(keyframes) + " keyframes");
}

bool same(const vms::fmp4::FragmentInfo& a, const vms::fmp4::FragmentInfo& b) {
  return a.sequence == b.sequence && a.offset == b.offset && a.size == b.size &&
         a.base_dts_90k == b.base_dts_90k && a.duration_90k == b.duration_90k &&
         a.samples == b.samples && a.starts_with_keyframe == b.starts_with_keyframe;
}

std::string describe(const vms::fmp4::FragmentInfo& f) {
  return "#" + str(f.sequence) + " @" + str(f.offset) + "+" +
         str(f.size) + " dts " + str(f.base_dts_90k) + "+" + str(f.duration_90k) + " " +
         str(f.samples) + (f.starts_with_keyframe ? " samples (key)" : " samples");
}

// One reported segment against its file.
void check_segment(const fs::path& root, const Segment& seg) {
  const std::string name = seg.storage + ":" + seg.path;
  const fs::path path = root / seg.path;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    check(false, name + ": reported but not on disk");
    return;
  }
  check(static_cast<std::uint64_t>(st.st_size) == seg.bytes,
        name + ": " + str(st.st_size) + " bytes on disk, " + str(seg.bytes) + " reported");
  check(!seg.fragments.empty() && seg.frames > 0, name + ": reported without fragments or frames");
  check(seg.end_90k > seg.start_90k && seg.end_wall_us > seg.start_wall_us,
        name + ": ends before it starts");
  vms::ScannedFile file;
  try {
    file = vms::scan_segment_file(path.string(), true);
  } catch (const std::exception& e) {
    check(false, name + ": scan failed: " + e.what());
    return;
  }
  const auto& scan = file.scan;
  check(scan.file_size == seg.bytes && scan.valid_end == scan.file_size && scan.problem.empty(),
        name + ": valid to " + str(scan.valid_end) + " of " +
            str(scan.file_size) + (scan.problem.empty() ? "" : " (" + scan.problem + ")"));
  check(scan.fragments.size() == seg.fragments.size(),
        name + ": " + str(scan.fragments.size()) + " fragments in the file, " +
            str(seg.fragments.size()) + " reported");
  for (std::size_t i = 0; i < std::min(scan.fragments.size(), seg.fragments.size()); ++i)
    check(same(scan.fragments[i], seg.fragments[i]),
          name + ": fragment " + str(i) + " is " + describe(scan.fragments[i]) +
              ", reported " + describe(seg.fragments[i]));
  check(scan.samples.size() == seg.frames,
        name + ": " + str(scan.samples.size()) + " samples, " + str(seg.frames) +
            " frames reported");
  std::uint64_t frames = 0;
  for (const auto& f : seg.fragments) frames += f.samples;
  check(frames == seg.frames,
        name + ": the fragments' samples do not add up to the frames reported");
  check(!scan.fragments.empty() && scan.fragments.front().starts_with_keyframe &&
            !scan.samples.empty() && scan.samples.front().keyframe,
        name + ": does not start with a keyframe fragment");
  // Fragments follow each other without a hole, in bytes and in time, up to the reported end.
  std::uint64_t at = scan.fragments.empty() ? 0 : scan.fragments.front().offset;
  std::int64_t dts = 0;
  for (const auto& f : seg.fragments) {
    check(f.offset == at && f.base_dts_90k == dts,
          name + ": fragment " + describe(f) + " leaves a hole");
    at = f.offset + f.size;
    dts = f.base_dts_90k + f.duration_90k;
  }
  check(at == seg.bytes, name + ": the last fragment ends at " + str(at));
  check(seg.end_90k == seg.start_90k + dts,
        name + ": end_90k is not start_90k + the fragments' duration");
  check(scan.metadata.find("\"stream_id\":\"" + seg.stream_id + "\"") != std::string::npos &&
            scan.metadata.find("\"start_90k\":" + str(seg.start_90k) + ",") != std::string::npos,
        name + ": metadata does not match: " + scan.metadata);
  check(scan.track.codec_string == seg.codec && scan.track.width == seg.width &&
            scan.track.height == seg.height && seg.width > 0,
        name + ": track " + scan.track.codec_string + " " + str(scan.track.width) + "x" +
            str(scan.track.height) + ", reported " + seg.codec + " " +
            str(seg.width) + "x" + str(seg.height));
}

struct StreamPlan {
  std::string id;      // engine stream, recorder stream and camera directory
  std::string camera;  // simulated camera it plays
  std::string storage;
  vms::record::Mode mode;
};

}  // namespace

int main(int argc, char** argv) {
  const auto args = vms::test::clip_args(argc, argv);
  const auto& clip = args.clip;
  const fs::path out_dir = args.out_dir;
  const std::map<std::string, fs::path> roots = {{"a", out_dir / "a"}, {"b", out_dir / "b"}};
  for (const auto& [_, p] : roots) fs::create_directories(p);

  const std::vector<StreamPlan> plan = {
      {"c0", "cam0", "a", vms::record::Mode::Continuous},
      {"c1", "cam1", "b", vms::record::Mode::Continuous},
      {"c2", "cam2", "a", vms::record::Mode::Continuous},  // removed mid-run
      {"e0", "cam3", "b", vms::record::Mode::Event},
  };
  const std::string removed = "c2", event_stream = "e0";
  // Added and removed over and over while another thread calls record_event() on it.
  const StreamPlan churn = {"x0", "cam4", "b", vms::record::Mode::Event};

  vms::sim::ServerOptions server_options;
  server_options.sender_report_interval_s = 1.0;
  vms::sim::CameraServer server(server_options);
  std::map<std::string, std::string> urls;
  for (std::size_t i = 0; i <= plan.size(); ++i) {
    const StreamPlan& p = i < plan.size() ? plan[i] : churn;
    vms::sim::CameraConfig camera;
    camera.name = p.camera;
    camera.main = clip;
    camera.start_offset_s = 0.4 * double(i);
    urls[p.id] = server.add_camera(camera);
  }
  const auto settings = [](const StreamPlan& p) {
    vms::record::StreamSettings s;
    s.stream_id = p.id;
    s.camera = p.id;
    s.storage = p.storage;
    s.mode = p.mode;
    s.segment_us = kSec;
    s.pre_roll_us = kPreRoll;
    s.post_roll_us = kPostRoll;
    return s;
  };

  std::vector<Completion> done;  // written by the poller, read after it is joined
  std::int64_t event_start = 0;  // the first event's requested start (written by the event thread)
  std::set<std::string> removed_files;  // the removed stream's files once remove_stream() returned
  {
    vms::ingest::IngestEngine engine;
    vms::record::RecorderOptions options;
    options.flush_interval_us = 250'000;
    options.sync_interval_us = 500'000;
    vms::record::Recorder recorder(options);
    for (const auto& [name, root] : roots) recorder.add_storage(name, root.string());
    for (const auto& [id, url] : urls) {
      vms::ingest::StreamConfig c;
      c.id = id;
      c.url = url;
      c.deliver = false;  // C++ subscribers only
      engine.add_stream(c);
    }
    for (const auto& p : plan) recorder.add_stream(engine, settings(p));

    std::atomic<bool> stop_clients{false}, stop_poller{false}, recorder_stopped{false};
    std::thread poller([&] {
      std::vector<Completion> batch;
      for (;;) {
        const bool last = stop_poller.load();
        batch.clear();
        const std::size_t n = recorder.poll(batch, 50, 7);
        for (auto& c : batch) done.push_back(std::move(c));
        if (last && n == 0) break;
      }
    });
    std::thread reader([&] {
      std::uint64_t rounds = 0;
      while (!stop_clients.load()) {
        for (const auto& p : plan) {
          try {
            check_units(recorder.units_from(p.id, 0), p.id, true);
            const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
            check_units(recorder.units_from(p.id, now - 2 * kSec), p.id, false);
            const auto st = recorder.stats(p.id);
            check(st.stream_id == p.id && st.storage == p.storage,
                  p.id + ": stats of another stream");
            check(st.ring.units == 0 || st.ring.end_seq - st.ring.first_seq == st.ring.units,
                  p.id + ": ring stats do not add up");
          } catch (const std::invalid_argument&) {
            // The removed stream, or any stream once the recorder stopped.
            check(p.id == removed || recorder_stopped.load(), p.id + ": unknown to the recorder");
          }
        }
        for (const auto& s : recorder.storage_stats())
          check(!s.failing, s.name + ": failing: " + s.last_error);
        (void)recorder.memory_used();
        ++rounds;
        sleep_ms(3);
      }
      check(rounds > 20, "the reader thread ran only " + str(rounds) + " rounds");
    });
    std::thread events([&] {
      // Once the event stream's ring reaches back over the pre-roll and a GOP: an event starting
      // now, extended while it runs, then a second one later.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      for (;;) {
        const auto st = recorder.stats(event_stream);
        const std::int64_t held = st.ring.last_wall_us - st.ring.first_wall_us;
        if (st.ring.units && held >= kPreRoll + 1'200'000) break;
        if (std::chrono::steady_clock::now() > deadline) {
          check(false, "the event stream's ring never filled");
          return;
        }
        sleep_ms(20);
      }
      const auto latest = recorder.units_from(event_stream, 0);
      event_start = latest.back().wall_us;
      recorder.record_event(event_stream, event_start, event_start + kSec);
      sleep_ms(600);
      recorder.record_event(event_stream, event_start, event_start + 2 * kSec);
      sleep_ms(3400);
      if (stop_clients.load()) return;
      const std::int64_t second = recorder.units_from(event_stream, 0).back().wall_us;
      recorder.record_event(event_stream, second, second + kSec);
    });

    // A stream's removal racing with nudges of its writer (record_event() here; the loop thread's
    // nudges race the same way, more rarely).
    std::atomic<bool> churning{true};
    std::thread hammer([&] {
      std::uint64_t calls = 0;
      while (churning.load()) {
        try {
          const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
          recorder.record_event(churn.id, now, now + 200'000);
          ++calls;
        } catch (const std::invalid_argument&) {
          std::this_thread::yield();
        }
      }
      check(calls > 0, "record_event() never reached the churned stream");
    });
    int churn_rounds = 0;
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(3000);
         std::chrono::steady_clock::now() < until; ++churn_rounds) {
      recorder.add_stream(engine, settings(churn));
      sleep_ms(churn_rounds % 2 ? 1 : 10 * (churn_rounds % 9));
      recorder.remove_stream(churn.id);
    }
    churning = false;
    hammer.join();
    std::printf("%s: added and removed %d times\n", churn.id.c_str(), churn_rounds);
    sleep_ms(1500);
    recorder.remove_stream(removed);
    removed_files = files_under(roots.at("a") / removed);
    try {
      (void)recorder.stats(removed);
      check(false, "stats() of a removed stream did not throw");
    } catch (const std::invalid_argument&) {
    }
    sleep_ms(5500);
    recorder_stopped = true;  // from here on the readers may find no stream
    recorder.stop();
    stop_clients = true;
    reader.join();
    events.join();
    stop_poller = true;
    poller.join();
    check(recorder.memory_used() == 0,
          "the rings still account for " + str(recorder.memory_used()) + " bytes after stop()");
    check(files_under(roots.at("a") / removed) == removed_files,
          "the removed stream's files changed after remove_stream() returned");
    const auto storage = recorder.storage_stats();
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> written;  // fragments, bytes
    for (const auto& c : done)
      if (const auto* seg = std::get_if<Segment>(&c))
        for (const auto& f : seg->fragments) {
          ++written[seg->storage].first;
          written[seg->storage].second += f.size;
        }
    for (const auto& s : storage)
      check(s.write_calls == written[s.name].first && s.bytes_written == written[s.name].second,
            s.name + ": storage stats count " + str(s.write_calls) + " fragments, " +
                str(s.bytes_written) + " bytes; segments hold " +
                str(written[s.name].first) + ", " + str(written[s.name].second));
    engine.stop();
  }

  // --- what the recorder reported, against the disk ---------------------------------------------
  std::map<std::string, std::vector<Segment>> by_stream;  // in completion order
  std::set<std::string> reported;
  for (auto& c : done) {
    if (auto* ev = std::get_if<RecorderEvent>(&c)) {
      std::printf("event %s %s %s\n", ev->kind.c_str(), ev->stream_id.c_str(), ev->reason.c_str());
      // The churned stream's ring is new each time: its pre-roll is always short.
      check(ev->kind == "gap" || (ev->kind == "preroll_short" && ev->stream_id == churn.id),
            ev->stream_id + ": unexpected " + ev->kind + " event: " + ev->reason);
      continue;
    }
    auto& seg = std::get<Segment>(c);
    check(roots.count(seg.storage) == 1, seg.path + ": unknown storage " + seg.storage);
    if (!roots.count(seg.storage)) continue;
    check(reported.insert(seg.storage + "/" + seg.path).second, seg.path + ": reported twice");
    check_segment(roots.at(seg.storage), seg);
    by_stream[seg.stream_id].push_back(std::move(seg));
  }
  for (const auto& [name, root] : roots)
    for (const auto& rel : files_under(root))
      check(reported.count(name + "/" + rel) == 1,
            name + "/" + rel + ": on disk but never reported");

  std::vector<StreamPlan> all = plan;
  all.push_back(churn);
  for (const auto& p : all) {
    const auto& segs = by_stream[p.id];
    std::string reasons;
    for (const auto& s : segs) reasons += " " + s.reason;
    std::printf("%s: %zu segments:%s\n", p.id.c_str(), segs.size(), reasons.c_str());
    for (const auto& s : segs) {
      check(s.storage == p.storage && s.camera == p.id, s.path + ": wrong storage or camera");
      const std::int64_t length = s.end_wall_us - s.start_wall_us;
      if (p.mode == vms::record::Mode::Continuous && s.reason == "rotated")
        check(length >= kSec / 2 && length <= 3 * kSec,
              s.path + ": a rotated segment of " + str(length) + " us");
    }
    // In completion order, which is time order: each stream has one writer thread.
    for (std::size_t i = 1; i < segs.size(); ++i) {
      const Segment& a = segs[i - 1];
      const Segment& b = segs[i];
      if (a.reason == "rotated")
        check(b.start_90k == a.end_90k,
              p.id + ": " + b.path + " starts at " + str(b.start_90k) +
                  ", the rotated segment before it ended at " + str(a.end_90k));
      else
        check(b.start_90k >= a.end_90k, p.id + ": " + b.path + " overlaps the segment before it");
      check(b.start_wall_us > a.start_wall_us, p.id + ": segments out of order");
    }
    if (p.mode == vms::record::Mode::Continuous) {
      check(segs.size() >= (p.id == removed ? 2u : 4u), p.id + ": too few segments");
      const auto stopped = std::count_if(segs.begin(), segs.end(),
                                         [](const Segment& s) { return s.reason == "stopped"; });
      check(stopped == 1 && !segs.empty() && segs.back().reason == "stopped",
            p.id + ": the last segment must be the only one closed by stop");
    }
  }
  const auto& ev_segs = by_stream[event_stream];
  check(event_start != 0, "no event was recorded");
  check(!ev_segs.empty(), "the event stream recorded nothing");
  if (!ev_segs.empty() && event_start) {
    check(ev_segs.front().start_wall_us <= event_start - kPreRoll,
          "the event recording starts at " + str(ev_segs.front().start_wall_us) +
              ", after the requested start minus pre-roll " + str(event_start - kPreRoll));
    check(ev_segs.front().start_wall_us >= event_start - kPreRoll - 2 * kSec,
          "the event recording starts more than a GOP before the pre-roll");
    // Event-mode segments rotate too: the ones the first window opened must reach its extended end.
    std::int64_t end = 0;
    for (const auto& s : ev_segs)
      if (s.start_wall_us <= event_start + 2 * kSec) end = std::max(end, s.end_wall_us);
    check(end >= event_start + 2 * kSec, "the event recording ended at " + str(end) +
                                             ", before the extended event did at " +
                                             str(event_start + 2 * kSec));
  }
  std::printf("segments: %zu; failures: %d\n", reported.size(), failures);
  return failures == 0 ? 0 : 1;
}
