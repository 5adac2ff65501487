// Bit reader over an RBSP (emulation-prevention bytes already removed), with the exp-Golomb codes of
// H.264 §9.1 / H.265 §9.2. Every read is bounds-checked and throws vms::BitstreamError past the end.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmscore/bytes.hpp"

namespace vms {

class BitReader {
 public:
  // `what` names the structure being parsed, for error messages ("H.264 SPS").
  BitReader(ByteSpan rbsp, const char* what) : data_(rbsp), what_(what) {}

  std::uint32_t u(int n);  // n in 0..32
  bool flag() { return u(1) != 0; }
  std::uint32_t ue();      // unsigned exp-Golomb, values up to 2^32 - 2
  std::int32_t se();       // signed exp-Golomb
  void skip(std::size_t nbits);
  std::size_t bits_left() const { return data_.size() * 8 - pos_; }
  std::size_t position() const { return pos_; }
  bool byte_aligned() const { return (pos_ & 7) == 0; }
  // True when there are bits before the rbsp_trailing_bits (H.264 §7.2 more_rbsp_data()).
  bool more_rbsp_data() const;
  [[noreturn]] void fail(const char* detail) const;

 private:
  ByteSpan data_;
  std::size_t pos_ = 0;
  const char* what_;
};

// ue(v) with a range check: values above `max` are malformed for the field.
inline std::uint32_t ue_max(BitReader& r, std::uint32_t max, const char* field) {
  std::uint32_t v = r.ue();
  if (v > max) r.fail(field);
  return v;
}

}  // namespace vms
