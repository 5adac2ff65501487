// RTSP 1.0 wire format for one TCP connection, in both directions (client and server): an
// incremental parser of messages and interleaved binary frames, message formatting, the header
// fields a session needs (Transport, Session, RTP-Info, Public, Content-Base), rtsp:// URLs, HTTP
// authentication (Basic and Digest with MD5) and MD5 itself.
//
// Specs: RFC 2326 (§4 messages, §10.12 interleaved data, §12.17 CSeq, §12.33 RTP-Info, §12.37
// Session, §12.39 Transport, §C.1.1 control URLs); RFC 7230 §3.2 (header fields, obs-fold);
// RFC 3986 (URL syntax); RFC 2617 / RFC 7616 (Digest with MD5 and MD5-sess), RFC 7617 (Basic);
// RFC 1321 (MD5). Camera deviations that are accepted are listed next to each function.
//
// Pure code: bytes in, structures out; no sockets, threads or clocks, no shared state, so every
// function may run on any thread. Untrusted input raises vms::BitstreamError with a message saying
// what was wrong; misuse of a formatter (a CR/LF in a header value) raises std::invalid_argument.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmscore/bytes.hpp"

namespace vms::rtsp {

// ---------------------------------------------------------------------------------------------
// Messages and interleaved frames

// Bounds of one message. A peer that exceeds one is broken or hostile: the parser throws instead of
// buffering more, so a stalled or endless response costs at most these many bytes.
struct Limits {
  std::size_t max_header_bytes = 16 * 1024;  // start line + headers + blank line
  std::size_t max_headers = 64;              // header fields (folded lines count once)
  std::size_t max_body_bytes = 256 * 1024;   // Content-Length
};

struct Header {
  std::string name;   // as received; compare with iequals()
  std::string value;  // trimmed; folded continuation lines joined with one space
  bool operator==(const Header&) const = default;
};

struct Message {
  bool is_request = false;
  std::string method;             // requests: "DESCRIBE"
  std::string uri;                // requests: "rtsp://cam/stream" or "*"
  int status = 0;                 // responses: 200
  std::string reason;             // responses: "OK" (may be empty)
  std::string version;            // "RTSP/1.0"
  std::vector<Header> headers;    // in order received
  std::string body;               // exactly content_length bytes
  std::size_t content_length = 0;

  // The first header with this name (case-insensitive), or nullopt.
  std::optional<std::string_view> header(std::string_view name) const;
  // Every header with this name, in order (WWW-Authenticate may come several times).
  std::vector<std::string_view> header_values(std::string_view name) const;
  // CSeq as a number; nullopt when missing or not a decimal number. Surrounding whitespace is
  // ignored (Longse cameras send "CSeq: 1 ").
  std::optional<std::uint32_t> cseq() const;
  void clear();
};

enum class ItemKind : std::uint8_t {
  NeedMore,     // the buffer holds a valid but incomplete prefix; read more and call again
  Message,      // `out` holds a complete message
  Interleaved,  // `frame` is one '$'-framed packet
};

struct InterleavedFrame {
  std::uint8_t channel = 0;
  ByteSpan payload;  // points into the buffer given to parse_next: no copy
};

struct Item {
  ItemKind kind = ItemKind::NeedMore;
  std::size_t consumed = 0;  // bytes of the buffer this item used (0 for NeedMore)
  InterleavedFrame frame;    // Interleaved only
};

// Parses the item at the start of `buf`: an interleaved frame ('$', channel, 16-bit length,
// payload; RFC 2326 §10.12) or an RTSP request or response with its body (Content-Length).
//
// - The interleaved path copies and allocates nothing: `frame.payload` is a view into `buf`.
// - `out` is overwritten only when a Message is returned; after NeedMore its content is unspecified.
// - Accepted deviations: lines ending in a bare LF; whitespace around header values (Longse);
//   folded continuation lines; empty lines before a message (a server's stray CRLF after a body).
// - NeedMore is returned only while more bytes could still make a valid message, so binary garbage
//   fails at once, and a peer that never ends its headers fails once it reaches
//   max_header_bytes / max_headers. Too large a Content-Length fails as soon as it is read.
// Throws BitstreamError for anything else.
Item parse_next(ByteSpan buf, Message& out, const Limits& limits = {});

// The wire text of a request: "METHOD uri RTSP/1.0", CSeq, the headers in order, Content-Length
// when there is a body, a blank line, the body. CSeq and Content-Length are the formatter's; giving
// either in `headers`, or a name that is not a token, or a CR, LF or NUL anywhere, throws
// std::invalid_argument (header injection through a URL or user name is impossible).
std::string format_request(std::string_view method, std::string_view uri, std::uint32_t cseq,
                           std::span<const Header> headers = {}, std::string_view body = {});
// "RTSP/1.0 200 OK" and the same rules. status must be 100..999.
std::string format_response(int status, std::string_view reason, std::uint32_t cseq,
                            std::span<const Header> headers = {}, std::string_view body = {});
// Any parsed message back to wire text with its headers as they are; every Content-Length is
// written to match the body (one is added for a body without it). parse_next(format_message(m))
// gives back m.
std::string format_message(const Message& m);

// The 4-byte interleaved frame header for a payload of `size` bytes (at most 65535), so a server
// can send header and payload with one writev and no copy.
std::array<std::uint8_t, 4> interleaved_header(std::uint8_t channel, std::size_t size);

// ASCII case-insensitive equality (header names, parameter names, schemes).
bool iequals(std::string_view a, std::string_view b);

// ---------------------------------------------------------------------------------------------
// Header fields

struct PortPair {
  std::uint16_t first = 0;
  std::uint16_t second = 0;  // first + 1 when only one number was given
  bool operator==(const PortPair&) const = default;
};

struct ChannelPair {
  std::uint8_t first = 0;
  std::uint8_t second = 0;  // first + 1 when only one number was given (255 stays 255)
  bool operator==(const ChannelPair&) const = default;
};

// One transport-spec of a Transport header (RFC 2326 §12.39).
struct Transport {
  std::string protocol = "RTP/AVP";  // "RTP/AVP" or "RTP/SAVP" without the lower transport
  bool tcp = false;                  // lower transport TCP (RTP/AVP/TCP): interleaved data
  bool multicast = false;            // "multicast" given (default unicast)
  std::optional<ChannelPair> interleaved;
  std::optional<PortPair> client_port;
  std::optional<PortPair> server_port;
  std::optional<PortPair> port;      // multicast port
  std::optional<std::uint32_t> ssrc;
  std::optional<std::uint8_t> ttl;
  std::string destination;
  std::string source;
  std::string mode;  // unquoted, upper-case: "PLAY", "RECORD"; empty when not given

