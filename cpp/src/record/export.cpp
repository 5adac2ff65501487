// Export planning (which samples, their timing, the MP4 header, the slices) and writing.
#include "vmscore/export.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "vmscore/error.hpp"
#include "vmscore/mp4.hpp"

namespace vms {
namespace {

// Bounds wall-clock differences (about 9000 years) so tick arithmetic cannot overflow.
constexpr std::int64_t kMaxSpanUs = std::int64_t(1) << 58;
constexpr std::uint64_t kCopyBuffer = 8u << 20;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}
// Microseconds to 90 kHz ticks and back, rounded to the nearest.
std::int64_t us_to_ticks(std::int64_t us) { return floor_div(us * 9 + 50, 100); }
std::int64_t ticks_to_us(std::int64_t ticks) { return floor_div(ticks * 100 + 4, 9); }

[[noreturn]] void fail(const std::string& what, int err) {
  throw IoError(what + ": " + std::strerror(err), err);
}

void pwrite_all(int fd, const std::uint8_t* p, std::uint64_t n, std::uint64_t offset,
                const std::string& path) {
  while (n > 0) {
    const ssize_t put = ::pwrite(fd, p, static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30)),
                                 static_cast<off_t>(offset));
    if (put < 0) {
      if (errno == EINTR) continue;
      fail("cannot write " + path, errno);
    }
    p += put;
    n -= static_cast<std::uint64_t>(put);
    offset += static_cast<std::uint64_t>(put);
  }
}

// Frames whose presentation comes this long after their decode time are found past the end.
constexpr std::int64_t kReorderLookahead = 90000;

// One sample of a scanned segment on the export's timeline. A sample's time is its decode time;
// it is presented at t + shown, where `shown` is its composition offset less that of its segment's
// first sample (a keyframe): so a keyframe is shown at its time, and with B-frames the others in
// display order after it.
struct Candidate {
  std::uint32_t segment;  // index into the scanned segments
  std::uint32_t size;
  std::uint32_t natural;  // its duration inside its segment
  bool keyframe;
  std::int64_t shown;
  std::uint64_t offset;  // in its file
  std::int64_t t;        // ticks from the requested start
  std::int64_t presented() const { return t + shown; }
};

struct Scanned {
  std::string path;
  FileIdentity identity;
  fmp4::TrackInfo track;
  std::size_t entry;  // index into the distinct sample entries
};

std::string wall(std::int64_t us) { return std::to_string(us) + " us"; }

}  // namespace

