// The fMP4 muxer fed a fuzzed sequence of access units with fuzzed timestamps and keyframe flags.
// Every add() either takes the unit, drops it (before the first keyframe) or throws BitstreamError /
// MuxError, after which the muxer must go on working. At the end, after flush(), the output must be
// the init segment followed by well-formed fragments (common.hpp: check_init_segment,
// check_fragments) that agree with the muxer's statistics and last_fragment().
//
// Input format (make_corpus.py writes seeds in it):
//   byte 0, config: bit 0 H.265 (else H.264); bit 1 hand the real parameter sets of a 64x64 stream
//     to the constructor (else they must come in-band); bit 2 length-prefixed input (each payload
//     is converted from Annex-B when it parses as such, else fed as is); bit 3 add_detect instead
//     of the keyframe flag; bits 4-5 fragment duration {0, 1, 9000, 45000}; bits 6-7 default
//     duration {3000, 1, 0 (invalid), 0xFFFFFFFF}.
//   then records until the input ends:
//     ctrl: bit 0 keyframe; bit 1 prepend the real parameter sets (Annex-B) to the payload;
//       bit 2 flush after this unit; bits 3-4 dts: 0 += u16, 1 += s16, 2 += s32, 3 = s64;
//       bits 5-6 pts: 0 = dts, 1 = dts + s16, 2 = dts + s32, 3 = s64; bit 7 the length is u16
//       (else u8);
//     the dts field, the pts field, the length, then that many payload bytes (fewer at the end).
// Integers are big-endian; timestamp arithmetic wraps (two's complement), so any int64 can occur.
// Each access unit is a separate allocation, freed as soon as the muxer's contract allows (add()
// keeps a reference until the fragment holding the unit is complete).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/nal.hpp"

using namespace vms;

namespace {

std::int64_t wrapping_add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}

std::int64_t read_dts(fuzz::Input& in, unsigned mode, std::int64_t last) {
  switch (mode) {
    case 0: return wrapping_add(last, in.u16());
    case 1: return wrapping_add(last, static_cast<std::int16_t>(in.u16()));
    case 2: return wrapping_add(last, static_cast<std::int32_t>(in.u32()));
    default: return static_cast<std::int64_t>(in.u64());
  }
}

