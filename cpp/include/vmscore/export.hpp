// Export: one progressive MP4 for a wall-clock time range, made from recorded segment files without
// transcoding. The output is planned up front as a list of slices (the ftyp + moov + mdat header
// built in memory, then byte ranges of the segment files), so its size is known before a byte is
// written, any byte range can be read on its own (HTTP Range requests), and writing the whole file
// is a series of large copies (copy_file_range where the kernel can, pread/pwrite otherwise).
//
// Timing: every time is in 90 kHz ticks relative to the requested start. A segment's first sample
// (tfdt 0) is at its start_wall_us; a sample's time is that plus its decode time. The file begins at
// the keyframe at or before the start and an edit list makes playback begin at the start; it ends
// with the last frame before the end. A gap between segments stays in the timeline (the sample
// before it lasts until the next segment), so playback time equals wall time; a segment that starts
// before the previous one ended is moved after it, so time never goes backwards.
//
// Blocking I/O; a plan is immutable once built, so reads may run on several threads at once.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"
#include "vmscore/segment_file.hpp"

namespace vms {

struct ExportSegment {
  std::string path;
  std::int64_t start_wall_us = 0;  // UTC microseconds of the segment's first sample
};

// One piece of the output: header bytes (source < 0) or a byte range of a segment file.
struct ExportSlice {
  std::uint64_t offset = 0;  // in the output
  std::uint64_t size = 0;
  std::int32_t source = -1;  // index into the plan's sources, or -1 for the header
  std::uint64_t source_offset = 0;
};

class ExportPlan {
 public:
  // Scans the segments (in the given order) that start before `end_wall_us` and plans the file.
  // Throws NoFootageError when the range holds no video, MuxError for an empty range or segments
  // that cannot share a track (different codecs), BitstreamError / IoError for a segment that is
  // corrupt or cannot be read.
  ExportPlan(const std::vector<ExportSegment>& segments, std::int64_t start_wall_us,
             std::int64_t end_wall_us);

  std::uint64_t size() const { return size_; }
  // Copies the output bytes at `offset` into `out`; returns how many (fewer only at the end).
  // IoError when a segment has gone or changed since the plan was made.
  std::size_t read(std::uint64_t offset, std::span<std::uint8_t> out) const;

  const Bytes& header() const { return header_; }
  const std::vector<ExportSlice>& slices() const { return slices_; }
  const std::string& source_path(std::size_t i) const { return sources_[i].path; }
  // Opens source `i`, checking it is still the file that was planned.
  UniqueFd open_source(std::size_t i) const;

  Codec codec() const { return codec_; }
  std::uint32_t width() const { return width_; }
  std::uint32_t height() const { return height_; }
  std::int64_t start_wall_us() const { return start_wall_us_; }  // where playback begins
  std::int64_t end_wall_us() const { return end_wall_us_; }      // where it ends
  std::int64_t first_sample_wall_us() const { return first_sample_wall_us_; }  // the keyframe
  std::int64_t lead_in_90k() const { return lead_in_90k_; }  // keyframe to playback start
  std::int64_t duration_90k() const { return duration_90k_; }
  std::uint64_t frames() const { return frames_; }
  std::size_t segments_used() const { return sources_.size(); }
  std::size_t sample_descriptions() const { return sample_descriptions_; }

 private:
  struct Source {
    std::string path;
    FileIdentity identity;
  };

  std::vector<Source> sources_;
  Bytes header_;
  std::vector<ExportSlice> slices_;
  std::uint64_t size_ = 0;
  Codec codec_ = Codec::H264;
  std::uint32_t width_ = 0, height_ = 0;
  std::int64_t start_wall_us_ = 0, end_wall_us_ = 0, first_sample_wall_us_ = 0;
  std::int64_t lead_in_90k_ = 0, duration_90k_ = 0;
  std::uint64_t frames_ = 0;
  std::size_t sample_descriptions_ = 0;
};

// Writes a plan to a file in steps, so a caller can report progress between them. The file is
// created (or truncated); unless finish() succeeds, the destructor removes it again.
class ExportWriter {
 public:
  ExportWriter(const ExportPlan& plan, const std::string& path);
  ~ExportWriter();
  ExportWriter(const ExportWriter&) = delete;
  ExportWriter& operator=(const ExportWriter&) = delete;

  // Writes up to `max_bytes` more; returns how many were written.
  std::uint64_t write_some(std::uint64_t max_bytes);
  bool done() const { return written_ == plan_.size(); }
  std::uint64_t written() const { return written_; }
  // Syncs the file to disk and closes it; call once done().
  void finish();

 private:
  std::uint64_t copy_from_file(const ExportSlice& s, std::uint64_t from, std::uint64_t n);

  const ExportPlan& plan_;
  std::string path_;
  UniqueFd fd_;
  std::uint64_t written_ = 0;
  std::size_t slice_ = 0;  // the slice holding byte `written_`
  std::int32_t open_source_ = -1;
  UniqueFd source_fd_;
  bool copy_range_ = true;  // copy_file_range works here (until it says otherwise)
  Bytes buffer_;
  bool finished_ = false;
};

}  // namespace vms
