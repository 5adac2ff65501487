// Access-unit splitting of Annex-B streams, for H.264 and H.265 on every input. When
// split_access_units accepts the data, its ranges must be appended after what the vector already
// held, tile the buffer exactly (the first starts at 0, each begins where the previous ended, the
// last ends at the end), start at a start code, and agree with a walk of split_annexb +
// classify_nal + AccessUnitSplitter: the same number of access units, each NAL unit inside the
// access unit the splitter assigns it to, and is_keyframe set exactly when that unit holds a
// keyframe slice. When it rejects the data, splitting or classifying must have failed too.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"

using namespace vms;

namespace {

void run(Codec codec, ByteSpan in) {
  std::vector<AccessUnitRange> aus{{7, 7, true}};  // appended to, never touched
  bool rejected = false;
  try {
    split_access_units(codec, in, aus);
  } catch (const BitstreamError&) {
    rejected = true;
  }

  std::vector<NalRange> units;
  std::vector<NalHeader> headers;
  bool reference_rejected = false;
  try {
    split_annexb(in, units);
    for (const NalRange& u : units) headers.push_back(classify_nal(codec, in.subspan(u.offset, u.size)));
  } catch (const BitstreamError&) {
    reference_rejected = true;
  }
  FUZZ_CHECK(rejected == reference_rejected);
  FUZZ_CHECK(aus.front().offset == 7 && aus.front().size == 7 && aus.front().is_keyframe);
  if (rejected) return;

  if (units.empty()) {
    FUZZ_CHECK(aus.size() == 1);
    return;
  }
  FUZZ_CHECK(aus.size() >= 2);
  std::size_t expect = 0;
  for (std::size_t i = 1; i < aus.size(); ++i) {
    FUZZ_CHECK(aus[i].offset == expect && aus[i].size > 0);
    expect += aus[i].size;
    if (i > 1) {
      // Leading zero bytes, then a start code.
      std::size_t z = aus[i].offset;
      while (z < expect && in[z] == 0) ++z;
      FUZZ_CHECK(z - aus[i].offset >= 2 && z < expect && in[z] == 1);
    }
  }
  FUZZ_CHECK(expect == in.size());

  AccessUnitSplitter splitter(codec);
  std::size_t au = 1;
  std::vector<bool> keyframe(aus.size(), false);
  for (std::size_t k = 0; k < units.size(); ++k) {
    if (splitter.starts_new_au(headers[k])) ++au;
    FUZZ_CHECK(au < aus.size());
    const NalRange& u = units[k];
    FUZZ_CHECK(u.offset >= aus[au].offset && u.offset + u.size <= aus[au].offset + aus[au].size);
    if (headers[k].kind == NalKind::Keyframe) keyframe[au] = true;
  }
  FUZZ_CHECK(au == aus.size() - 1);
  for (std::size_t i = 1; i < aus.size(); ++i) FUZZ_CHECK(aus[i].is_keyframe == keyframe[i]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan in(data, size);
  run(Codec::H264, in);
  run(Codec::H265, in);
  return 0;
}