ExportPlan::ExportPlan(const std::vector<ExportSegment>& segments, std::int64_t start_wall_us,
                       std::int64_t end_wall_us) {
  std::int64_t span_us = 0;
  if (end_wall_us <= start_wall_us)
    throw MuxError("export range is empty: end " + wall(end_wall_us) + " is not after start " +
                   wall(start_wall_us));
  if (__builtin_sub_overflow(end_wall_us, start_wall_us, &span_us) || span_us > kMaxSpanUs)
    throw MuxError("export range too long");
  const std::int64_t end_ticks = us_to_ticks(span_us);

  // Every sample of every segment that may reach into the range, with its time.
  std::vector<Scanned> scanned;
  std::vector<std::size_t> entries;  // distinct sample entries: the first segment that has each
  std::vector<Candidate> all;
  bool have_prev = false;
  std::int64_t prev_t = 0, prev_end = 0;
  for (const ExportSegment& seg : segments) {
    // Segments only ever move later, so one starting at or after the end cannot contribute.
    if (seg.start_wall_us >= end_wall_us) continue;
    std::int64_t rel_us = 0;
    if (__builtin_sub_overflow(seg.start_wall_us, start_wall_us, &rel_us) || rel_us < -kMaxSpanUs)
      throw MuxError("segment " + seg.path + ": start " + wall(seg.start_wall_us) +
                     " is too far from the export range");
    ScannedFile file = scan_segment_file(seg.path, true);
    if (file.scan.samples.empty()) continue;  // nothing recorded in it yet
    const auto index = static_cast<std::uint32_t>(scanned.size());
    scanned.push_back({seg.path, file.identity, std::move(file.scan.track), 0});
    Scanned& s = scanned.back();
    s.entry = entries.size();
    for (std::size_t e = 0; e < entries.size(); ++e)
      if (scanned[entries[e]].track.sample_entry == s.track.sample_entry) s.entry = e;
    if (s.entry == entries.size()) entries.push_back(index);

    std::int64_t offset = us_to_ticks(rel_us);
    if (have_prev) offset = std::max(offset, prev_end);  // overlapping: moved after the previous
    const std::int64_t delay = file.scan.samples.front().composition_offset_90k;
    for (const fmp4::SegmentSample& x : file.scan.samples) {
      std::int64_t t = offset + x.dts_90k;
      if (have_prev && t <= prev_t) t = prev_t + 1;
      all.push_back({index, x.size, x.duration_90k, x.keyframe, x.composition_offset_90k - delay,
                     x.offset, t});
      prev_t = t;
      have_prev = true;
    }
    prev_end = prev_t + std::max<std::int64_t>(all.back().natural, 1);
    // Ended before the start: none of it can be exported (a segment starts with its keyframe), so
    // its samples need not be kept; its end still keeps later segments from going back in time.
    if (prev_end <= 0) all.clear();
  }

  // The first sample: the keyframe at or before the start when footage covers the start, else the
  // first keyframe after it.
  const auto after_start = std::upper_bound(all.begin(), all.end(), std::int64_t(0),
                                            [](std::int64_t v, const Candidate& c) { return v < c.t; });
  const auto covering = after_start - all.begin() - 1;
  std::ptrdiff_t first = -1;
  std::int64_t play_start = 0;
  if (covering >= 0 && all[covering].t + std::max<std::int64_t>(all[covering].natural, 1) > 0) {
    for (std::ptrdiff_t i = covering; i >= 0 && first < 0; --i)
      if (all[i].keyframe) first = i;
  }
  if (first < 0) {
    for (std::size_t i = static_cast<std::size_t>(covering + 1); i < all.size() && first < 0; ++i)
      if (all[i].keyframe) first = static_cast<std::ptrdiff_t>(i);
    if (first >= 0) play_start = std::max<std::int64_t>(all[first].t, 0);
  }
  if (first < 0 || play_start >= end_ticks)
    throw NoFootageError("no recorded video between " + wall(start_wall_us) + " and " +
                         wall(end_wall_us) + " in the " + std::to_string(segments.size()) +
                         " segments given");
  const auto before_end = std::lower_bound(all.begin(), all.end(), end_ticks,
                                           [](const Candidate& c, std::int64_t v) { return c.t < v; });
  std::size_t last = static_cast<std::size_t>(before_end - all.begin() - 1);
  // With B-frames, a frame decoded after the end may still be shown before it.
  for (std::size_t i = last + 1; i < all.size() && all[i].t < end_ticks + kReorderLookahead; ++i)
    if (all[i].presented() < end_ticks && all[i].segment == all[last].segment) last = i;
  const auto begin = static_cast<std::size_t>(first);
  std::int64_t play_end = play_start, earliest = 0;
  for (std::size_t i = begin; i <= last; ++i) {
    play_end = std::max(play_end, all[i].presented() + std::max<std::int64_t>(all[i].natural, 1));
    earliest = std::min(earliest, all[i].shown);
  }
  play_end = std::min(play_end, end_ticks);
  // Composition offsets in the output: never negative, the keyframes' the same everywhere.
  const std::int64_t delay = -earliest;

  // Sample tables, chunks (one per segment) and slices (runs of contiguous file bytes).
  mp4::Movie movie;
  movie.codec = scanned[all[begin].segment].track.codec;
  std::vector<std::int32_t> source_of(scanned.size(), -1);
  std::vector<std::uint32_t> description_of(entries.size(), 0);
  std::uint64_t payload = 0;
  for (std::size_t i = begin; i <= last; ++i) {
    const Candidate& c = all[i];
    std::int64_t duration = c.natural;
    if (i < last)
      duration = all[i + 1].t - c.t;
    else if (c.t < play_end)
      duration = std::min<std::int64_t>(duration, play_end - c.t);
    duration = std::max<std::int64_t>(duration, 1);
    if (duration > std::int64_t(std::numeric_limits<std::uint32_t>::max()))
      throw MuxError("a gap of more than 13 hours between segments does not fit one MP4 sample "
                     "duration: export the parts separately");
    const std::int64_t composition = c.shown + delay;
    if (composition > std::numeric_limits<std::int32_t>::max())
      throw MuxError("composition offsets too far apart to share one exported track");
    movie.samples.push_back({c.size, static_cast<std::uint32_t>(duration),
                             static_cast<std::int32_t>(composition), c.keyframe});
    if (source_of[c.segment] < 0) {
      const Scanned& s = scanned[c.segment];
      if (s.track.codec != movie.codec)
        throw MuxError(std::string("segments of different codecs (") + codec_name(movie.codec) +
                       " and " + codec_name(s.track.codec) +
                       ") cannot share one exported track: export them separately");
      source_of[c.segment] = static_cast<std::int32_t>(sources_.size());
      sources_.push_back({s.path, s.identity});
      if (description_of[s.entry] == 0) {
        movie.sample_entries.push_back(scanned[entries[s.entry]].track.sample_entry);
        description_of[s.entry] = static_cast<std::uint32_t>(movie.sample_entries.size());
      }
      movie.chunks.push_back({0, description_of[s.entry], payload});
    }
    const std::int32_t source = source_of[c.segment];
    movie.chunks.back().samples += 1;
    if (c.size > 0) {
      ExportSlice* prev = slices_.empty() ? nullptr : &slices_.back();
      if (prev && prev->source == source && prev->source_offset + prev->size == c.offset)
        prev->size += c.size;
      else
        slices_.push_back({payload, c.size, source, c.offset});
    }
    payload += c.size;
  }
  movie.payload_size = payload;
  const fmp4::TrackInfo& head_track = scanned[all[begin].segment].track;
  movie.display_width = head_track.display_width;
  movie.display_height = head_track.display_height;
  const std::int64_t lead_in = play_start - all[begin].t;
  // The keyframe is shown at composition time `delay`; playback starts `lead_in` after it.
  movie.edit_media_time = static_cast<std::uint64_t>(lead_in + delay);
  movie.edit_duration = static_cast<std::uint64_t>(play_end - play_start);

  header_ = mp4::make_progressive_header(movie);
  for (ExportSlice& s : slices_) s.offset += header_.size();
  slices_.insert(slices_.begin(), ExportSlice{0, header_.size(), -1, 0});
  size_ = header_.size() + payload;

  codec_ = movie.codec;
  width_ = head_track.width;
  height_ = head_track.height;
  start_wall_us_ = start_wall_us + ticks_to_us(play_start);
  end_wall_us_ = start_wall_us + ticks_to_us(play_end);
  first_sample_wall_us_ = start_wall_us + ticks_to_us(all[begin].t);
  lead_in_90k_ = lead_in;
  duration_90k_ = play_end - play_start;
  frames_ = last - begin + 1;
  sample_descriptions_ = movie.sample_entries.size();
}