std::int64_t read_pts(fuzz::Input& in, unsigned mode, std::int64_t dts) {
  switch (mode) {
    case 0: return dts;
    case 1: return wrapping_add(dts, static_cast<std::int16_t>(in.u16()));
    case 2: return wrapping_add(dts, static_cast<std::int32_t>(in.u32()));
    default: return static_cast<std::int64_t>(in.u64());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t config = in.u8();
  const Codec codec = (config & 0x01) ? Codec::H265 : Codec::H264;
  const bool give_ps = (config & 0x02) != 0;
  const bool length_prefixed = (config & 0x04) != 0;
  const bool detect = (config & 0x08) != 0;
  static constexpr std::int64_t kFragmentDurations[4] = {0, 1, 9000, 45000};
  static constexpr std::uint32_t kDefaultDurations[4] = {3000, 1, 0, 0xFFFFFFFFu};

  fmp4::MuxerOptions opt;
  opt.fragment_duration_90k = kFragmentDurations[(config >> 4) & 3];
  opt.default_duration_90k = kDefaultDurations[(config >> 6) & 3];
  opt.input_annexb = !length_prefixed;

  ParameterSets ps;
  ps.codec = codec;
  if (give_ps) ps = fuzz::seed_parameter_sets(codec);
  const Bytes prefix = fuzz::seed_parameter_sets_annexb(codec);

  fmp4::BytesSink sink;
  try {
    fmp4::Muxer probe(ps, opt, sink);
  } catch (const MuxError&) {
    FUZZ_CHECK(opt.default_duration_90k == 0);
    FUZZ_CHECK(sink.data.empty());
    return 0;
  }
  FUZZ_CHECK(opt.default_duration_90k != 0);
  fmp4::Muxer muxer(ps, opt, sink);
  FUZZ_CHECK(muxer.has_init() == give_ps);

  // The muxer references the caller's bytes until the fragment holding them is complete. Each unit
  // gets its own allocation, released as soon as the contract allows, so a muxer that touched a
  // completed (or rejected) unit again would be caught by AddressSanitizer.
  std::deque<Bytes> held;
  auto release_completed = [&] {
    while (held.size() > static_cast<std::size_t>(muxer.pending_samples())) held.pop_front();
  };

  std::uint64_t taken = 0, dropped = 0;
  std::int64_t dts = 0;
  while (!in.empty()) {
    const std::uint8_t ctrl = in.u8();
    dts = read_dts(in, (ctrl >> 3) & 3, dts);
    const std::int64_t pts = read_pts(in, (ctrl >> 5) & 3, dts);
    const std::size_t len = (ctrl & 0x80) ? in.u16() : in.u8();
    const ByteSpan payload = in.take(len);

    Bytes au;
    if (ctrl & 0x02) au.insert(au.end(), prefix.begin(), prefix.end());
    au.insert(au.end(), payload.begin(), payload.end());
    if (length_prefixed) {
      Bytes converted;
      try {
        annexb_to_length_prefixed(au, converted, 4);
        au = std::move(converted);
      } catch (const BitstreamError&) {
      }
    }

    const std::uint64_t bytes_before = muxer.stats().bytes;
    const std::int64_t pending_before = muxer.pending_samples();
    try {
      const bool took =
          detect ? muxer.add_detect(au, pts, dts) : muxer.add(au, pts, dts, (ctrl & 1) != 0);
      (took ? taken : dropped) += 1;
      if (took) {
        FUZZ_CHECK(muxer.pending_samples() >= 1);
        held.push_back(std::move(au));  // moving keeps the allocation the muxer points into
      } else {
        FUZZ_CHECK(muxer.stats().bytes == bytes_before && muxer.pending_samples() == pending_before);
      }
    } catch (const BitstreamError&) {
      // A rejected unit leaves the muxer as it was.
      FUZZ_CHECK(muxer.stats().bytes == bytes_before && muxer.pending_samples() == pending_before);
    } catch (const MuxError&) {
      FUZZ_CHECK(muxer.stats().bytes == bytes_before && muxer.pending_samples() == pending_before);
    }
    FUZZ_CHECK(muxer.stats().bytes == sink.data.size());
    release_completed();
    if (ctrl & 0x04) {
      try {
        muxer.flush();
        FUZZ_CHECK(muxer.pending_samples() == 0);
      } catch (const MuxError&) {
      }
      release_completed();
    }
  }
  try {
    muxer.flush();
    FUZZ_CHECK(muxer.pending_samples() == 0);
  } catch (const MuxError&) {
  }

  const fmp4::MuxerStats& stats = muxer.stats();
  FUZZ_CHECK(stats.bytes == sink.data.size());
  FUZZ_CHECK(stats.dropped_before_keyframe == dropped);
  if (sink.data.empty()) {
    FUZZ_CHECK(taken == 0 && stats.fragments == 0);
    return 0;
  }
  FUZZ_CHECK(taken > 0 && muxer.has_init());
  const ByteSpan out = sink.data;
  const ByteSpan init = muxer.init_segment();
  FUZZ_CHECK(fuzz::same_bytes(out.subspan(0, init.size()), init));
  fuzz::check_init_segment(muxer.parameter_sets(), init);
  if (give_ps) FUZZ_CHECK(muxer.parameter_sets() == fuzz::seed_parameter_sets(codec));

  const fuzz::FragmentSummary frags = fuzz::check_fragments(codec, out.subspan(init.size()));
  FUZZ_CHECK(frags.fragments == stats.fragments);
  FUZZ_CHECK(frags.samples == stats.samples);
  FUZZ_CHECK(stats.samples + static_cast<std::uint64_t>(muxer.pending_samples()) == taken);
  if (stats.fragments > 0) {
    const fmp4::FragmentInfo& last = muxer.last_fragment();
    FUZZ_CHECK(last.sequence == stats.fragments);
    FUZZ_CHECK(last.offset + last.size == out.size());
    FUZZ_CHECK(last.duration_90k > 0 && last.samples > 0);
  }
  return 0;
}