  // The spec back as header text, e.g. "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0A1B2C3D".
  std::string to_string() const;
  bool operator==(const Transport&) const = default;
};

// The first usable RTP transport-spec of a Transport header; specs are separated by commas and
// parameters come in any order (Luckfox rkipc sends ssrc first). ssrc is hex (RFC 2326), trimmed
// (Hikvision sends "ssrc= d6d6627"), may be short ("A046") or carry "0x" (Rubetek); an unparseable
// ssrc is dropped rather than failing the header. Throws BitstreamError when no spec is usable.
Transport parse_transport(std::string_view value);

struct Session {
  std::string id;
  std::uint32_t timeout_s = 60;  // RFC 2326 §12.37 default when not given, 0 or unparseable
  bool timeout_given = false;
  bool operator==(const Session&) const = default;
};
// "12345678;timeout=60": the id is kept byte for byte (only surrounding whitespace removed).
// Throws BitstreamError for an empty id.
Session parse_session(std::string_view value);

struct RtpInfo {
  std::string url;  // as sent: absolute or relative ("trackID=0", Dahua); may be empty
  std::optional<std::uint16_t> seq;
  std::optional<std::uint32_t> rtptime;
  std::optional<std::uint32_t> ssrc;  // non-standard (Reolink): hex, or decimal when too long for hex
  bool operator==(const RtpInfo&) const = default;
};
// "url=...;seq=..;rtptime=..,url=...". Entries split at a comma followed by "url=", so a comma
// inside a URL stays in it (FFmpeg and retina split at every comma). A ';' ends a URL only before
// seq= / rtptime= / ssrc= or at the end. Trailing ';' (Laureii) and whitespace are ignored; a seq or
// rtptime that is not a number in range (OMNY sends rtptime=-1) is left absent. Never throws.
std::vector<RtpInfo> parse_rtp_info(std::string_view value);

// Methods of a Public header ("OPTIONS, DESCRIBE, SETUP"), trimmed, empty entries dropped.
std::vector<std::string> parse_public(std::string_view value);

// The base URL for control attributes of a DESCRIBE response (RFC 2326 §C.1.1): Content-Base, else
// Content-Location, else the request URL. A base without a scheme (Anjvision:
// "192.168.1.10:554/stream0/") gets "rtsp://".
std::string content_base(const Message& describe_response, std::string_view request_url);

// Resolves an SDP control attribute against the base URL:
//   "" or "*"                    -> the base
//   "rtsp://..." (any scheme://) -> the control itself
//   "/path"                      -> scheme and authority of the base + the path
//   anything else                -> base + "/" + control ("/" only when the base does not end in
//                                   one), also when the base has a query ("?channel=1&subtype=0/")
// The last rule is what live555 (VLC), FFmpeg and the cameras tested against them do; an RFC 3986
// merge would drop the last path segment of a base without a trailing slash and the query.
std::string resolve_control(std::string_view base_url, std::string_view control);

// ---------------------------------------------------------------------------------------------
// URLs

struct Url {
  std::string scheme = "rtsp";  // lower-case: rtsp, rtsps, rtspu
  std::string user;             // percent-decoded
  std::string password;         // percent-decoded
  bool has_credentials = false; // a userinfo part was present (the password may still be empty)
  std::string host;             // IPv4, name, or IPv6 without brackets
  std::uint16_t port = 554;     // 554 (rtsp, rtspu) or 322 (rtsps) when not given
  bool port_given = false;
  std::string path = "/";       // path and query as sent; "/" when empty

