// rtsp:// URLs (RFC 2326 §3.2 on RFC 3986 syntax): split into scheme, credentials, host, port and
// path; credentials percent-decoded and kept out of the default string form so they do not reach
// logs. Pure code, any thread.
#include <string>

#include "proto/rtsp/text.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"

namespace vms::rtsp {
namespace {

using text::quote_for_error;

// The URL may hold a password: messages name the problem, never the URL.
[[noreturn]] void bad_url(const std::string& why) { throw BitstreamError("RTSP URL: " + why); }

std::string percent_decode(std::string_view s, const char* what) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? text::hex_value(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? text::hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad_url(std::string("bad percent-encoding in the ") + what);
    out += char((hi << 4) | lo);
    i += 2;
  }
  return out;
}

// Everything but RFC 3986 unreserved characters, so the result is safe in any URL part.
std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (text::is_alpha(c) || text::is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      const auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

bool host_char(char c) {
  return text::is_alpha(c) || text::is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

}  // namespace

Url parse_url(std::string_view url) {
  const std::string_view s = text::trim(url);
  for (char c : s)
    if (text::is_ctl(c) || text::is_ws(c)) bad_url("whitespace or a control byte in the URL");
  const std::size_t sep = s.find("://");
  if (sep == std::string_view::npos) bad_url("no scheme (expected rtsp://...)");
  Url u;
  u.scheme = text::lower(s.substr(0, sep));
  if (u.scheme == "rtsps") {
    u.port = 322;
  } else if (u.scheme != "rtsp" && u.scheme != "rtspu") {
    bad_url("scheme " + quote_for_error(u.scheme) + " is not rtsp, rtsps or rtspu");
  }
  const std::string_view rest = s.substr(sep + 3);
  const std::size_t path_at = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_at);
  if (path_at != std::string_view::npos) {
    const std::string_view path = rest.substr(path_at);
    // Appended rather than "/" + path: GCC 12 warns falsely (-Wrestrict) on literal + temporary.
    u.path.clear();
    if (path.front() != '/') u.path += '/';
    u.path.append(path);
  }

  // The last '@' ends the userinfo: a password with an unencoded '@' still parses (FFmpeg does
  // the same), since the host part can never contain one.
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const std::size_t colon = userinfo.find(':');
    u.user = percent_decode(userinfo.substr(0, colon), "user name");
    if (colon != std::string_view::npos)
      u.password = percent_decode(userinfo.substr(colon + 1), "password");
    u.has_credentials = true;
    authority.remove_prefix(at + 1);
  }

  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) bad_url("unterminated IPv6 address");
    const std::string_view host = authority.substr(1, close - 1);
    for (char c : host)
      if (text::hex_value(c) < 0 && c != ':' && c != '.' && c != '%')
        bad_url("bad IPv6 address");
    if (host.find(':') == std::string_view::npos) bad_url("bad IPv6 address");
    u.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') bad_url("unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    for (char c : u.host)
      if (!host_char(c)) bad_url("bad character in the host name");
  }
  if (u.host.empty()) bad_url("no host");
  if (!port.empty()) {
    const auto p = text::parse_uint<std::uint16_t>(port);
    if (!p || *p == 0) bad_url("bad port (expected 1..65535)");
    u.port = *p;
    u.port_given = true;
  }
  return u;
}

std::string Url::to_string(bool with_credentials) const {
  std::string out = scheme + "://";
  if (with_credentials && has_credentials) {
    out += percent_encode(user);
    if (!password.empty()) {
      out += ':';
      out += percent_encode(password);
    }
    out += '@';
  }
  if (is_ipv6()) {
    out += '[';
    out += host;
    out += ']';
  } else {
    out += host;
  }
  out += ':';
  out += std::to_string(port);
  out += path.empty() ? std::string("/") : path;
  return out;
}

}  // namespace vms::rtsp
