// Annex-B splitting and the framing round trip: split_annexb on arbitrary bytes either throws
// BitstreamError or returns units that lie inside the buffer, in order, each right after a start
// code, never containing one, never empty and never ending in a zero byte. annexb_to_length_prefixed
// (length sizes 1, 2 and 4) then length_prefixed_to_annexb must give back exactly the same units,
// and each unit goes through both NAL header classifiers and RBSP unescaping.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"

using namespace vms;
using vms::fuzz::same_bytes;

namespace {

bool has_start_code(ByteSpan s) {
  for (std::size_t i = 0; i + 2 < s.size(); ++i)
    if (s[i] == 0 && s[i + 1] == 0 && s[i + 2] == 1) return true;
  return false;
}

void check_units(ByteSpan in, const std::vector<NalRange>& units) {
  std::size_t prev_end = 0;
  for (const NalRange& u : units) {
    FUZZ_CHECK(u.size > 0);
    FUZZ_CHECK(u.offset >= 3 && u.offset <= in.size() && u.size <= in.size() - u.offset);
    FUZZ_CHECK(u.offset - 3 >= prev_end);
    FUZZ_CHECK(in[u.offset - 3] == 0 && in[u.offset - 2] == 0 && in[u.offset - 1] == 1);
    const ByteSpan unit = in.subspan(u.offset, u.size);
    FUZZ_CHECK(unit.back() != 0);
    FUZZ_CHECK(!has_start_code(unit));
    prev_end = u.offset + u.size;
  }
}

void classify_and_unescape(ByteSpan unit) {
  for (Codec codec : {Codec::H264, Codec::H265}) {
    try {
      const NalHeader h = classify_nal(codec, unit);
      FUZZ_CHECK(h.type < (codec == Codec::H264 ? 32 : 64));
      FUZZ_CHECK(!h.is_first_slice || h.is_vcl);
    } catch (const BitstreamError&) {
    }
  }
  Bytes rbsp{0xEE};  // replaced, not appended to
  unescape_rbsp(unit, rbsp);
  FUZZ_CHECK(rbsp.size() <= unit.size());
}

void round_trip(ByteSpan in, const std::vector<NalRange>& units, int length_size) {
  const std::size_t max_len = length_size == 4 ? 0xFFFFFFFFu : (std::size_t(1) << (8 * length_size)) - 1;
  bool fits = true;
  for (const NalRange& u : units) fits &= u.size <= max_len;

  Bytes lp{0xAB};  // conversions append: the byte already there must survive
  try {
    annexb_to_length_prefixed(in, lp, length_size);
  } catch (const BitstreamError&) {
    FUZZ_CHECK(!fits);  // the only reason left to reject data that split cleanly
    return;
  }
  FUZZ_CHECK(fits);
  FUZZ_CHECK(lp.front() == 0xAB);
  const ByteSpan body = ByteSpan(lp).subspan(1);

  std::vector<NalRange> lp_units;
  Bytes back{0xCD};
  std::vector<NalRange> back_units;
  fuzz::must_not_throw("length-prefixed output of annexb_to_length_prefixed", [&] {
    split_length_prefixed(body, length_size, lp_units);
    length_prefixed_to_annexb(body, length_size, back);
    split_annexb(ByteSpan(back).subspan(1), back_units);
  });
  FUZZ_CHECK(back.front() == 0xCD);
  const ByteSpan annexb = ByteSpan(back).subspan(1);

  FUZZ_CHECK(lp_units.size() == units.size());
  FUZZ_CHECK(back_units.size() == units.size());
  std::size_t expect_lp = 0, expect_back = 0;
  for (std::size_t i = 0; i < units.size(); ++i) {
    const ByteSpan want = in.subspan(units[i].offset, units[i].size);
    FUZZ_CHECK(same_bytes(body.subspan(lp_units[i].offset, lp_units[i].size), want));
    FUZZ_CHECK(same_bytes(annexb.subspan(back_units[i].offset, back_units[i].size), want));
    // Output is exactly length + unit, and 4-byte start code + unit, back to back.
    FUZZ_CHECK(lp_units[i].offset == expect_lp + static_cast<std::size_t>(length_size));
    FUZZ_CHECK(back_units[i].offset == expect_back + 4);
    expect_lp = lp_units[i].offset + lp_units[i].size;
    expect_back = back_units[i].offset + back_units[i].size;
  }
  FUZZ_CHECK(body.size() == expect_lp);
  FUZZ_CHECK(annexb.size() == expect_back);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan in(data, size);
  std::vector<NalRange> units;
  try {
    split_annexb(in, units);
  } catch (const BitstreamError&) {
    // The conversion uses the same framing rules, so it must refuse the data too.
    Bytes lp;
    bool rejected = false;
    try {
      annexb_to_length_prefixed(in, lp, 4);
    } catch (const BitstreamError&) {
      rejected = true;
    }
    FUZZ_CHECK(rejected);
    return 0;
  }
  check_units(in, units);
  for (const NalRange& u : units) classify_and_unescape(in.subspan(u.offset, u.size));
  for (int length_size : {1, 2, 4}) round_trip(in, units, length_size);
  return 0;
}