  bool is_ipv6() const { return host.find(':') != std::string::npos; }
  // scheme://[user[:password]@]host:port/path. Credentials are written only when asked for, and
  // then percent-encoded, so the default form is safe for logs and request lines.
  std::string to_string(bool with_credentials = false) const;
  std::string redacted() const { return to_string(false); }
  bool operator==(const Url&) const = default;
};

// Parses rtsp://user:pa%40ss@host:8554/path?x=1. An '@' left unencoded in the password is accepted:
// the userinfo ends at the last '@' of the authority (as FFmpeg reads it). Throws BitstreamError
// for a missing scheme or host, a bad port, bad percent-encoding, or whitespace/control bytes.
Url parse_url(std::string_view url);

// ---------------------------------------------------------------------------------------------
// Authentication

enum class AuthScheme : std::uint8_t { Basic, Digest, Other };

struct AuthParam {
  std::string name;   // as sent
  std::string value;  // unquoted, escapes resolved
  bool operator==(const AuthParam&) const = default;
};

// One challenge of a WWW-Authenticate header.
struct Challenge {
  AuthScheme scheme = AuthScheme::Other;
  std::string scheme_name;  // as sent: "Digest"
  std::string realm;
  std::string nonce;
  std::string opaque;
  std::string algorithm;         // as sent; empty means MD5
  std::vector<std::string> qop;  // the qop options, lower-case: {"auth", "auth-int"}
  bool stale = false;
  std::string token68;           // a bare credential instead of parameters ("Basic dXNlcjpwdw==")
  std::vector<AuthParam> params; // every parameter, including the ones above

  // The value of a parameter by name (case-insensitive), or nullopt.
  std::optional<std::string_view> param(std::string_view name) const;

  bool is_md5_sess() const;
  // Basic, or Digest with MD5 / MD5-sess (or no algorithm) and either no qop or a qop we speak.
  bool is_supported() const;
};

// Every challenge of one WWW-Authenticate value; a value may hold several
// ('Digest realm="a", nonce="b", Basic realm="a"'). Quoted strings may contain commas and
// backslash escapes. Throws BitstreamError for an unterminated quoted string or a missing scheme.
std::vector<Challenge> parse_www_authenticate(std::string_view value);
// Every challenge of every WWW-Authenticate header of a (401) response.
std::vector<Challenge> parse_challenges(const Message& response);
// The strongest supported challenge (Digest before Basic, first one first), or nullptr.
const Challenge* best_challenge(const std::vector<Challenge>& challenges);

// A Digest response hash (RFC 2617 §3.2.2.1), lower-case hex:
//   HA1 = MD5(user:realm:password), for MD5-sess MD5(HA1:nonce:cnonce)
//   HA2 = MD5(method:uri), for auth-int MD5(method:uri:MD5(body))
//   qop given: MD5(HA1:nonce:nc:cnonce:qop:HA2), nc as 8 hex digits; else MD5(HA1:nonce:HA2).
std::string digest_response(std::string_view username, std::string_view realm,
                            std::string_view password, std::string_view method,
                            std::string_view uri, std::string_view nonce, bool md5_sess,
                            std::string_view qop, std::uint32_t nc, std::string_view cnonce,
                            std::string_view body = {});

// The Authorization header value answering `challenge` for a request of `method` on `uri` (the
// request line's URI, exactly). For Digest with qop the caller supplies a fresh client nonce and
// counts nc from 1 for each request with the same server nonce; qop "auth" is chosen when offered.
// Throws std::invalid_argument for an unsupported challenge, or a Basic user name with ':'.
std::string authorization(const Challenge& challenge, std::string_view username,
                          std::string_view password, std::string_view method,
                          std::string_view uri, std::string_view cnonce = {},
                          std::uint32_t nc = 1, std::string_view body = {});

// The parameters of an Authorization header a client sent (what a server verifies), e.g.
// 'Digest username="u", realm="r", ...'. Throws BitstreamError when malformed.
Challenge parse_authorization(std::string_view value);

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321). Only for Digest authentication, which mandates it; not for security elsewhere.

std::array<std::uint8_t, 16> md5(ByteSpan data);
std::string md5_hex(std::string_view data);  // lower-case hex

}  // namespace vms::rtsp