UniqueFd ExportPlan::open_source(std::size_t i) const {
  const Source& s = sources_[i];
  UniqueFd fd = open_for_reading(s.path);
  if (identity_of(fd.get(), s.path) != s.identity)
    throw IoError(s.path + " was replaced since the export was planned", ESTALE);
  return fd;
}

std::size_t ExportPlan::read(std::uint64_t offset, std::span<std::uint8_t> out) const {
  if (offset >= size_) return 0;
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - offset));
  auto it = std::upper_bound(slices_.begin(), slices_.end(), offset,
                             [](std::uint64_t v, const ExportSlice& s) { return v < s.offset; });
  std::size_t index = static_cast<std::size_t>(it - slices_.begin()) - 1;
  UniqueFd fd;
  std::int32_t open = -1;
  std::size_t done = 0;
  while (done < n) {
    const ExportSlice& s = slices_[index++];
    const std::uint64_t within = offset + done - s.offset;
    const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(s.size - within, n - done));
    if (s.source < 0) {
      std::memcpy(out.data() + done, header_.data() + within, k);
    } else {
      if (open != s.source) {
        fd = open_source(static_cast<std::size_t>(s.source));
        open = s.source;
      }
      pread_exact(fd.get(), out.data() + done, k, s.source_offset + within,
                  sources_[static_cast<std::size_t>(s.source)].path);
    }
    done += k;
  }
  return n;
}

