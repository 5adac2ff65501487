// Length-prefixed (AVCC / HVCC sample) splitting with length sizes 1, 2 and 4, checked against a
// straightforward reference walk: the same units, and a rejection exactly when a length field is
// truncated or a length runs past the end. Invalid length sizes are rejected by every entry point.
// length_prefixed_to_annexb must produce start code + unit for each unit, and when no unit could be
// mistaken for Annex-B framing (no start code inside, no trailing zero byte) the trip back to the
// same length size restores the input minus its empty units.
//
// Input: byte 0 selects the length size (bits 0-1: 0 -> 1, 1 -> 2, 2 -> 4, 3 -> bits 2-7 as the
// size, mostly invalid); the rest is the data.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"

using namespace vms;
using vms::fuzz::same_bytes;

namespace {

// Units of `data`, or nothing when the framing is broken.
std::optional<std::vector<NalRange>> reference_split(ByteSpan data, std::size_t ls) {
  std::vector<NalRange> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < ls) return std::nullopt;
    std::uint64_t len = 0;
    for (std::size_t i = 0; i < ls; ++i) len = (len << 8) | data[pos + i];
    pos += ls;
    if (len > data.size() - pos) return std::nullopt;
    if (len > 0) out.push_back({pos, static_cast<std::size_t>(len)});
    pos += static_cast<std::size_t>(len);
  }
  return out;
}

bool annexb_safe(ByteSpan unit) {
  if (unit.back() == 0) return false;
  for (std::size_t i = 0; i + 2 < unit.size(); ++i)
    if (unit[i] == 0 && unit[i + 1] == 0 && unit[i + 2] == 1) return false;
  return true;
}

template <typename Fn>
bool throws_bitstream_error(Fn&& fn) {
  try {
    fn();
  } catch (const BitstreamError&) {
    return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t sel = data[0];
  static constexpr int kSizes[3] = {1, 2, 4};
  const int length_size = (sel & 3) < 3 ? kSizes[sel & 3] : (sel >> 2);
  const ByteSpan in(data + 1, size - 1);
  const bool valid_size = length_size == 1 || length_size == 2 || length_size == 4;

  std::vector<NalRange> units;
  if (!valid_size) {
    Bytes out;
    FUZZ_CHECK(throws_bitstream_error([&] { split_length_prefixed(in, length_size, units); }));
    FUZZ_CHECK(throws_bitstream_error([&] { length_prefixed_to_annexb(in, length_size, out); }));
    FUZZ_CHECK(throws_bitstream_error([&] { annexb_to_length_prefixed(in, out, length_size); }));
    return 0;
  }

  const auto want = reference_split(in, static_cast<std::size_t>(length_size));
  const bool rejected = throws_bitstream_error([&] { split_length_prefixed(in, length_size, units); });
  FUZZ_CHECK(rejected == !want.has_value());
  Bytes annexb{0x5A};
  FUZZ_CHECK(throws_bitstream_error([&] { length_prefixed_to_annexb(in, length_size, annexb); }) ==
             rejected);
  if (rejected) return 0;

  FUZZ_CHECK(units.size() == want->size());
  std::size_t expect = 1;  // after the byte that was already in `annexb`
  bool all_safe = true;
  for (std::size_t i = 0; i < units.size(); ++i) {
    FUZZ_CHECK(units[i].offset == (*want)[i].offset && units[i].size == (*want)[i].size);
    const ByteSpan unit = in.subspan(units[i].offset, units[i].size);
    FUZZ_CHECK(annexb.size() >= expect + 4 + unit.size());
    FUZZ_CHECK(annexb[expect] == 0 && annexb[expect + 1] == 0 && annexb[expect + 2] == 0 &&
               annexb[expect + 3] == 1);
    FUZZ_CHECK(same_bytes(ByteSpan(annexb).subspan(expect + 4, unit.size()), unit));
    expect += 4 + unit.size();
    all_safe &= annexb_safe(unit);
  }
  FUZZ_CHECK(annexb.size() == expect && annexb.front() == 0x5A);
  if (!all_safe) return 0;

  Bytes again;
  fuzz::must_not_throw("annexb_to_length_prefixed of length_prefixed_to_annexb output", [&] {
    annexb_to_length_prefixed(ByteSpan(annexb).subspan(1), again, length_size);
  });
  Bytes expected;
  for (const NalRange& u : units) {
    for (int i = length_size; i-- > 0;) expected.push_back(static_cast<std::uint8_t>(u.size >> (8 * i)));
    expected.insert(expected.end(), in.begin() + static_cast<std::ptrdiff_t>(u.offset),
                    in.begin() + static_cast<std::ptrdiff_t>(u.offset + u.size));
  }
  FUZZ_CHECK(again == expected);
  return 0;
}
