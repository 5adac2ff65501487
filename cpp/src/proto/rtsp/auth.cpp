// HTTP authentication as RTSP uses it: WWW-Authenticate challenges and Authorization credentials
// (RFC 7235 §2.1 syntax), Basic (RFC 7617) and Digest with MD5 / MD5-sess and qop auth / auth-int
// (RFC 2617 §3.2, RFC 7616 §3.4). Pure code, any thread: the caller supplies the client nonce, so
// nothing here reads a clock or a random source.
#include <stdexcept>
#include <string>

#include "proto/rtsp/text.hpp"
#include "vmscore/error.hpp"
#include "vmscore/rtsp.hpp"
#include "vmscore/sdp.hpp"

namespace vms::rtsp {
namespace {

using text::is_ws;

bool is_token68_char(char c) {
  return text::is_alpha(c) || text::is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '/';
}

// Reads challenges or credentials: comma-separated items, each either "scheme" (which starts a
// new challenge, optionally followed by a token68 or its first parameter) or "name=value".
class AuthReader {
 public:
  explicit AuthReader(std::string_view s) : s_(s) {}

  std::vector<Challenge> read() {
    std::vector<Challenge> out;
    while (true) {
      while (i_ < s_.size() && (is_ws(s_[i_]) || s_[i_] == ',')) ++i_;
      if (i_ >= s_.size()) break;
      const std::size_t start = i_;
      while (i_ < s_.size() && text::is_tchar(s_[i_])) ++i_;
      if (i_ == start)
        fail("unexpected " + text::quote_for_error(s_.substr(i_, 1)) + " in " +
             text::quote_for_error(s_));
      const std::string_view token = s_.substr(start, i_ - start);
      std::size_t j = i_;
      while (j < s_.size() && is_ws(s_[j])) ++j;
      if (j < s_.size() && s_[j] == '=') {
        if (out.empty()) fail("parameter before any scheme in " + text::quote_for_error(s_));
        i_ = j + 1;
        out.back().params.push_back({std::string(token), value()});
        continue;
      }
      Challenge c;
      c.scheme_name = std::string(token);
      c.scheme = text::iequals(token, "Digest")  ? AuthScheme::Digest
                 : text::iequals(token, "Basic") ? AuthScheme::Basic
                                           : AuthScheme::Other;
      i_ = j;
      c.token68 = token68();
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  [[noreturn]] static void fail(const std::string& why) {
    throw BitstreamError("RTSP authentication: " + why);
  }

  // A token68 right after a scheme, if what follows is one (and not "name=").
  std::string token68() {
    std::size_t j = i_;
    while (j < s_.size() && is_token68_char(s_[j])) ++j;
    if (j == i_) return {};
    std::size_t k = j;
    while (k < s_.size() && s_[k] == '=') ++k;
    std::size_t m = k;
    while (m < s_.size() && is_ws(s_[m])) ++m;
    if (m < s_.size() && s_[m] != ',') return {};  // "realm=..." or a second token: parameters
    if (k == j + 1 && m < s_.size()) return {};    // "name=," is an empty parameter, not a token68
    std::string out(s_.substr(i_, k - i_));
    i_ = m;
    return out;
  }

  // A quoted-string (with backslash escapes, RFC 7230 §3.2.6) or a bare value up to ',' or space.
  std::string value() {
    while (i_ < s_.size() && is_ws(s_[i_])) ++i_;
    std::string out;
    if (i_ < s_.size() && s_[i_] == '"') {
      ++i_;
      while (true) {
        if (i_ >= s_.size()) fail("unterminated quoted string in " + text::quote_for_error(s_));
        const char c = s_[i_++];
        if (c == '"') break;
        if (c == '\\' && i_ < s_.size()) {
          out += s_[i_++];
        } else {
          out += c;
        }
      }
      return out;
    }
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ',' && !is_ws(s_[i_])) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

void fill_known_fields(Challenge& c) {
  for (const AuthParam& p : c.params) {
    if (text::iequals(p.name, "realm")) {
      c.realm = p.value;
    } else if (text::iequals(p.name, "nonce")) {
      c.nonce = p.value;
    } else if (text::iequals(p.name, "opaque")) {
      c.opaque = p.value;
    } else if (text::iequals(p.name, "algorithm")) {
      c.algorithm = p.value;
    } else if (text::iequals(p.name, "stale")) {
      c.stale = text::iequals(text::trim(p.value), "true");
    } else if (text::iequals(p.name, "qop")) {
      // qop="auth,auth-int" in a challenge; a single value in credentials.
      c.qop.clear();
      std::string_view rest = p.value;
      while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        const std::string_view one = text::trim(rest.substr(0, comma));
        if (!one.empty()) c.qop.push_back(text::lower(one));
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
  }
}

bool offers(const Challenge& c, std::string_view qop) {
  for (const std::string& q : c.qop)
    if (q == qop) return true;
  return false;
}

void require(bool ok, const std::string& why) {
  if (!ok) throw std::invalid_argument("RTSP authorization: " + why);
}

// A quoted-string for a Digest parameter; CR, LF and other control bytes cannot be quoted.
std::string quoted(const char* what, std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    require(!text::is_ctl(c), std::string(what) + " contains a control byte");
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string nc_hex(std::uint32_t nc) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(8, '0');
  for (int i = 7; i >= 0; --i, nc >>= 4) out[std::size_t(i)] = kHex[nc & 15];
  return out;
}

}  // namespace

std::optional<std::string_view> Challenge::param(std::string_view name) const {
  for (const AuthParam& p : params)
    if (text::iequals(p.name, name)) return std::string_view(p.value);
  return std::nullopt;
}

bool Challenge::is_md5_sess() const { return text::iequals(algorithm, "MD5-sess"); }

bool Challenge::is_supported() const {
  if (scheme == AuthScheme::Basic) return true;
  if (scheme != AuthScheme::Digest) return false;
  // RFC 7616 adds SHA-256 variants; cameras offer them next to MD5, never alone so far.
  if (!algorithm.empty() && !text::iequals(algorithm, "MD5") && !is_md5_sess()) return false;
  return qop.empty() || offers(*this, "auth") || offers(*this, "auth-int");
}

std::vector<Challenge> parse_www_authenticate(std::string_view value) {
  std::vector<Challenge> out = AuthReader(value).read();
  for (Challenge& c : out) fill_known_fields(c);
  return out;
}

std::vector<Challenge> parse_challenges(const Message& response) {
  std::vector<Challenge> out;
  for (std::string_view v : response.header_values("WWW-Authenticate")) {
    std::vector<Challenge> some = parse_www_authenticate(v);
    for (Challenge& c : some) out.push_back(std::move(c));
  }
  return out;
}

const Challenge* best_challenge(const std::vector<Challenge>& challenges) {
  // Digest never sends the password; Basic sends it in the clear on every request.
  for (const Challenge& c : challenges)
    if (c.scheme == AuthScheme::Digest && c.is_supported()) return &c;
  for (const Challenge& c : challenges)
    if (c.scheme == AuthScheme::Basic) return &c;
  return nullptr;
}

std::string digest_response(std::string_view username, std::string_view realm,
                            std::string_view password, std::string_view method,
                            std::string_view uri, std::string_view nonce, bool md5_sess,
                            std::string_view qop, std::uint32_t nc, std::string_view cnonce,
                            std::string_view body) {
  const auto join = [](std::initializer_list<std::string_view> parts) {
    std::string s;
    bool first = true;
    for (std::string_view p : parts) {
      if (!first) s += ':';
      first = false;
      s.append(p);
    }
    return s;
  };
  std::string ha1 = md5_hex(join({username, realm, password}));
  if (md5_sess) ha1 = md5_hex(join({ha1, nonce, cnonce}));
  const std::string ha2 = qop == "auth-int" ? md5_hex(join({method, uri, md5_hex(body)}))
                                            : md5_hex(join({method, uri}));
  if (qop.empty()) return md5_hex(join({ha1, nonce, ha2}));
  return md5_hex(join({ha1, nonce, nc_hex(nc), cnonce, qop, ha2}));
}

std::string authorization(const Challenge& challenge, std::string_view username,
                          std::string_view password, std::string_view method,
                          std::string_view uri, std::string_view cnonce, std::uint32_t nc,
                          std::string_view body) {
  require(challenge.is_supported(),
          "unsupported challenge " + challenge.scheme_name +
              (challenge.algorithm.empty() ? std::string() : " algorithm=" + challenge.algorithm));
  if (challenge.scheme == AuthScheme::Basic) {
    // RFC 7617 §2: the user-id cannot contain a colon; both must be free of control bytes.
    require(username.find(':') == std::string_view::npos, "a Basic user name cannot contain ':'");
    for (char c : std::string(username) + std::string(password))
      require(!text::is_ctl(c), "user name or password contains a control byte");
    return "Basic " + sdp::base64_encode(as_bytes(std::string(username) + ":" + std::string(password)));
  }
  const std::string_view qop = offers(challenge, "auth")       ? "auth"
                               : offers(challenge, "auth-int") ? "auth-int"
                                                               : "";
  const bool needs_cnonce = !qop.empty() || challenge.is_md5_sess();
  require(!needs_cnonce || !cnonce.empty(),
          "Digest with qop or MD5-sess needs a client nonce (cnonce)");
  require(nc > 0 || qop.empty(), "nc counts from 1");
  const std::string response =
      digest_response(username, challenge.realm, password, method, uri, challenge.nonce,
                      challenge.is_md5_sess(), qop, nc, cnonce, body);
  std::string out = "Digest username=" + quoted("user name", username) +
                    ", realm=" + quoted("realm", challenge.realm) +
                    ", nonce=" + quoted("nonce", challenge.nonce) + ", uri=" + quoted("uri", uri) +
                    ", response=\"" + response + "\"";
  if (!challenge.algorithm.empty()) out += ", algorithm=" + challenge.algorithm;
  if (!challenge.opaque.empty()) out += ", opaque=" + quoted("opaque", challenge.opaque);
  if (!qop.empty()) {
    out += ", qop=" + std::string(qop) + ", nc=" + nc_hex(nc) + ", cnonce=" + quoted("cnonce", cnonce);
  }
  return out;
}

Challenge parse_authorization(std::string_view value) {
  std::vector<Challenge> all = parse_www_authenticate(value);
  if (all.size() != 1)
    throw BitstreamError("RTSP authentication: expected one set of credentials in " +
                         text::quote_for_error(value));
  return std::move(all.front());
}

}  // namespace vms::rtsp
