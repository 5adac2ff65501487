// Small text helpers shared by the RTSP and SDP parsers: ASCII classes, trimming, bounded decimal
// and hex numbers. Internal to the core. Pure code, any thread.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace vms::text {

inline bool is_ws(char c) { return c == ' ' || c == '\t'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
inline char to_upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

// RFC 7230 §3.2.6 tchar: the characters of header names, methods and auth schemes.
inline bool is_tchar(char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// Control bytes other than horizontal tab (CR and LF included): never valid inside a line.
inline bool is_ctl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7F;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  return true;
}

inline bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_upper(c);
  return out;
}

// A decimal number of type T: digits only (no sign, no spaces), no overflow.
template <typename T>
std::optional<T> parse_uint(std::string_view s) {
  if (s.empty()) return std::nullopt;
  constexpr std::uint64_t kMax = std::numeric_limits<T>::max();
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    const auto d = std::uint64_t(c - '0');
    if (v > (kMax - d) / 10) return std::nullopt;  // checked before it can wrap
    v = v * 10 + d;
  }
  return static_cast<T>(v);
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 1..8 hex digits as a 32-bit number.
inline std::optional<std::uint32_t> parse_hex32(std::string_view s) {
  if (s.empty() || s.size() > 8) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    const int d = hex_value(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | std::uint32_t(d);
  }
  return v;
}

// Quotes a string for error messages: printable ASCII kept, the rest as \xNN, cut at `max` bytes,
// so a hostile peer cannot put control bytes or megabytes into a log line.
inline std::string quote_for_error(std::string_view s, std::size_t max = 40) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u < 0x7F && u != '\'' && u != '\\') {
      out += char(u);
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  out += s.size() > max ? "'..." : "'";
  return out;
}

}  // namespace vms::text
