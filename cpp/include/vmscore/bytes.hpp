// Byte spans and a big-endian byte writer used by every wire-format encoder of the core.
// Pure code: no I/O, no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace vms {

using ByteSpan = std::span<const std::uint8_t>;
using Bytes = std::vector<std::uint8_t>;

inline ByteSpan as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Appends big-endian integers and raw bytes to a caller-owned vector. Box sizes are patched in
// place once known (ISO/IEC 14496-12 boxes start with their 32-bit size).
class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) : out_(out) {}

  std::size_t size() const { return out_.size(); }
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    std::uint8_t b[2] = {std::uint8_t(v >> 8), std::uint8_t(v)};
    raw(b, 2);
  }
  void u24(std::uint32_t v) {
    std::uint8_t b[3] = {std::uint8_t(v >> 16), std::uint8_t(v >> 8), std::uint8_t(v)};
    raw(b, 3);
  }
  void u32(std::uint32_t v) {
    std::uint8_t b[4] = {std::uint8_t(v >> 24), std::uint8_t(v >> 16), std::uint8_t(v >> 8),
                         std::uint8_t(v)};
    raw(b, 4);
  }
  void u64(std::uint64_t v) {
    u32(std::uint32_t(v >> 32));
    u32(std::uint32_t(v));
  }
  void raw(const void* p, std::size_t n) {
    // resize + memcpy rather than insert: GCC 12 at -O3 reports false -Warray-bounds on small
    // vector inserts.
    if (n == 0) return;
    const std::size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }
  void raw(ByteSpan s) { raw(s.data(), s.size()); }
  void zeros(std::size_t n) { out_.insert(out_.end(), n, 0); }
  void fourcc(const char (&cc)[5]) { raw(cc, 4); }

  // Starts a box: writes a placeholder size and the type; returns the offset to pass to end_box.
  std::size_t begin_box(const char (&type)[5]) {
    std::size_t at = out_.size();
    u32(0);
    fourcc(type);
    return at;
  }
  std::size_t begin_full_box(const char (&type)[5], std::uint8_t version, std::uint32_t flags) {
    std::size_t at = begin_box(type);
    u8(version);
    u24(flags);
    return at;
  }
  void end_box(std::size_t at) { patch_u32(at, std::uint32_t(out_.size() - at)); }
  void patch_u32(std::size_t at, std::uint32_t v) {
    out_[at] = std::uint8_t(v >> 24);
    out_[at + 1] = std::uint8_t(v >> 16);
    out_[at + 2] = std::uint8_t(v >> 8);
    out_[at + 3] = std::uint8_t(v);
  }

 private:
  Bytes& out_;
};

inline std::uint32_t load_be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}
inline std::uint16_t load_be16(const std::uint8_t* p) {
  return std::uint16_t((p[0] << 8) | p[1]);
}

}  // namespace vms
