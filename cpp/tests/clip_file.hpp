// The native tests' arguments, CLIP.h264 FPS OUT_DIR: an H.264 elementary stream file (Annex-B, as
// the Python side writes it), turned into a simulator Clip at a constant frame rate, and a directory
// for what the test writes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmscore/camera_server.hpp"
#include "vmscore/nal.hpp"

namespace vms::test {

inline std::shared_ptr<const sim::Clip> load_clip(const std::string& path, double fps) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const Bytes es((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<AccessUnitRange> aus;
  split_access_units(Codec::H264, es, aus);
  std::vector<sim::ClipFrame> frames;
  for (std::size_t i = 0; i < aus.size(); ++i) {
    const auto t = static_cast<std::int64_t>(double(i) * 90000.0 / fps + 0.5);
    frames.push_back({ByteSpan(es).subspan(aus[i].offset, aus[i].size), t, t, aus[i].is_keyframe});
  }
  return sim::Clip::make(Codec::H264, frames);  // copies the bytes
}

struct ClipArgs {
  std::shared_ptr<const sim::Clip> clip;
  std::string out_dir;
};

// Exits with status 2 after printing the usage when the arguments are not those three.
inline ClipArgs clip_args(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s CLIP.h264 FPS OUT_DIR\n", argv[0]);
    std::exit(2);
  }
  return {load_clip(argv[1], std::stod(argv[2])), argv[3]};
}

}  // namespace vms::test
