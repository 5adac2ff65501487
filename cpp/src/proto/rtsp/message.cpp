// RTSP message framing (RFC 2326 §4, §6, §7 with RFC 7230 §3 header syntax) and interleaved
// binary data (RFC 2326 §10.12): the incremental parser for one TCP connection and the formatters.
// Pure code, any thread. The interleaved path is the per-RTP-packet path: no copy, no allocation.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "proto/rtsp/text.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"

namespace vms::rtsp {
namespace {

using text::is_ctl;
using text::is_digit;
using text::is_tchar;
using text::is_ws;
using text::quote_for_error;

// Longer than any RTSP method (GET_PARAMETER is 13); a longer token is not a request.
constexpr std::size_t kMaxMethod = 32;
constexpr std::string_view kVersionPrefix = "RTSP/";

[[noreturn]] void fail(const std::string& why) { throw BitstreamError("RTSP: " + why); }

// Walks a start line that may be complete or only a prefix of one (the rest not yet received).
// Every step either advances, reports that the prefix ended (still valid), or throws. Checking
// prefixes is what lets garbage fail at its first bytes instead of after max_header_bytes.
class StartLine {
 public:
  StartLine(std::string_view s, bool complete) : s_(s), complete_(complete) {}

  // Returns true when the whole line was checked (and stored into `out`), false when a valid
  // prefix ended early.
  bool parse(Message& out) {
    if (s_.size() < kVersionPrefix.size() && kVersionPrefix.substr(0, s_.size()) == s_) {
      if (!complete_) return false;  // "RTS": a response or a request method, both still possible
    }
    if (s_.starts_with(kVersionPrefix)) return parse_status(out);
    return parse_request(out);
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }

  // At the end of a complete line the part `what` is missing; at the end of a prefix it may come.
  bool ended(const char* what) {
    if (complete_) bad(std::string("missing ") + what);
    return true;
  }

  [[noreturn]] void bad(const std::string& why) const {
    fail(why + " in start line " + quote_for_error(s_));
  }

  // One or more spaces or tabs.
  bool spaces(const char* next) {
    if (at_end()) return !ended(next);
    if (!is_ws(s_[i_])) bad(std::string("expected a space before ") + next);
    while (!at_end() && is_ws(s_[i_])) ++i_;
    return !at_end() || !ended(next);
  }

  // 1 to 3 digits. False when a prefix ended before the first digit.
  bool digits() {
    const std::size_t d = i_;
    while (!at_end() && is_digit(s_[i_])) {
      if (i_ - d >= 3) bad("bad RTSP version");
      ++i_;
    }
    if (i_ > d) return true;
    if (!at_end()) bad("bad RTSP version");
    if (complete_) bad("incomplete RTSP version");
    return false;
  }

  // digits "." digits, after "RTSP/".
  bool version(std::string& out) {
    const std::size_t start = i_;
    if (!digits()) return false;
    if (at_end()) {
      if (complete_) bad("incomplete RTSP version");
      return false;
    }
    if (s_[i_] != '.') bad("bad RTSP version");
    ++i_;
    if (!digits()) return false;
    out = std::string(kVersionPrefix) + std::string(s_.substr(start, i_ - start));
    return true;
  }

  bool parse_status(Message& out) {
    i_ = kVersionPrefix.size();
    if (!version(out.version)) return false;
    if (!spaces("status code")) return false;
    int status = 0;
    for (int k = 0; k < 3; ++k) {
      if (at_end()) return !ended("status code");
      if (!is_digit(s_[i_])) bad("bad status code");
      status = status * 10 + (s_[i_] - '0');
      ++i_;
    }
    if (status < 100) bad("bad status code");
    if (!at_end() && !is_ws(s_[i_])) bad("bad status code");
    const std::size_t reason_start = i_;
    for (; !at_end(); ++i_)
      if (is_ctl(s_[i_])) bad("control byte in reason phrase");
    if (!complete_) return false;
    out.is_request = false;
    out.status = status;
    out.reason = std::string(text::trim(s_.substr(reason_start)));
    return true;
  }

