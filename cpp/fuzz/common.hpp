// Shared pieces of the libFuzzer targets: a check macro that aborts (so libFuzzer records the input),
// a cursor over the fuzz input, real parameter sets to build on, and structural checkers for what
// the core writes (avcC, hvcC, fMP4 init segments and fragments) so each target asserts that its
// output is well formed, not only that it did not crash.
//
// Expected failures are vms::BitstreamError and vms::MuxError (ParametersChangedError included);
// the targets catch exactly those. Anything else — another exception, a failed check, a sanitizer
// report — ends the run with the input saved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace vms::fuzz {

[[noreturn]] void check_failed(const char* file, int line, const char* condition);

#define FUZZ_CHECK(condition)                                                    \
  do {                                                                           \
    if (!(condition)) ::vms::fuzz::check_failed(__FILE__, __LINE__, #condition); \
  } while (0)

// Runs code that must not fail: it works on data the core produced itself or on input that an
// earlier call already accepted, so even an expected exception type is a finding here.
template <typename Fn>
void must_not_throw(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: unexpected exception: %s\n", what, e.what());
    std::abort();
  }
}

// Reads the fuzz input front to back. Reads past the end yield zeros / empty spans, so a target
// never has to guard its format against truncation.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data, size) {}
  explicit Input(ByteSpan data) : data_(data) {}

  bool empty() const { return pos_ >= data_.size(); }
  std::size_t remaining() const { return data_.size() - pos_; }
  std::uint8_t u8();
  std::uint16_t u16();  // big-endian
  std::uint32_t u32();
  std::uint64_t u64();
  ByteSpan take(std::size_t n);  // up to n bytes
  ByteSpan rest() { return take(remaining()); }

 private:
  ByteSpan data_;
  std::size_t pos_ = 0;
};

// VPS/SPS/PPS of a 64x64 libx264 (High) / libx265 (Main) encode.
ParameterSets seed_parameter_sets(Codec codec);
// The same units as an Annex-B prefix (4-byte start codes), to put in front of an access unit.
Bytes seed_parameter_sets_annexb(Codec codec);

// Byte equality of two spans.
bool same_bytes(ByteSpan a, ByteSpan b);

// The Annex-B units of `data` as owned byte strings (throws BitstreamError like split_annexb).
std::vector<Bytes> annexb_units(ByteSpan data);

// Invariants every successfully parsed SPS must satisfy.
void check_sps_info(Codec codec, const SpsInfo& s);
// The RFC 6381 string agrees with the parsed SPS.
void check_codec_string(Codec codec, const SpsInfo& s, std::string_view codec_string);
// avcC / hvcC: every field where ISO/IEC 14496-15 puts it, the units verbatim, nothing after them.
void check_decoder_config(const ParameterSets& ps, ByteSpan record);

// One ISO BMFF box: a 32-bit size of at least 8 that fits its parent, a four-character type.
struct Box {
  std::string_view type;
  ByteSpan body;  // after the 8-byte header
  ByteSpan all;   // header included
};
// Splits a buffer (a file or a box body) into the boxes that tile it exactly; aborts otherwise.
std::vector<Box> walk_boxes(ByteSpan data);

// ftyp + moov for `ps`: the box tree the muxer writes, with the decoder configuration record equal to
// make_avcc / make_hvcc of the same parameter sets.
void check_init_segment(const ParameterSets& ps, ByteSpan init);

struct FragmentSummary {
  std::uint64_t fragments = 0;
  std::uint64_t samples = 0;
};
// A run of moof + mdat pairs: sequence numbers counting from 1, tfdt increasing, trun sample count and
// entry sizes consistent, data_offset at the start of the mdat payload, sample sizes adding up to the
// payload, and every sample a tiling of 4-byte length-prefixed NAL units with no parameter set, AUD
// or filler left in it.
FragmentSummary check_fragments(Codec codec, ByteSpan data);

}  // namespace vms::fuzz