ExportWriter::ExportWriter(const ExportPlan& plan, const std::string& path)
    : plan_(plan), path_(path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail("cannot create " + path, errno);
  fd_ = UniqueFd(fd);
}

ExportWriter::~ExportWriter() {
  if (finished_) return;
  fd_.reset();
  ::unlink(path_.c_str());  // a partial export is worse than none
}

std::uint64_t ExportWriter::write_some(std::uint64_t max_bytes) {
  const std::vector<ExportSlice>& slices = plan_.slices();
  std::uint64_t total = 0;
  while (total < max_bytes && written_ < plan_.size()) {
    const ExportSlice& s = slices[slice_];
    const std::uint64_t within = written_ - s.offset;
    const std::uint64_t k = std::min(s.size - within, max_bytes - total);
    if (s.source < 0)
      pwrite_all(fd_.get(), plan_.header().data() + within, k, written_, path_);
    else
      copy_from_file(s, within, k);
    written_ += k;
    total += k;
    if (written_ == s.offset + s.size) ++slice_;
  }
  return total;
}

std::uint64_t ExportWriter::copy_from_file(const ExportSlice& s, std::uint64_t from, std::uint64_t n) {
  if (open_source_ != s.source) {
    source_fd_ = plan_.open_source(static_cast<std::size_t>(s.source));
    open_source_ = s.source;
  }
  const std::string& name = plan_.source_path(static_cast<std::size_t>(s.source));
  std::uint64_t src = s.source_offset + from, dst = written_, left = n;
  while (left > 0) {
    if (copy_range_) {
      // In the kernel: no copy through user space, and a reflink where the filesystem has them.
      auto in = static_cast<loff_t>(src), out = static_cast<loff_t>(dst);
      const ssize_t r = ::copy_file_range(source_fd_.get(), &in, fd_.get(), &out,
                                          static_cast<std::size_t>(std::min<std::uint64_t>(left, 1u << 30)), 0);
      if (r < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        if (err == EXDEV || err == ENOSYS || err == EOPNOTSUPP || err == EINVAL || err == EPERM) {
          copy_range_ = false;  // not here: copy through a buffer instead
          continue;
        }
        fail("cannot copy " + name + " to " + path_, err);
      }
      if (r == 0)
        throw IoError(name + " ends at byte " + std::to_string(src) + ", earlier than planned "
                      "(was it truncated?)", EIO);
      src += static_cast<std::uint64_t>(r);
      dst += static_cast<std::uint64_t>(r);
      left -= static_cast<std::uint64_t>(r);
    } else {
      if (buffer_.empty()) buffer_.resize(kCopyBuffer);
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer_.size()));
      pread_exact(source_fd_.get(), buffer_.data(), k, src, name);
      pwrite_all(fd_.get(), buffer_.data(), k, dst, path_);
      src += k;
      dst += k;
      left -= k;
    }
  }
  return n;
}

void ExportWriter::finish() {
  if (!done()) throw MuxError("export: finish() before every byte was written");
  if (::fsync(fd_.get()) != 0) fail("cannot sync " + path_, errno);
  if (::close(fd_.release()) != 0) fail("cannot close " + path_, errno);
  finished_ = true;
}

}  // namespace vms