  bool parse_request(Message& out) {
    while (!at_end() && is_tchar(s_[i_])) {
      if (++i_ > kMaxMethod) bad("method name too long");
    }
    if (i_ == 0) bad("not a request or status line");
    const std::size_t method_end = i_;
    if (!spaces("request URI")) return false;
    const std::size_t uri_start = i_;
    while (!at_end() && !is_ws(s_[i_])) {
      if (is_ctl(s_[i_])) bad("control byte in request URI");
      ++i_;
    }
    const std::size_t uri_end = i_;
    if (!spaces("RTSP version")) return false;
    for (std::size_t k = 0; k < kVersionPrefix.size(); ++k, ++i_) {
      if (at_end()) return !ended("RTSP version");
      if (s_[i_] != kVersionPrefix[k]) bad("bad RTSP version");
    }
    if (!version(out.version)) return false;
    while (!at_end() && is_ws(s_[i_])) ++i_;
    if (!at_end()) bad("unexpected text after the RTSP version");
    if (!complete_) return false;
    out.is_request = true;
    out.method = std::string(s_.substr(0, method_end));
    out.uri = std::string(s_.substr(uri_start, uri_end - uri_start));
    return true;
  }

  std::string_view s_;
  bool complete_;
  std::size_t i_ = 0;
};

// A header line, complete or a prefix. Returns the name/value split of a complete line.
// Whitespace before the colon is tolerated (old servers write "CSeq : 1").
void check_header_line(std::string_view line, bool complete, std::string_view* name,
                       std::string_view* value) {
  std::size_t i = 0;
  while (i < line.size() && is_tchar(line[i])) ++i;
  if (i == line.size()) {
    if (complete) fail("header line without ':' " + quote_for_error(line));
    return;
  }
  if (i == 0) fail("bad header line " + quote_for_error(line));
  std::size_t colon = i;
  while (colon < line.size() && is_ws(line[colon])) ++colon;
  if (colon == line.size()) {
    if (complete) fail("header line without ':' " + quote_for_error(line));
    return;
  }
  if (line[colon] != ':') fail("bad character in header name " + quote_for_error(line));
  for (std::size_t k = colon + 1; k < line.size(); ++k)
    if (is_ctl(line[k])) fail("control byte in header " + quote_for_error(line));
  if (complete) {
    *name = line.substr(0, i);
    *value = text::trim(line.substr(colon + 1));
  }
}

void check_continuation(std::string_view line) {
  for (char c : line)
    if (is_ctl(c)) fail("control byte in folded header line " + quote_for_error(line));
}

std::size_t content_length_of(const Message& m, std::size_t max_body) {
  std::optional<std::uint64_t> length;
  for (const Header& h : m.headers) {
    if (!text::iequals(h.name, "Content-Length")) continue;
    const auto v = text::parse_uint<std::uint64_t>(h.value);
    if (!v) fail("invalid Content-Length " + quote_for_error(h.value));
    if (length && *length != *v) fail("conflicting Content-Length headers");
    length = v;
  }
  if (!length) return 0;  // RFC 2326 §12.14: no Content-Length means no body
  if (*length > max_body)
    fail("Content-Length " + std::to_string(*length) + " exceeds the limit of " +
         std::to_string(max_body) + " bytes");
  return static_cast<std::size_t>(*length);
}

// The partial last line of an incomplete header section: a trailing CR may be the first half of
// its CRLF.
std::string_view without_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// --- formatting -----------------------------------------------------------------------------

void require(bool ok, const std::string& why) {
  if (!ok) throw std::invalid_argument("RTSP formatter: " + why);
}

void check_token(const char* what, std::string_view s) {
  require(!s.empty(), std::string(what) + " is empty");
  for (char c : s)
    require(is_tchar(c), std::string(what) + " " + quote_for_error(s) + " is not a token");
}

// Header values and reason phrases: anything but control bytes (a CR or LF would end the line
// and let the rest of the value become headers of its own).
void check_text(const char* what, std::string_view s) {
  for (char c : s)
    require(!is_ctl(c), std::string(what) + " " + quote_for_error(s) + " contains a control byte");
}

void check_uri(std::string_view uri) {
  require(!uri.empty(), "request URI is empty");
  for (char c : uri)
    require(!is_ctl(c) && !is_ws(c),
            "request URI " + quote_for_error(uri) + " contains whitespace or a control byte");
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_headers_and_body(std::string& out, std::uint32_t cseq,
                             std::span<const Header> headers, std::string_view body) {
  append_header(out, "CSeq", std::to_string(cseq));
  for (const Header& h : headers) {
    check_token("header name", h.name);
    require(!text::iequals(h.name, "CSeq") && !text::iequals(h.name, "Content-Length"),
            h.name + " is written by the formatter");
    check_text("header value", h.value);
    append_header(out, h.name, h.value);
  }
  if (!body.empty()) append_header(out, "Content-Length", std::to_string(body.size()));
  out.append("\r\n");
  out.append(body);
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) { return text::iequals(a, b); }

std::optional<std::string_view> Message::header(std::string_view name) const {
  for (const Header& h : headers)
    if (text::iequals(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

std::vector<std::string_view> Message::header_values(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const Header& h : headers)
    if (text::iequals(h.name, name)) out.emplace_back(h.value);
  return out;
}

std::optional<std::uint32_t> Message::cseq() const {
  const auto v = header("CSeq");
  if (!v) return std::nullopt;
  return text::parse_uint<std::uint32_t>(text::trim(*v));
}

void Message::clear() {
  is_request = false;
  method.clear();
  uri.clear();
  status = 0;
  reason.clear();
  version.clear();
  headers.clear();
  body.clear();
  content_length = 0;
}

Item parse_next(ByteSpan buf, Message& out, const Limits& limits) {
  const std::size_t n = buf.size();
  if (n == 0) return {};
  if (buf[0] == '$') {
    // RFC 2326 §10.12: '$', channel, 16-bit big-endian length, payload. The length bounds it.
    if (n < 4) return {};
    const std::size_t len = load_be16(buf.data() + 2);
    if (n - 4 < len) return {};
    Item item;
    item.kind = ItemKind::Interleaved;
    item.consumed = 4 + len;
    item.frame.channel = buf[1];
    item.frame.payload = buf.subspan(4, len);
    return item;
  }

  const std::string_view text(reinterpret_cast<const char*>(buf.data()), n);
  // The header section (with any empty lines before it) must end within this many bytes.
  const std::size_t window = std::min(n, limits.max_header_bytes);
  const auto too_large = [&] {
    fail("header section exceeds the limit of " + std::to_string(limits.max_header_bytes) +
         " bytes");
  };

  // Empty lines before a message: some servers send a CRLF after a body that Content-Length did
  // not count (RFC 7230 §3.5 asks receivers to ignore them).
  std::size_t pos = 0;
  while (pos < n && (text[pos] == '\n' || (text[pos] == '\r' && pos + 1 < n && text[pos + 1] == '\n')))
    pos += text[pos] == '\r' ? 2 : 1;
  if (pos >= limits.max_header_bytes) too_large();
  if (pos == n || (pos + 1 == n && text[pos] == '\r')) return {};

  out.clear();
  bool first = true;
  std::size_t header_end = 0;
  while (true) {
    const void* nl = pos < window ? std::memchr(text.data() + pos, '\n', window - pos) : nullptr;
    if (!nl) {
      if (n >= limits.max_header_bytes) too_large();
      const std::string_view partial = without_cr(text.substr(pos));
      if (first) {
        StartLine(partial, false).parse(out);
      } else if (!partial.empty() && is_ws(partial.front())) {
        if (out.headers.empty()) fail("folded line before any header " + quote_for_error(partial));
        check_continuation(partial);
      } else {
        std::string_view name, value;
        check_header_line(partial, false, &name, &value);
      }
      return {};
    }
    const std::size_t eol = static_cast<std::size_t>(static_cast<const char*>(nl) - text.data());
    const std::string_view line = without_cr(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (first) {
      StartLine(line, true).parse(out);
      first = false;
      continue;
    }
    if (line.empty()) {
      header_end = pos;
      break;
    }
    if (is_ws(line.front())) {
      // obs-fold (RFC 7230 §3.2.4): the line continues the previous header's value.
      if (out.headers.empty()) fail("folded line before any header " + quote_for_error(line));
      check_continuation(line);
      const std::string_view more = text::trim(line);
      std::string& value = out.headers.back().value;
      if (!more.empty()) {
        if (!value.empty()) value += ' ';
        value.append(more);
      }
      continue;
    }
    std::string_view name, value;
    check_header_line(line, true, &name, &value);
    if (out.headers.size() >= limits.max_headers)
      fail("more than " + std::to_string(limits.max_headers) + " header fields");
    out.headers.push_back({std::string(name), std::string(value)});
  }

  const std::size_t body_size = content_length_of(out, limits.max_body_bytes);
  if (n - header_end < body_size) return {};
  out.content_length = body_size;
  out.body.assign(text.substr(header_end, body_size));
  Item item;
  item.kind = ItemKind::Message;
  item.consumed = header_end + body_size;
  return item;
}

std::string format_request(std::string_view method, std::string_view uri, std::uint32_t cseq,
                           std::span<const Header> headers, std::string_view body) {
  check_token("method", method);
  check_uri(uri);
  std::string out;
  out.reserve(64 + uri.size() + body.size());
  out.append(method);
  out += ' ';
  out.append(uri);
  out.append(" RTSP/1.0\r\n");
  append_headers_and_body(out, cseq, headers, body);
  return out;
}

std::string format_response(int status, std::string_view reason, std::uint32_t cseq,
                            std::span<const Header> headers, std::string_view body) {
  require(status >= 100 && status <= 999, "status " + std::to_string(status) + " is not 100..999");
  check_text("reason phrase", reason);
  std::string out = "RTSP/1.0 " + std::to_string(status);
  if (!reason.empty()) {
    out += ' ';
    out.append(reason);
  }
  out.append("\r\n");
  append_headers_and_body(out, cseq, headers, body);
  return out;
}

std::string format_message(const Message& m) {
  const std::string version = m.version.empty() ? "RTSP/1.0" : m.version;
  check_text("version", version);
  std::string out;
  if (m.is_request) {
    check_token("method", m.method);
    check_uri(m.uri);
    out = m.method + ' ' + m.uri + ' ' + version;
  } else {
    require(m.status >= 100 && m.status <= 999,
            "status " + std::to_string(m.status) + " is not 100..999");
    check_text("reason phrase", m.reason);
    out = version + ' ' + std::to_string(m.status);
    if (!m.reason.empty()) out += ' ' + m.reason;
  }
  out.append("\r\n");
  const std::string size = std::to_string(m.body.size());
  bool wrote_length = false;
  for (const Header& h : m.headers) {
    check_token("header name", h.name);
    check_text("header value", h.value);
    if (text::iequals(h.name, "Content-Length")) {
      // Always matching the body; a value that already says so is kept as written (and a repeated
      // header kept too) so that formatting a parsed message gives the same message back.
      wrote_length = true;
      const auto v = text::parse_uint<std::uint64_t>(h.value);
      append_header(out, h.name, v && *v == m.body.size() ? std::string_view(h.value) : size);
      continue;
    }
    append_header(out, h.name, h.value);
  }
  if (!wrote_length && !m.body.empty()) append_header(out, "Content-Length", size);
  out.append("\r\n");
  out.append(m.body);
  return out;
}

std::array<std::uint8_t, 4> interleaved_header(std::uint8_t channel, std::size_t size) {
  if (size > 0xFFFF)
    throw std::invalid_argument("RTSP interleaved frame of " + std::to_string(size) +
                                " bytes: at most 65535 fit its 16-bit length");
  return {std::uint8_t('$'), channel, std::uint8_t(size >> 8), std::uint8_t(size)};
}

}  // namespace vms::rtsp
