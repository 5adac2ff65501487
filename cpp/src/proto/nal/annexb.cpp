// Annex-B (ITU-T H.264 / H.265 Annex B byte stream) and length-prefixed (ISO/IEC 14496-15 sample)
// framing, both directions. Pure code; used per access unit on the ingest and recording paths, so
// scanning uses memchr (vectorised in libc) and conversions only append to a caller-owned buffer.
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <string>

#include "vmscore/error.hpp"
#include "vmscore/nal.hpp"

namespace vms {

std::size_t find_start_code(ByteSpan data, std::size_t from) {
  const std::uint8_t* p = data.data();
  const std::size_t n = data.size();
  std::size_t i = from;
#if defined(__SSE2__)
  // SSE2 is part of the x86-64 baseline, so no dispatch is needed: 16 candidate positions per
  // step, testing bytes i, i+1 and i+2 at once. Compressed slice data has few zero pairs, so this
  // runs near memory speed; memchr for the 01 byte stops every ~256 bytes instead.
  const __m128i zero = _mm_setzero_si128();
  const __m128i one = _mm_set1_epi8(1);
  while (i + 18 <= n) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 2));
    const __m128i hit = _mm_and_si128(_mm_and_si128(_mm_cmpeq_epi8(a, zero), _mm_cmpeq_epi8(b, zero)),
                                      _mm_cmpeq_epi8(c, one));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    i += 16;
  }
#endif
  for (; i + 2 < n; ++i)
    if (p[i + 2] == 1 && p[i + 1] == 0 && p[i] == 0) return i;
  return n;
}

namespace {

// Calls fn(offset, size) for each non-empty unit between start codes. Zero bytes before a start
// code (trailing_zero_8bits, or the first byte of a 4-byte start code) belong to no unit.
template <typename Fn>
void for_each_annexb_unit(ByteSpan data, Fn&& fn) {
  const std::size_t n = data.size();
  std::size_t lead = 0;
  while (lead < n && data[lead] == 0) ++lead;
  if (lead == n) return;  // empty, or only zero bytes: no units
  if (lead < 2 || data[lead] != 1)
    throw BitstreamError("Annex-B: data does not begin with a start code (00 00 01)");
  std::size_t pos = lead + 1;  // first byte after the start code
  while (true) {
    const std::size_t sc = find_start_code(data, pos);
    std::size_t end = sc;
    while (end > pos && data[end - 1] == 0) --end;
    if (end > pos) fn(pos, end - pos);
    if (sc >= n) return;
    pos = sc + 3;
  }
}

}  // namespace

void split_annexb(ByteSpan data, std::vector<NalRange>& out) {
  for_each_annexb_unit(data, [&](std::size_t pos, std::size_t len) { out.push_back({pos, len}); });
}

void split_length_prefixed(ByteSpan data, int length_size, std::vector<NalRange>& out) {
  if (length_size != 1 && length_size != 2 && length_size != 4)
    throw BitstreamError("length-prefixed: length size must be 1, 2 or 4, not " +
                         std::to_string(length_size));
  const std::size_t ls = static_cast<std::size_t>(length_size);
  std::size_t pos = 0;
  const std::size_t n = data.size();
  while (pos < n) {
    if (n - pos < ls)
      throw BitstreamError("length-prefixed: truncated length field at byte " + std::to_string(pos));
    std::size_t len = 0;
    for (std::size_t i = 0; i < ls; ++i) len = (len << 8) | data[pos + i];
    pos += ls;
    if (len > n - pos)
      throw BitstreamError("length-prefixed: unit of " + std::to_string(len) + " bytes at byte " +
                           std::to_string(pos - ls) + " runs past the end (" +
                           std::to_string(n - pos) + " bytes left)");
    if (len > 0) out.push_back({pos, len});
    pos += len;
  }
}

void annexb_to_length_prefixed(ByteSpan data, Bytes& out, int length_size) {
  if (length_size != 1 && length_size != 2 && length_size != 4)
    throw BitstreamError("length-prefixed: length size must be 1, 2 or 4");
  const std::size_t ls = static_cast<std::size_t>(length_size);
  const std::uint64_t max_len = (std::uint64_t(1) << (8 * ls)) - 1;
  out.reserve(out.size() + data.size() + 8);
  // Units are written straight into `out` as they are found: one pass, one copy.
  for_each_annexb_unit(data, [&](std::size_t pos, std::size_t len) {
    if (len > max_len)
      throw BitstreamError("length-prefixed: unit of " + std::to_string(len) +
                           " bytes does not fit a " + std::to_string(length_size) + "-byte length");
    for (std::size_t i = ls; i-- > 0;) out.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
    const auto* p = data.data() + pos;
    out.insert(out.end(), p, p + len);
  });
}

void length_prefixed_to_annexb(ByteSpan data, int length_size, Bytes& out) {
  thread_local std::vector<NalRange> units;
  units.clear();
  split_length_prefixed(data, length_size, units);
  std::size_t total = 0;
  for (const auto& u : units) total += 4 + u.size;
  out.reserve(out.size() + total);
  static constexpr std::uint8_t kStartCode[4] = {0, 0, 0, 1};
  for (const auto& u : units) {
    out.insert(out.end(), kStartCode, kStartCode + 4);
    const auto* p = data.data() + u.offset;
    out.insert(out.end(), p, p + u.size);
  }
}

void unescape_rbsp(ByteSpan nal, Bytes& out) {
  out.clear();
  out.reserve(nal.size());
  int zeros = 0;
  for (std::uint8_t b : nal) {
    // 00 00 03 is an emulation-prevention sequence: the 03 is not part of the RBSP.
    if (zeros >= 2 && b == 3) {
      zeros = 0;
      continue;
    }
    out.push_back(b);
    zeros = b == 0 ? zeros + 1 : 0;
  }
}

}  // namespace vms
