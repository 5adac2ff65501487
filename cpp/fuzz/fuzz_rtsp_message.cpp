// The incremental RTSP parser as the engine drives it: bytes arrive in chunks of random sizes into
// a connection buffer and parse_next runs after each read. The items (messages and interleaved
// frames) and the final outcome must be exactly those of parsing the whole stream at once, so a
// prefix never fails where the full data parses, and NeedMore never hides a later success.
// Each item is checked: consumed within the buffer, interleaved payloads pointing inside it, the
// body matching Content-Length, limits respected, and format_message of a parsed message parsing
// back to the same message. Every header value also goes through the header-field parsers
// (Transport, Session, RTP-Info, Public, WWW-Authenticate with the Authorization built from it,
// URLs), which may only fail with BitstreamError; Transport and URLs must round-trip.
//
// Input: byte 0 picks the limits (bits 0-1 max_header_bytes, 2-3 max_headers, 4-5 max_body_bytes),
// bytes 1-2 seed the chunk sizes; the rest is the connection's byte stream.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"

using namespace vms;

namespace {

struct Seen {
  rtsp::ItemKind kind;
  std::size_t consumed;
  std::uint8_t channel;
  Bytes payload;
  rtsp::Message message;

  bool operator==(const Seen& o) const {
    return kind == o.kind && consumed == o.consumed && channel == o.channel &&
           payload == o.payload && same_message(message, o.message);
  }
  static bool same_message(const rtsp::Message& a, const rtsp::Message& b) {
    return a.is_request == b.is_request && a.method == b.method && a.uri == b.uri &&
           a.status == b.status && a.reason == b.reason && a.version == b.version &&
           a.headers == b.headers && a.body == b.body && a.content_length == b.content_length;
  }
};

struct Outcome {
  std::vector<Seen> items;
  bool failed = false;
  std::size_t pending = 0;  // bytes left unparsed at the end (NeedMore)
};

void check_headers(const rtsp::Message& m) {
  const auto expect_bitstream_error = [](auto&& fn) {
    try {
      fn();
    } catch (const BitstreamError&) {
    }
  };
  for (const rtsp::Header& h : m.headers) {
    expect_bitstream_error([&] {
      const rtsp::Transport t = rtsp::parse_transport(h.value);
      rtsp::Transport back;
      fuzz::must_not_throw("Transport round trip", [&] { back = rtsp::parse_transport(t.to_string()); });
      FUZZ_CHECK(back == t);
    });
    expect_bitstream_error([&] {
      const rtsp::Session s = rtsp::parse_session(h.value);
      FUZZ_CHECK(!s.id.empty() && s.timeout_s > 0);
    });
    for (const rtsp::RtpInfo& info : rtsp::parse_rtp_info(h.value))
      FUZZ_CHECK(info.url.size() <= h.value.size());
    for (const std::string& method : rtsp::parse_public(h.value)) FUZZ_CHECK(!method.empty());
    expect_bitstream_error([&] {
      const std::vector<rtsp::Challenge> all = rtsp::parse_www_authenticate(h.value);
      const rtsp::Challenge* best = rtsp::best_challenge(all);
      if (!best) return;
      FUZZ_CHECK(best->is_supported());
      // Parsed values hold no control bytes, so the header can always be built.
      std::string auth;
      fuzz::must_not_throw("authorization", [&] {
        auth = rtsp::authorization(*best, "user", "pa:ss\"\\", "DESCRIBE", "rtsp://cam/x", "0a4f113b", 1);
      });
      rtsp::Challenge back;
      fuzz::must_not_throw("parse_authorization", [&] { back = rtsp::parse_authorization(auth); });
      FUZZ_CHECK(back.scheme == best->scheme);
      if (best->scheme == rtsp::AuthScheme::Digest) {
        FUZZ_CHECK(back.realm == best->realm && back.nonce == best->nonce);
        FUZZ_CHECK(back.param("username") == "user");
      }
    });
    const std::string resolved = rtsp::resolve_control(m.uri.empty() ? "rtsp://cam/" : m.uri, h.value);
    FUZZ_CHECK(!resolved.empty());
  }
  expect_bitstream_error([&] {
    const rtsp::Url u = rtsp::parse_url(m.uri);
    FUZZ_CHECK(!u.host.empty() && u.port > 0 && !u.path.empty() && u.path.front() == '/');
    rtsp::Url back;
    fuzz::must_not_throw("URL round trip", [&] { back = rtsp::parse_url(u.to_string(true)); });
    back.port_given = u.port_given;  // to_string always writes the port
    FUZZ_CHECK(back == u);
    FUZZ_CHECK(u.redacted().find('@') == std::string::npos || u.path.find('@') != std::string::npos);
  });
}

// Parses items from the front of `buf` until NeedMore or an error; appends them to `out`.
// Returns the bytes consumed.
std::size_t drain(ByteSpan buf, const rtsp::Limits& limits, Outcome& out) {
  std::size_t off = 0;
  while (true) {
    const ByteSpan rest = buf.subspan(off);
    rtsp::Message m;
    rtsp::Item item;
    try {
      item = rtsp::parse_next(rest, m, limits);
    } catch (const BitstreamError&) {
      out.failed = true;
      return off;
    }
    if (item.kind == rtsp::ItemKind::NeedMore) {
      FUZZ_CHECK(item.consumed == 0);
      return off;
    }
    FUZZ_CHECK(item.consumed > 0 && item.consumed <= rest.size());
    Seen seen{item.kind, item.consumed, 0, {}, {}};
    if (item.kind == rtsp::ItemKind::Interleaved) {
      const ByteSpan p = item.frame.payload;
      FUZZ_CHECK(rest[0] == '$' && item.consumed == 4 + p.size());
      FUZZ_CHECK(p.data() == rest.data() + 4);  // a view into the buffer, not a copy
      FUZZ_CHECK(item.frame.channel == rest[1]);
      seen.channel = item.frame.channel;
      seen.payload.assign(p.begin(), p.end());
    } else {
      FUZZ_CHECK(m.body.size() == m.content_length && m.content_length <= limits.max_body_bytes);
      FUZZ_CHECK(m.headers.size() <= limits.max_headers);
      FUZZ_CHECK(item.consumed - m.body.size() <= limits.max_header_bytes);
      FUZZ_CHECK(m.is_request ? !m.method.empty() && !m.uri.empty() : m.status >= 100 && m.status <= 999);
      // Formatting a parsed message and parsing it again gives the same message.
      std::string wire;
      fuzz::must_not_throw("format_message of a parsed message", [&] { wire = rtsp::format_message(m); });
      rtsp::Message again;
      rtsp::Item back;
      rtsp::Limits roomy;
      roomy.max_header_bytes = wire.size() + 1;
      roomy.max_headers = m.headers.size() + 1;
      roomy.max_body_bytes = m.body.size();
      fuzz::must_not_throw("parsing format_message output", [&] { back = rtsp::parse_next(as_bytes(wire), again, roomy); });
      FUZZ_CHECK(back.kind == rtsp::ItemKind::Message && back.consumed == wire.size());
      FUZZ_CHECK(Seen::same_message(m, again));
      check_headers(m);
      seen.message = std::move(m);
    }
    out.items.push_back(std::move(seen));
    off += item.consumed;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  static constexpr std::size_t kHeaderBytes[4] = {16 * 1024, 64, 300, 2048};
  static constexpr std::size_t kHeaders[4] = {64, 0, 2, 8};
  static constexpr std::size_t kBody[4] = {256 * 1024, 0, 100, 4096};
  rtsp::Limits limits;
  limits.max_header_bytes = kHeaderBytes[data[0] & 3];
  limits.max_headers = kHeaders[(data[0] >> 2) & 3];
  limits.max_body_bytes = kBody[(data[0] >> 4) & 3];
  std::uint32_t rng = (std::uint32_t(data[1]) << 8 | data[2]) * 2654435761u + 1;
  const ByteSpan stream(data + 3, size - 3);

  Outcome whole;
  whole.pending = stream.size() - drain(stream, limits, whole);

  // The same stream through a connection buffer filled in random chunk sizes.
  Outcome chunked;
  Bytes buffer;
  std::size_t fed = 0;
  std::size_t start = 0;  // first unparsed byte of `buffer`
  while (fed < stream.size() && !chunked.failed) {
    rng = rng * 1103515245u + 12345u;
    const std::size_t want = 1 + (rng >> 16) % ((rng >> 8) & 1 ? 7 : 600);
    const std::size_t n = std::min(want, stream.size() - fed);
    buffer.insert(buffer.end(), stream.begin() + fed, stream.begin() + fed + n);
    fed += n;
    start += drain(ByteSpan(buffer).subspan(start), limits, chunked);
    // A prefix may only fail where the whole stream fails, at the same item.
    if (chunked.failed) FUZZ_CHECK(whole.failed && chunked.items.size() == whole.items.size());
    FUZZ_CHECK(chunked.items.size() <= whole.items.size());
    // Compact like a connection buffer would, now and then.
    if (start > 4096) {
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(start));
      start = 0;
    }
  }
  chunked.pending = buffer.size() - start;
  FUZZ_CHECK(chunked.failed == whole.failed);
  FUZZ_CHECK(chunked.items.size() == whole.items.size());
  for (std::size_t i = 0; i < whole.items.size(); ++i) FUZZ_CHECK(chunked.items[i] == whole.items[i]);
  if (!whole.failed) FUZZ_CHECK(chunked.pending == whole.pending);
  return 0;
}
