// The fMP4 reader and segment scanner fed fuzzed files, and the progressive MP4 header built from
// whatever the scanner accepted (what export does with it).
//
// Input format (make_corpus.py writes seeds in it): byte 0, config: bit 0 put the init segment of a
// 64x64 H.264 stream (common.hpp's parameter sets) in front of the rest, so mutations reach the
// fragments; bit 1 scan with the per-sample table. The rest is the file (or what follows the init
// segment). The rest is also handed to parse_moof as one moof box.
//
// A scan either throws BitstreamError (only for the init segment) or returns a result whose
// fragments lie in order inside [init, valid_end), whose problem is set exactly when valid_end is not
// the end of the file, and which a scan of the file cut at valid_end reproduces with no problem.
#include <cstddef>
#include <cstdint>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/fmp4_reader.hpp"
#include "vmscore/mp4.hpp"

using namespace vms;

namespace {

bool same_fragments(const fmp4::SegmentScan& a, const fmp4::SegmentScan& b) {
  if (a.fragments.size() != b.fragments.size()) return false;
  for (std::size_t i = 0; i < a.fragments.size(); ++i) {
    const fmp4::FragmentInfo& x = a.fragments[i];
    const fmp4::FragmentInfo& y = b.fragments[i];
    if (x.offset != y.offset || x.size != y.size || x.base_dts_90k != y.base_dts_90k ||
        x.duration_90k != y.duration_90k || x.samples != y.samples || x.sequence != y.sequence ||
        x.starts_with_keyframe != y.starts_with_keyframe)
      return false;
  }
  return true;
}

void check_scan(ByteSpan file, const fmp4::SegmentScan& scan, bool with_samples) {
  FUZZ_CHECK(scan.file_size == file.size());
  FUZZ_CHECK(scan.init_size > 0 && scan.init_size <= scan.valid_end && scan.valid_end <= file.size());
  FUZZ_CHECK(scan.problem.empty() == (scan.valid_end == file.size()));
  FUZZ_CHECK(scan.track.timescale == fmp4::kTimescale);
  FUZZ_CHECK(!scan.track.sample_entry.empty() && !scan.track.parameter_sets.sps.empty());
  std::uint64_t at = scan.init_size, samples = 0;
  std::int64_t dts_end = 0;
  for (const fmp4::FragmentInfo& f : scan.fragments) {
    FUZZ_CHECK(f.offset >= at && f.size <= scan.valid_end - f.offset);
    FUZZ_CHECK(f.samples >= 1 && f.base_dts_90k >= dts_end && f.duration_90k >= 0);
    at = f.offset + f.size;
    dts_end = f.base_dts_90k + f.duration_90k;
    samples += f.samples;
  }
  FUZZ_CHECK(scan.samples.size() == (with_samples ? samples : 0));
  std::size_t k = 0;
  for (const fmp4::FragmentInfo& f : scan.fragments) {
    for (std::uint32_t i = 0; with_samples && i < f.samples; ++i, ++k) {
      const fmp4::SegmentSample& s = scan.samples[k];
      FUZZ_CHECK(s.offset > f.offset && s.size <= f.offset + f.size - s.offset);
    }
  }

  // Trimming to valid_end (what recovery does) leaves a clean file with the same fragments.
  fmp4::MemorySource trimmed(file.first(static_cast<std::size_t>(scan.valid_end)));
  fmp4::SegmentScan again;
  fuzz::must_not_throw("rescan of the trimmed file", [&] { again = fmp4::scan_segment(trimmed, false); });
  FUZZ_CHECK(again.problem.empty() && again.valid_end == scan.valid_end);
  FUZZ_CHECK(same_fragments(scan, again) && again.metadata == scan.metadata);
}

// The header export would write for these samples (one chunk per fragment): it must be accepted
// and be ftyp, moov and an mdat header.
void check_progressive_header(const fmp4::SegmentScan& scan) {
  if (scan.samples.empty()) return;
  mp4::Movie movie;
  movie.codec = scan.track.codec;
  movie.sample_entries.push_back(scan.track.sample_entry);
  std::size_t k = 0;
  for (const fmp4::FragmentInfo& f : scan.fragments) {
    movie.chunks.push_back({f.samples, 1, movie.payload_size});
    for (std::uint32_t i = 0; i < f.samples; ++i, ++k) {
      const fmp4::SegmentSample& s = scan.samples[k];
      movie.samples.push_back({s.size, s.duration_90k == 0 ? 1 : s.duration_90k,
                               s.composition_offset_90k, s.keyframe});
      movie.payload_size += s.size;
      movie.edit_duration += s.duration_90k;
    }
  }
  Bytes header;
  fuzz::must_not_throw("progressive header", [&] { header = mp4::make_progressive_header(movie); });
  const auto ftyp = fmp4::read_box_header(header);
  FUZZ_CHECK(ftyp && ftyp->type == fmp4::fourcc("ftyp"));
  const ByteSpan rest = ByteSpan(header).subspan(static_cast<std::size_t>(ftyp->size));
  const auto moov = fmp4::read_box_header(rest);
  FUZZ_CHECK(moov && moov->type == fmp4::fourcc("moov") && moov->size <= rest.size());
  fuzz::walk_boxes(rest.subspan(8, static_cast<std::size_t>(moov->size) - 8));
  const auto mdat = fmp4::read_box_header(rest.subspan(static_cast<std::size_t>(moov->size)));
  FUZZ_CHECK(mdat && mdat->type == fmp4::fourcc("mdat"));
  FUZZ_CHECK(moov->size + mdat->header_size == rest.size());
  FUZZ_CHECK(mdat->size == mdat->header_size + movie.payload_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t config = in.u8();
  const ByteSpan rest = in.rest();
  const bool with_samples = (config & 0x02) != 0;

  Bytes file;
  if (config & 0x01) {
    static const Bytes init = fmp4::make_init_segment(fuzz::seed_parameter_sets(Codec::H264));
    file = init;
  }
  file.insert(file.end(), rest.begin(), rest.end());

  fmp4::MemorySource source(file);
  try {
    const fmp4::SegmentScan scan = fmp4::scan_segment(source, with_samples);
    check_scan(file, scan, with_samples);
    check_progressive_header(scan);
  } catch (const BitstreamError&) {
    // Only the init segment may be refused: with a valid one in front, nothing after it throws.
    FUZZ_CHECK(!(config & 0x01));
  }

  try {
    // As if its mdat payload were the moof's own bytes.
    const fmp4::Fragment f = fmp4::parse_moof(rest, 0, fmp4::TrackDefaults{}, 0, rest.size());
    FUZZ_CHECK(!f.samples.empty() && f.samples.size() <= rest.size());
    FUZZ_CHECK(f.data_begin <= f.data_end && f.data_end <= rest.size());
    for (const fmp4::FragmentSample& s : f.samples)
      FUZZ_CHECK(s.size > 0 && s.offset >= f.data_begin && s.offset + s.size <= f.data_end);
  } catch (const BitstreamError&) {
  }
  return 0;
}
