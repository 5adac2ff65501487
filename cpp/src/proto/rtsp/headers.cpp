// RTSP header fields a client or server session needs: Transport (RFC 2326 §12.39), Session
// (§12.37), RTP-Info (§12.33), Public (§12.28), and control URL resolution (§C.1.1) with the
// deviations real cameras need. Pure code, any thread.
#include <string>

#include "proto/rtsp/text.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"

namespace vms::rtsp {
namespace {

using text::istarts_with;
using text::quote_for_error;
using text::trim;

// Calls fn(part) for each part of `s` between separators.
template <typename Fn>
void split(std::string_view s, char sep, Fn&& fn) {
  while (true) {
    const std::size_t at = s.find(sep);
    fn(s.substr(0, at));
    if (at == std::string_view::npos) return;
    s.remove_prefix(at + 1);
  }
}

// "name=value" -> (name, value), both trimmed; no '=' gives an empty value.
std::pair<std::string_view, std::string_view> name_value(std::string_view param) {
  const std::size_t eq = param.find('=');
  if (eq == std::string_view::npos) return {trim(param), {}};
  return {trim(param.substr(0, eq)), trim(param.substr(eq + 1))};
}

// An SSRC: 8 hex digits per RFC 2326, in practice also fewer (a camera dropping leading zeros),
// with "0x" (Rubetek), or in decimal when too long for hex (Dahua's RTP-Info).
std::optional<std::uint32_t> parse_ssrc(std::string_view v) {
  v = trim(v);
  if (istarts_with(v, "0x")) v.remove_prefix(2);
  if (const auto hex = text::parse_hex32(v)) return hex;
  return text::parse_uint<std::uint32_t>(v);
}

template <typename Pair, typename T>
std::optional<Pair> parse_pair(std::string_view v, T max_value) {
  v = trim(v);
  const std::size_t dash = v.find('-');
  const auto first = text::parse_uint<T>(trim(v.substr(0, dash)));
  if (!first || *first > max_value) return std::nullopt;
  Pair p;
  p.first = *first;
  if (dash == std::string_view::npos) {
    // The RTCP port / channel is the next one (RFC 2326 §12.39).
    p.second = *first < max_value ? T(*first + 1) : *first;
    return p;
  }
  const auto second = text::parse_uint<T>(trim(v.substr(dash + 1)));
  if (!second || *second > max_value) return std::nullopt;
  p.second = *second;
  return p;
}

std::string unquote(std::string_view v) {
  v = trim(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return std::string(v);
}

// One transport-spec, or why it is unusable.
std::optional<Transport> parse_spec(std::string_view spec, std::string& why) {
  Transport t;
  bool first = true;
  bool ok = true;
  split(spec, ';', [&](std::string_view raw) {
    if (!ok) return;
    const std::string_view param = trim(raw);
    if (first) {
      first = false;
      // transport-protocol "/" profile ["/" lower-transport]
      const std::size_t a = param.find('/');
      const std::size_t b = a == std::string_view::npos ? a : param.find('/', a + 1);
      const std::string_view proto = param.substr(0, a);
      const std::string_view profile =
          a == std::string_view::npos ? std::string_view{} : param.substr(a + 1, b - a - 1);
      const std::string_view lower = b == std::string_view::npos ? "UDP" : param.substr(b + 1);
      if (!text::iequals(proto, "RTP") || (!text::iequals(profile, "AVP") && !text::iequals(profile, "SAVP"))) {
        why = "transport " + quote_for_error(param) + " is not RTP/AVP";
        ok = false;
        return;
      }
      if (!text::iequals(lower, "UDP") && !text::iequals(lower, "TCP")) {
        why = "lower transport " + quote_for_error(lower) + " is neither UDP nor TCP";
        ok = false;
        return;
      }
      t.protocol = "RTP/" + text::upper(profile);
      t.tcp = text::iequals(lower, "TCP");
      return;
    }
    if (param.empty()) return;  // "RTP/AVP;unicast;" (a trailing ';')
    // Plain variables, not a structured binding: clang 14 cannot capture bindings in lambdas.
    const auto nv = name_value(param);
    const std::string_view name = nv.first;
    const std::string_view value = nv.second;
    const auto bad = [&](const char* what) {
      why = std::string("bad ") + what + " " + quote_for_error(value);
      ok = false;
    };
    if (text::iequals(name, "unicast")) {
      t.multicast = false;
    } else if (text::iequals(name, "multicast")) {
      t.multicast = true;
    } else if (text::iequals(name, "interleaved")) {
      t.interleaved = parse_pair<ChannelPair, std::uint8_t>(value, 255);
      if (!t.interleaved) bad("interleaved channels");
    } else if (text::iequals(name, "client_port")) {
      t.client_port = parse_pair<PortPair, std::uint16_t>(value, 65535);
      if (!t.client_port) bad("client_port");
    } else if (text::iequals(name, "server_port")) {
      t.server_port = parse_pair<PortPair, std::uint16_t>(value, 65535);
      if (!t.server_port) bad("server_port");
    } else if (text::iequals(name, "port")) {
      t.port = parse_pair<PortPair, std::uint16_t>(value, 65535);
      if (!t.port) bad("port");
    } else if (text::iequals(name, "ssrc")) {
      // Advisory only (the RTP packets carry it): an unreadable one is dropped, not fatal.
      t.ssrc = parse_ssrc(value);
    } else if (text::iequals(name, "ttl")) {
      const auto ttl = text::parse_uint<std::uint8_t>(value);
      if (ttl) t.ttl = *ttl;
    } else if (text::iequals(name, "destination")) {
      t.destination = std::string(value);
    } else if (text::iequals(name, "source")) {
      t.source = std::string(value);
    } else if (text::iequals(name, "mode")) {
      t.mode = text::upper(unquote(value));
    }
    // append, layers and extensions: nothing a session needs.
  });
  if (!ok) return std::nullopt;
  return t;
}

std::string port_pair(const PortPair& p) {
  return std::to_string(p.first) + "-" + std::to_string(p.second);
}

bool has_scheme(std::string_view s) {
  const std::size_t sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0 || !text::is_alpha(s[0])) return false;
  for (char c : s.substr(0, sep))
    if (!text::is_alpha(c) && !text::is_digit(c) && c != '+' && c != '-' && c != '.') return false;
  return true;
}

std::string with_scheme(std::string_view s) {
  s = trim(s);
  if (has_scheme(s)) return std::string(s);
  return "rtsp://" + std::string(s);
}

// True when the rest of an RTP-Info entry after a ';' starts a known parameter or is empty, i.e.
// the ';' ends the URL rather than being part of it.
bool ends_url(std::string_view rest) {
  std::size_t i = 0;
  while (i < rest.size() && (text::is_ws(rest[i]) || rest[i] == ';')) ++i;
  rest.remove_prefix(i);
  return rest.empty() || istarts_with(rest, "seq=") || istarts_with(rest, "rtptime=") ||
         istarts_with(rest, "ssrc=") || istarts_with(rest, "url=");
}

void parse_rtp_info_entry(std::string_view entry, std::vector<RtpInfo>& out) {
  RtpInfo info;
  bool any = false;
  std::size_t pos = 0;
  while (pos < entry.size()) {
    while (pos < entry.size() && (text::is_ws(entry[pos]) || entry[pos] == ';')) ++pos;
    if (pos >= entry.size()) break;
    std::size_t end = entry.find(';', pos);
    std::size_t eq = entry.find('=', pos);
    if (eq == std::string_view::npos || (end != std::string_view::npos && eq > end)) {
      pos = end == std::string_view::npos ? entry.size() : end;  // a flag: ignored
      continue;
    }
    const std::string_view key = trim(entry.substr(pos, eq - pos));
    if (text::iequals(key, "url")) {
      while (end != std::string_view::npos && !ends_url(entry.substr(end + 1)))
        end = entry.find(';', end + 1);
    }
    const std::size_t stop = end == std::string_view::npos ? entry.size() : end;
    const std::string_view value = trim(entry.substr(eq + 1, stop - eq - 1));
    if (text::iequals(key, "url")) {
      info.url = std::string(value);
      any = true;
    } else if (text::iequals(key, "seq")) {
      info.seq = text::parse_uint<std::uint16_t>(value);
      any = true;
    } else if (text::iequals(key, "rtptime")) {
      info.rtptime = text::parse_uint<std::uint32_t>(value);
      any = true;
    } else if (text::iequals(key, "ssrc")) {
      info.ssrc = parse_ssrc(value);
      any = true;
    }
    pos = stop;
  }
  if (any) out.push_back(std::move(info));
}

}  // namespace

std::string Transport::to_string() const {
  std::string out = protocol.empty() ? std::string("RTP/AVP") : protocol;
  if (tcp) out += "/TCP";
  out += multicast ? ";multicast" : ";unicast";
  if (!destination.empty()) out += ";destination=" + destination;
  if (!source.empty()) out += ";source=" + source;
  if (interleaved)
    out += ";interleaved=" + std::to_string(interleaved->first) + "-" +
           std::to_string(interleaved->second);
  if (client_port) out += ";client_port=" + port_pair(*client_port);
  if (server_port) out += ";server_port=" + port_pair(*server_port);
  if (port) out += ";port=" + port_pair(*port);
  if (ttl) out += ";ttl=" + std::to_string(*ttl);
  if (ssrc) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    out += ";ssrc=";
    for (int shift = 28; shift >= 0; shift -= 4) out += kHex[(*ssrc >> shift) & 15];
  }
  if (!mode.empty()) out += ";mode=\"" + mode + "\"";
  return out;
}

