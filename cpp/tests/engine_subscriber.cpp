// Native test of the ingest engine's C++ delivery path, with no Python anywhere: the camera
// simulator serves a clip over TCP and UDP, the engine delivers access units to C++ subscribers
// on its loop thread, and each subscriber muxes its stream to fragmented MP4 straight from the
// engine's pooled buffers (zero-copy: the muxer references them until each fragment is written).
// Built with sanitizers (ASan+UBSan, or TSan) by tests/test_cpp.py, which then decodes the files.
//
// Usage: engine_subscriber CLIP.h264 FPS OUT_DIR
// Exit status 0 when every check passed; the reason of a failure is printed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "clip_file.hpp"
#include "vmscore/camera_server.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/ingest.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// Runs on the engine's loop thread: must not block, must not call into Python (there is none).
class Fmp4Subscriber final : public vms::ingest::Subscriber {
 public:
  void on_access_unit(const vms::ingest::AccessUnit& au) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++units_;
    if (au.kind != vms::ingest::MediaKind::Video) return;
    std::vector<vms::NalRange> nals;
    vms::split_length_prefixed(au.data.span(), 4, nals);  // throws on a malformed unit
    if (nals.empty()) bad_ = "an access unit without NAL units";
    if (have_last_ && (au.pts_90k <= last_pts_ || au.dts_90k <= last_dts_)) bad_ = "time went back";
    last_pts_ = au.pts_90k;
    last_dts_ = au.dts_90k;
    have_last_ = true;
    if (!muxer_) {
      if (!au.keyframe) bad_ = "the first unit is not a keyframe";
      if (!au.parameter_sets || !au.parameter_sets->complete()) bad_ = "no parameter sets";
      vms::fmp4::MuxerOptions opt;
      opt.input_annexb = false;  // the engine delivers length-prefixed units
      muxer_.emplace(*au.parameter_sets, opt, sink_);
    }
    held_.push_back(au.data);
    muxer_->add(au.data.span(), au.pts_90k, au.dts_90k, au.keyframe);
    // The muxer references units until their fragment is written; then they may go back to the pool.
    const auto pending = static_cast<std::size_t>(muxer_->pending_samples());
    if (held_.size() > pending) held_.erase(held_.begin(), held_.end() - static_cast<std::ptrdiff_t>(pending));
  }
  void on_event(const vms::ingest::StreamEvent& ev) override {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(vms::ingest::event_kind_name(ev.kind));
  }

  void finish(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (muxer_) muxer_->flush();
    held_.clear();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(sink_.data.data()), static_cast<std::streamsize>(sink_.data.size()));
  }
  std::uint64_t units() {
    std::lock_guard<std::mutex> lock(mutex_);
    return units_;
  }
  std::string bad() {
    std::lock_guard<std::mutex> lock(mutex_);
    return bad_;
  }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;  // the loop thread writes, the main thread reads at the end
  std::uint64_t units_ = 0;
  bool have_last_ = false;
  std::int64_t last_pts_ = 0, last_dts_ = 0;
  std::string bad_;
  std::vector<std::string> events_;
  vms::fmp4::BytesSink sink_;
  std::optional<vms::fmp4::Muxer> muxer_;
  std::vector<vms::BytesRef> held_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto [clip, out_dir] = vms::test::clip_args(argc, argv);

  vms::sim::CameraServer server(vms::sim::ServerOptions{});
  vms::sim::CameraConfig camera;
  camera.name = "cam";
  camera.main = clip;
  const std::string url = server.add_camera(camera);

  Fmp4Subscriber tcp, udp, dropped;
  {
    vms::ingest::IngestEngine engine;
    for (const char* id : {"tcp", "udp"}) {
      vms::ingest::StreamConfig c;
      c.id = id;
      c.url = url;
      c.tcp = std::string(id) == "tcp";
      c.deliver = false;  // C++ subscribers only: nothing queues for Python
      engine.add_stream(c);
    }
    engine.subscribe("tcp", &tcp);
    engine.subscribe("udp", &udp);
    engine.subscribe("tcp", &dropped);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    engine.unsubscribe("tcp", &dropped);  // waits for the loop: never called after this returns
    const std::uint64_t at_unsubscribe = dropped.units();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    check(dropped.units() == at_unsubscribe, "a subscriber was called after unsubscribe()");
    const auto stats = engine.stats("tcp");
    check(stats.frames >= 40 && stats.packets_lost == 0, "the TCP stream did not play cleanly");
    engine.stop();
  }
  for (auto* s : {&tcp, &udp}) {
    check(s->units() >= 40, "too few units: " + std::to_string(s->units()));
    check(s->bad().empty(), s->bad());
  }
  const auto ev = tcp.events();
  check(std::find(ev.begin(), ev.end(), "playing") != ev.end(), "no playing event");
  check(!ev.empty() && ev.back() == "removed", "the last event is not removed");
  tcp.finish(out_dir + "/tcp.mp4");
  udp.finish(out_dir + "/udp.mp4");
  std::printf("units: tcp %llu, udp %llu; failures: %d\n", static_cast<unsigned long long>(tcp.units()),
              static_cast<unsigned long long>(udp.units()), failures);
  return failures == 0 ? 0 : 1;
}
