// Session descriptions as cameras send them in DESCRIBE responses: SDP parsing, RTP payload
// mapping, H.264 / H.265 parameter sets and AAC configuration from fmtp, and base64.
//
// Specs: RFC 4566 (SDP), RFC 3551 §6 (static payload types), RFC 6184 §8.1 (H.264 fmtp:
// sprop-parameter-sets, packetization-mode, profile-level-id), RFC 7798 §7.1 (H.265 fmtp:
// sprop-vps/sps/pps, sprop-max-don-diff), RFC 3640 §4.1 (mpeg4-generic fmtp), ISO/IEC 14496-3
// §1.6.2.1 (AudioSpecificConfig), RFC 4648 §4-5 (base64). Camera deviations accepted are listed
// at each function.
//
// Pure code: text in, structures out; no I/O, threads or shared state. Structural limits raise
// vms::BitstreamError; a malformed part the engine can live without becomes a warning instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmscore/bytes.hpp"
#include "vmscore/nal.hpp"

namespace vms::sdp {

// Bounds of one description. A DESCRIBE body is already bounded by rtsp::Limits; these bound the
// work and the number of objects built from it.
struct Limits {
  std::size_t max_bytes = 256 * 1024;
  std::size_t max_lines = 4096;
  std::size_t max_line_bytes = 16 * 1024;  // a long sprop-parameter-sets fits many times over
  std::size_t max_media = 64;
};

struct Attribute {
  std::string name;   // "rtpmap"
  std::string value;  // after the first ':', trimmed; empty for a flag ("recvonly")
  bool operator==(const Attribute&) const = default;
};

struct FmtpParam {
  std::string name;   // as sent; compare case-insensitively (Ubiquiti sends "SizeLength")
  std::string value;  // trimmed; base64 padding '=' kept
  bool operator==(const FmtpParam&) const = default;
};

struct Media {
  std::string type;                  // "video", "audio", "application"
  std::uint16_t port = 0;
  std::uint16_t port_count = 1;
  std::string protocol;              // "RTP/AVP"
  std::vector<std::string> formats;  // as listed on the m= line
  int payload_type = -1;             // the first format, 0..127; -1 for a non-RTP protocol
  std::string encoding;              // upper-case: "H264", "H265", "MPEG4-GENERIC", "PCMA"; "" unknown
  std::uint32_t clock_rate = 0;      // 0 when unknown
  std::uint16_t channels = 0;        // rtpmap encoding parameters; 0 when not given
  std::vector<FmtpParam> fmtp;       // of the first format's a=fmtp
  std::string control;               // a=control as sent (resolve with rtsp::resolve_control)
  std::optional<double> framerate;   // a=framerate or a=x-framerate
  std::uint32_t bandwidth_kbps = 0;  // b=AS
  std::string connection;            // the address of a media-level c= line
  std::string direction;             // "recvonly", "sendonly", "sendrecv", "inactive" or ""
  std::vector<Attribute> attributes; // every a= line of the section, in order

  std::optional<std::string_view> fmtp_param(std::string_view name) const;  // case-insensitive
  std::optional<std::string_view> attribute(std::string_view name) const;   // first, by name
};

struct Session {
  std::string origin;               // o= as sent; empty when missing (several cameras omit it)
  std::string name;                 // s=
  std::string connection;           // the address of the session-level c= line
  std::string control;              // session-level a=control
  std::string tool;                 // a=tool ("LIVE555 Streaming Media v2013.04.08")
  std::string range;                // a=range ("npt=0-")
  std::uint32_t bandwidth_kbps = 0; // b=AS
  std::vector<Attribute> attributes;
  std::vector<Media> media;         // usable media sections, in order
  std::vector<std::string> warnings;

  std::optional<std::string_view> attribute(std::string_view name) const;
};

// Parses a description. Accepted deviations (engine notes, camera quirks table):
// - a missing o= line; attributes in any order (Luckfox: control before rtpmap);
// - trailing whitespace anywhere, CRLF or LF line ends, lines that are not "x=..." (a warning);
// - a trailing space in the rtpmap clock rate; an empty "a=fmtp:96" (Ubiquiti);
// - a media section that cannot be parsed (TP-Link's "m=application/TP-LINK 0 RTP/AVP smart/1/90000",
//   a bad rtpmap) is skipped with a warning rather than failing the whole description;
// - static payload types without rtpmap (0 = PCMU/8000, 8 = PCMA/8000, RFC 3551 table 4/5).
// Throws BitstreamError when the text is not a description (no leading "v="), holds a NUL byte, or
// exceeds a limit.
Session parse(std::string_view text, const Limits& limits = {});

// The date of a live555 server from its a=tool ("LIVE555 Streaming Media v2013.04.08" ->
// 20130408), or nullopt when the tool is not live555.
std::optional<std::uint32_t> live555_version(std::string_view tool);
// live555 before 2017.06.04 keeps writing interleaved data to a closed connection's descriptor,
// which can leak into an unrelated new connection (Reolink and many cheap cameras): the engine
// must tear such sessions down and wait them out before reconnecting.
bool has_live555_tcp_bug(const Session& session);

// H264 or H265 from the encoding name ("H265" or "HEVC"); nullopt for anything else.
std::optional<Codec> video_codec(const Media& media);

// Out-of-band parameter sets: H.264 sprop-parameter-sets (comma-separated SPS,PPS), H.265
// sprop-vps / sprop-sps / sprop-pps. Each unit must decode from base64 (padding optional) and be
// a parameter set of the codec; an SPS must parse. Accepted: a missing PPS (Hikvision sends
// "<sps>,"), Annex-B start codes inside a decoded unit (V380: it is split into its units), units
// listed under the wrong name. Anything unusable is left out with a message added to `warnings`,
// so the caller can wait for in-band parameter sets instead. Throws BitstreamError only when the
// media is neither H.264 nor H.265.
ParameterSets parameter_sets(const Media& media, std::vector<std::string>* warnings = nullptr);

// RFC 6184 packetization-mode: 0 (the default when absent or unreadable), 1 or 2.
int packetization_mode(const Media& media);
// RFC 6184 profile-level-id as 0xPPCCLL (profile_idc, constraint flags, level_idc), or nullopt.
std::optional<std::uint32_t> profile_level_id(const Media& media);
// RFC 7798 sprop-max-don-diff: non-zero means every H.265 RTP payload carries a DONL field.
std::uint32_t sprop_max_don_diff(const Media& media);

// mpeg4-generic AAC (RFC 3640) configuration.
struct AacConfig {
  Bytes audio_specific_config;  // config= (hex), as in an esds
  std::uint8_t object_type = 0; // 2 = AAC LC
  std::uint32_t sample_rate = 0;
  std::uint8_t channels = 0;    // channelConfiguration (0: defined in the stream)
  std::string mode;             // "AAC-hbr", "AAC-lbr"
  std::uint32_t size_length = 0;
  std::uint32_t index_length = 0;
  std::uint32_t index_delta_length = 0;
};
// nullopt when the media is not MPEG4-GENERIC; throws BitstreamError for a missing or malformed
// config (bad hex, reserved sampling index, truncated).
std::optional<AacConfig> aac_config(const Media& media);

// RFC 4648 base64. The decoder accepts missing padding, the URL-safe alphabet and surrounding
// whitespace (all seen in sprop-parameter-sets); it returns nullopt for anything else.
std::string base64_encode(ByteSpan data);
std::optional<Bytes> base64_decode(std::string_view text);

}  // namespace vms::sdp
