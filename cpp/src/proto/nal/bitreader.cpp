// Bit reader over an RBSP; see bitreader.hpp.
#include "proto/nal/bitreader.hpp"

#include <string>

#include "vmscore/error.hpp"

namespace vms {

void BitReader::fail(const char* detail) const {
  throw BitstreamError(std::string(what_) + ": " + detail + " (at bit " + std::to_string(pos_) +
                       " of " + std::to_string(data_.size() * 8) + ")");
}

std::uint32_t BitReader::u(int n) {
  if (n == 0) return 0;
  if (n < 0 || n > 32) fail("bad field width");
  if (bits_left() < static_cast<std::size_t>(n)) fail("truncated");
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    const std::size_t p = pos_ + static_cast<std::size_t>(i);
    v = (v << 1) | ((data_[p >> 3] >> (7 - (p & 7))) & 1u);
  }
  pos_ += static_cast<std::size_t>(n);
  return static_cast<std::uint32_t>(v);
}

std::uint32_t BitReader::ue() {
  int zeros = 0;
  while (true) {
    if (bits_left() == 0) fail("truncated exp-Golomb code");
    if (u(1)) break;
    // 32 leading zeros would encode a value of at least 2^32 - 1, beyond every syntax element.
    if (++zeros > 31) fail("exp-Golomb code too long");
  }
  if (zeros == 0) return 0;
  const std::uint64_t rest = u(zeros);
  return static_cast<std::uint32_t>((std::uint64_t(1) << zeros) - 1 + rest);
}

std::int32_t BitReader::se() {
  const std::uint32_t k = ue();
  // k = 2|v| - (v > 0): odd codes are positive.
  const std::int64_t mag = (std::int64_t(k) + 1) / 2;
  return static_cast<std::int32_t>((k & 1) ? mag : -mag);
}

void BitReader::skip(std::size_t nbits) {
  if (bits_left() < nbits) fail("truncated");
  pos_ += nbits;
}

bool BitReader::more_rbsp_data() const {
  if (bits_left() == 0) return false;
  // Find the last 1 bit in the data: it is the rbsp_stop_one_bit. More data exists if it lies
  // after the current position.
  std::size_t last = data_.size();
  while (last > 0 && data_[last - 1] == 0) --last;
  if (last == 0) return false;
  const std::uint8_t b = data_[last - 1];
  int tz = 0;
  while (((b >> tz) & 1) == 0) ++tz;
  const std::size_t stop_bit = (last - 1) * 8 + static_cast<std::size_t>(7 - tz);
  return pos_ < stop_bit;
}

}  // namespace vms