Transport parse_transport(std::string_view value) {
  std::string first_error;
  std::optional<Transport> found;
  split(value, ',', [&](std::string_view spec) {
    if (found || trim(spec).empty()) return;
    std::string why;
    found = parse_spec(spec, why);
    if (!found && first_error.empty()) first_error = why;
  });
  if (found) return *found;
  throw BitstreamError("RTSP: no usable transport in Transport header " + quote_for_error(value) +
                       (first_error.empty() ? std::string() : ": " + first_error));
}

Session parse_session(std::string_view value) {
  Session s;
  bool first = true;
  split(value, ';', [&](std::string_view part) {
    if (first) {
      first = false;
      s.id = std::string(trim(part));
      return;
    }
    const auto [name, v] = name_value(part);
    if (!text::iequals(name, "timeout")) return;
    const auto t = text::parse_uint<std::uint32_t>(v);
    if (t && *t > 0) {
      s.timeout_s = *t;
      s.timeout_given = true;
    }
  });
  if (s.id.empty()) throw BitstreamError("RTSP: Session header without a session id");
  return s;
}

std::vector<RtpInfo> parse_rtp_info(std::string_view value) {
  std::vector<RtpInfo> out;
  // Entries are split at a comma only when "url=" follows it, so that a comma in a URL stays
  // there. A header with no "url=" at all is split at every comma.
  bool any_url = false;
  for (std::size_t i = 0; i + 4 <= value.size() && !any_url; ++i)
    any_url = istarts_with(value.substr(i), "url=");
  std::size_t start = 0;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    if (i < value.size()) {
      if (value[i] != ',') continue;
      if (any_url && !istarts_with(trim(value.substr(i + 1)), "url=")) continue;
    }
    parse_rtp_info_entry(value.substr(start, i - start), out);
    start = i + 1;
  }
  return out;
}

std::vector<std::string> parse_public(std::string_view value) {
  std::vector<std::string> out;
  split(value, ',', [&](std::string_view m) {
    m = trim(m);
    if (!m.empty()) out.emplace_back(m);
  });
  return out;
}

std::string content_base(const Message& describe_response, std::string_view request_url) {
  for (const char* name : {"Content-Base", "Content-Location"}) {
    const auto v = describe_response.header(name);
    if (v && !trim(*v).empty()) return with_scheme(*v);
  }
  return with_scheme(request_url);
}

std::string resolve_control(std::string_view base_url, std::string_view control) {
  const std::string base = with_scheme(base_url);
  control = trim(control);
  if (control.empty() || control == "*") return base;
  if (has_scheme(control)) return std::string(control);
  if (control.front() == '/') {
    const std::size_t scheme_end = base.find("://");
    if (control.starts_with("//")) return base.substr(0, scheme_end + 1) + std::string(control);
    const std::size_t path = base.find_first_of("/?#", scheme_end + 3);
    return base.substr(0, path) + std::string(control);
  }
  std::string out = base;
  if (out.back() != '/') out += '/';
  out.append(control);
  return out;
}

}  // namespace vms::rtsp
