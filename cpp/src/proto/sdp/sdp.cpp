// SDP parsing (RFC 4566) tolerant of what cameras send, RTP payload mapping (RFC 3551 §6), and the
// codec parameters carried in fmtp: H.264 (RFC 6184 §8.1), H.265 (RFC 7798 §7.1), AAC (RFC 3640
// §4.1, ISO/IEC 14496-3 §1.6.2.1). Pure code, any thread.
#include <charconv>
#include <cmath>
#include <span>
#include <string>

#include "proto/rtsp/text.hpp"
#include "vmscore/error.hpp"
#include "vmscore/sdp.hpp"

namespace vms::sdp {
namespace {

using text::iequals;
using text::quote_for_error;
using text::trim;

[[noreturn]] void fail(const std::string& why) { throw BitstreamError("SDP: " + why); }

struct StaticType {
  int payload_type;
  const char* encoding;
  std::uint32_t clock_rate;
  std::uint16_t channels;
};

// RFC 3551 tables 4 and 5: the payload types a description may use without an rtpmap.
constexpr StaticType kStaticTypes[] = {
    {0, "PCMU", 8000, 1},    {3, "GSM", 8000, 1},     {4, "G723", 8000, 1},
    {5, "DVI4", 8000, 1},    {6, "DVI4", 16000, 1},   {7, "LPC", 8000, 1},
    {8, "PCMA", 8000, 1},    {9, "G722", 8000, 1},    {10, "L16", 44100, 2},
    {11, "L16", 44100, 1},   {12, "QCELP", 8000, 1},  {13, "CN", 8000, 1},
    {14, "MPA", 90000, 0},   {15, "G728", 8000, 1},   {16, "DVI4", 11025, 1},
    {17, "DVI4", 22050, 1},  {18, "G729", 8000, 1},   {25, "CELB", 90000, 0},
    {26, "JPEG", 90000, 0},  {28, "NV", 90000, 0},    {31, "H261", 90000, 0},
    {32, "MPV", 90000, 0},   {33, "MP2T", 90000, 0},  {34, "H263", 90000, 0},
};

const StaticType* static_type(int pt) {
  for (const StaticType& t : kStaticTypes)
    if (t.payload_type == pt) return &t;
  return nullptr;
}

template <typename Fn>
void split(std::string_view s, char sep, Fn&& fn) {
  while (true) {
    const std::size_t at = s.find(sep);
    fn(s.substr(0, at));
    if (at == std::string_view::npos) return;
    s.remove_prefix(at + 1);
  }
}

// Space-separated fields (runs of spaces count once).
std::vector<std::string_view> fields(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && text::is_ws(s[i])) ++i;
    const std::size_t start = i;
    while (i < s.size() && !text::is_ws(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!text::is_tchar(c)) return false;
  return true;
}

// "<payload type> <rest>" of rtpmap and fmtp; nullopt when it does not start with a number.
std::optional<std::pair<int, std::string_view>> payload_prefix(std::string_view v) {
  std::size_t i = 0;
  while (i < v.size() && text::is_digit(v[i])) ++i;
  const auto pt = text::parse_uint<std::uint8_t>(v.substr(0, i));
  if (!pt || *pt > 127) return std::nullopt;
  return std::make_pair(int(*pt), trim(v.substr(i)));
}

std::optional<double> parse_rate(std::string_view v) {
  v = trim(v);
  double d = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d) || d <= 0 || d > 1000)
    return std::nullopt;
  return d;
}

std::uint32_t parse_bandwidth(std::string_view v) {
  // b=AS:<kbps> (RFC 4566 §5.8); other modifiers are not needed.
  const std::size_t colon = v.find(':');
  if (colon == std::string_view::npos || !iequals(trim(v.substr(0, colon)), "AS")) return 0;
  return text::parse_uint<std::uint32_t>(trim(v.substr(colon + 1))).value_or(0);
}

// The address of "IN IP4 192.168.1.10" (c= lines).
std::string connection_address(std::string_view v) {
  const auto f = fields(v);
  return f.size() >= 3 ? std::string(f[2]) : std::string();
}

// A media section being read: its m= line, then its lines in any order.
struct Section {
  Media media;
  bool ok = true;
  std::string why;  // why it is skipped
  std::size_t line = 0;
  std::string rtpmap;  // of the first format
  bool have_rtpmap = false;
  bool have_fmtp = false;
  bool have_control = false;
};

void parse_m_line(std::string_view v, Section& s) {
  const auto f = fields(v);
  const auto skip = [&](const std::string& why) {
    s.ok = false;
    s.why = why;
  };
  if (f.size() < 4) return skip("m= line needs media, port, protocol and a format");
  if (!is_token(f[0])) return skip("media type " + quote_for_error(f[0]) + " is not a token");
  s.media.type = text::lower(f[0]);
  const std::size_t slash = f[1].find('/');
  const auto port = text::parse_uint<std::uint16_t>(f[1].substr(0, slash));
  if (!port) return skip("bad port " + quote_for_error(f[1]));
  s.media.port = *port;
  if (slash != std::string_view::npos) {
    const auto count = text::parse_uint<std::uint16_t>(f[1].substr(slash + 1));
    if (!count || *count == 0) return skip("bad port count " + quote_for_error(f[1]));
    s.media.port_count = *count;
  }
  s.media.protocol = std::string(f[2]);
  for (std::size_t i = 3; i < f.size(); ++i) s.media.formats.emplace_back(f[i]);
  // RFC 4566 §5.14: with an RTP profile (RTP/AVP, RTP/SAVP, TCP/RTP/AVP...) formats are payload
  // type numbers. Anything else means the camera invented its own syntax: skip the section.
  if (text::upper(s.media.protocol).find("RTP") == std::string::npos) return;
  for (std::size_t i = 0; i < s.media.formats.size(); ++i) {
    const std::string& fmt = s.media.formats[i];
    const auto pt = text::parse_uint<std::uint8_t>(fmt);
    if (!pt || *pt > 127) return skip("format " + quote_for_error(fmt) + " is not an RTP payload type");
    if (i == 0) s.media.payload_type = *pt;
  }
}

void parse_media_attribute(const Attribute& a, Section& s) {
  Media& m = s.media;
  if (iequals(a.name, "rtpmap")) {
    const auto pt = payload_prefix(a.value);
    if (pt && pt->first == m.payload_type && !s.have_rtpmap) {
      s.have_rtpmap = true;
      s.rtpmap = std::string(pt->second);
    }
  } else if (iequals(a.name, "fmtp")) {
    const auto pt = payload_prefix(a.value);
    if (!pt || pt->first != m.payload_type || s.have_fmtp) return;
    s.have_fmtp = true;
    std::string_view params = pt->second;
    // "a=fmtp:96" with nothing after it (Ubiquiti) leaves the list empty.
    split(params, ';', [&](std::string_view p) {
      p = trim(p);
      if (p.empty()) return;
      const std::size_t eq = p.find('=');
      if (eq == std::string_view::npos) {
        m.fmtp.push_back({std::string(p), std::string()});
      } else {
        m.fmtp.push_back({std::string(trim(p.substr(0, eq))), std::string(trim(p.substr(eq + 1)))});
      }
    });
  } else if (iequals(a.name, "control")) {
    if (!s.have_control) m.control = a.value;
    s.have_control = true;
  } else if (iequals(a.name, "framerate") || iequals(a.name, "x-framerate")) {
    if (!m.framerate) m.framerate = parse_rate(a.value);
  } else if (iequals(a.name, "recvonly") || iequals(a.name, "sendonly") || iequals(a.name, "sendrecv") ||
             iequals(a.name, "inactive")) {
    m.direction = text::lower(a.name);
  }
}

// Completes a section after its last line: encoding from rtpmap or the static table.
void finish_section(Section& s) {
  Media& m = s.media;
  if (!s.ok || m.payload_type < 0) return;
  if (s.have_rtpmap) {
    // encoding-name "/" clock-rate ["/" channels]; the clock rate may carry a trailing space
    // (the camera of Moonfire issue 213), which trim() removes.
    const std::string_view map = s.rtpmap;
    const std::size_t a = map.find('/');
    const std::size_t b = a == std::string_view::npos ? a : map.find('/', a + 1);
    const std::string_view name = trim(map.substr(0, a));
    const auto clock = a == std::string_view::npos
                           ? std::nullopt
                           : text::parse_uint<std::uint32_t>(trim(map.substr(a + 1, b - a - 1)));
    if (name.empty() || !clock || *clock == 0) {
      s.ok = false;
      s.why = "bad rtpmap " + quote_for_error(map);
      return;
    }
    m.encoding = text::upper(name);
    m.clock_rate = *clock;
    if (b != std::string_view::npos) {
      const auto ch = text::parse_uint<std::uint16_t>(trim(map.substr(b + 1)));
      m.channels = ch.value_or(0);
    }
    return;
  }
  if (const StaticType* t = static_type(m.payload_type)) {
    m.encoding = t->encoding;
    m.clock_rate = t->clock_rate;
    m.channels = t->channels;
  }
}

std::optional<std::string_view> find_attribute(const std::vector<Attribute>& attrs,
                                               std::string_view name) {
  for (const Attribute& a : attrs)
    if (iequals(a.name, name)) return std::string_view(a.value);
  return std::nullopt;
}

// --- parameter sets ---------------------------------------------------------------------------

void warn(std::vector<std::string>* warnings, std::string msg) {
  if (warnings) warnings->push_back(std::move(msg));
}

void add_unit(ParameterSets& ps, ByteSpan unit, std::string_view from,
              std::vector<std::string>* warnings) {
  const Codec codec = ps.codec;
  try {
    const NalKind kind = classify_nal(codec, unit).kind;
    std::vector<Bytes>* list = kind == NalKind::Vps   ? &ps.vps
                               : kind == NalKind::Sps ? &ps.sps
                               : kind == NalKind::Pps ? &ps.pps
                                                      : nullptr;
    if (!list) {
      warn(warnings, std::string(from) + ": ignored a " + nal_kind_name(kind) +
                         " NAL unit (not a parameter set)");
      return;
    }
    const std::uint32_t id = parameter_set_id(codec, unit);
    // An SPS the core cannot read would fail later, when building the init segment: drop it
    // now so the engine waits for the in-band one (cameras repeat them before every keyframe).
    if (kind == NalKind::Sps) (void)parse_sps(codec, unit);
    for (Bytes& existing : *list) {
      if (parameter_set_id(codec, existing) == id) {
        existing.assign(unit.begin(), unit.end());
        return;
      }
    }
    list->emplace_back(unit.begin(), unit.end());
  } catch (const BitstreamError& e) {
    warn(warnings, std::string(from) + ": ignored a unit: " + e.what());
  }
}

void add_encoded(ParameterSets& ps, std::string_view item, std::string_view from,
                 std::vector<std::string>* warnings) {
  item = trim(item);
  if (item.empty()) return;  // "<sps>," (Hikvision): the PPS is simply missing
  const auto raw = base64_decode(item);
  if (!raw || raw->empty()) {
    warn(warnings, std::string(from) + ": " + quote_for_error(item) + " is not base64");
    return;
  }
  const ByteSpan data(*raw);
  const bool annexb = data.size() >= 3 && data[0] == 0 && data[1] == 0 &&
                      (data[2] == 1 || (data.size() >= 4 && data[2] == 0 && data[3] == 1));
  if (!annexb) {
    add_unit(ps, data, from, warnings);
    return;
  }
  // V380 and others put start codes inside the base64: one item may hold several units.
  std::vector<NalRange> units;
  try {
    split_annexb(data, units);
  } catch (const BitstreamError& e) {
    warn(warnings, std::string(from) + ": " + e.what());
    return;
  }
  for (const NalRange& u : units) add_unit(ps, data.subspan(u.offset, u.size), from, warnings);
}

std::uint8_t bits_at(ByteSpan data, std::size_t& bit, int count) {
  std::uint32_t v = 0;
  for (int i = 0; i < count; ++i, ++bit) {
    if (bit / 8 >= data.size()) fail("AudioSpecificConfig is truncated");
    v = (v << 1) | ((data[bit / 8] >> (7 - bit % 8)) & 1u);
  }
  return std::uint8_t(v);
}

}  // namespace

std::optional<std::string_view> Media::fmtp_param(std::string_view name) const {
  for (const FmtpParam& p : fmtp)
    if (iequals(p.name, name)) return std::string_view(p.value);
  return std::nullopt;
}

std::optional<std::string_view> Media::attribute(std::string_view attr) const {
  return find_attribute(attributes, attr);
}

std::optional<std::string_view> Session::attribute(std::string_view attr) const {
  return find_attribute(attributes, attr);
}

Session parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_bytes)
    fail("description of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
         std::to_string(limits.max_bytes));
  if (text.find('\0') != std::string_view::npos) fail("NUL byte in the description");

  Session out;
  std::optional<Section> section;
  std::size_t line_no = 0;
  bool seen_version = false;
  bool have_control = false;

  const auto close_section = [&] {
    if (!section) return;
    finish_section(*section);
    if (section->ok) {
      out.media.push_back(std::move(section->media));
    } else {
      out.warnings.push_back("media section at line " + std::to_string(section->line) +
                             " skipped: " + section->why);
    }
    section.reset();
  };

  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::size_t raw_size = end - pos;
    std::string_view raw = text.substr(pos, raw_size);
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    const std::string_view line = trim(raw);
    pos = end + 1;
    if (++line_no > limits.max_lines)
      fail("more than " + std::to_string(limits.max_lines) + " lines");
    if (raw_size > limits.max_line_bytes)
      fail("line " + std::to_string(line_no) + " is longer than " +
           std::to_string(limits.max_line_bytes) + " bytes");
    if (line.empty()) continue;

    if (line.size() < 2 || line[1] != '=' || !text::is_alpha(line[0])) {
      if (!seen_version) fail("not a session description: it starts with " + quote_for_error(line));
      out.warnings.push_back("line " + std::to_string(line_no) + " ignored: " + quote_for_error(line));
      continue;
    }
    const char type = line[0];
    const std::string_view value = trim(line.substr(2));
    if (!seen_version) {
      if (type != 'v') fail("not a session description: it starts with " + quote_for_error(line));
      seen_version = true;
      continue;
    }

    if (type == 'm') {
      close_section();
      if (out.media.size() >= limits.max_media)
        fail("more than " + std::to_string(limits.max_media) + " media sections");
      section.emplace();
      section->line = line_no;
      parse_m_line(value, *section);
      continue;
    }
    if (type == 'a') {
      const std::size_t colon = value.find(':');
      Attribute a;
      a.name = std::string(trim(value.substr(0, colon)));
      if (colon != std::string_view::npos) a.value = std::string(trim(value.substr(colon + 1)));
      if (section) {
        if (section->ok) parse_media_attribute(a, *section);
        section->media.attributes.push_back(std::move(a));
      } else {
        if (iequals(a.name, "control") && !have_control) {
          out.control = a.value;
          have_control = true;
        } else if (iequals(a.name, "tool") && out.tool.empty()) {
          out.tool = a.value;
        } else if (iequals(a.name, "range") && out.range.empty()) {
          out.range = a.value;
        }
        out.attributes.push_back(std::move(a));
      }
      continue;
    }
    if (type == 'b') {
      (section ? section->media.bandwidth_kbps : out.bandwidth_kbps) = parse_bandwidth(value);
    } else if (type == 'c') {
      (section ? section->media.connection : out.connection) = connection_address(value);
    } else if (!section && type == 'o') {
      out.origin = std::string(value);
    } else if (!section && type == 's') {
      out.name = std::string(value);
    }
    // t=, r=, z=, k=, e=, p=, u=, i=: nothing a client needs.
  }
  if (!seen_version) fail("empty description");
  close_section();
  return out;
}

std::optional<std::uint32_t> live555_version(std::string_view tool) {
  constexpr std::string_view kName = "LIVE555 Streaming Media v";
  std::size_t at = std::string_view::npos;
  for (std::size_t i = 0; i + kName.size() <= tool.size(); ++i) {
    if (text::istarts_with(tool.substr(i), kName)) {
      at = i + kName.size();
      break;
    }
  }
  if (at == std::string_view::npos) return std::nullopt;
  // "2013.04.08"
  const std::string_view v = tool.substr(at, 10);
  if (v.size() != 10 || v[4] != '.' || v[7] != '.') return std::nullopt;
  const auto y = text::parse_uint<std::uint32_t>(v.substr(0, 4));
  const auto m = text::parse_uint<std::uint32_t>(v.substr(5, 2));
  const auto d = text::parse_uint<std::uint32_t>(v.substr(8, 2));
  if (!y || !m || !d) return std::nullopt;
  return *y * 10000 + *m * 100 + *d;
}

bool has_live555_tcp_bug(const Session& session) {
  const auto v = live555_version(session.tool);
  return v && *v < 20170604;
}

std::optional<Codec> video_codec(const Media& media) {
  if (media.encoding == "H264") return Codec::H264;
  if (media.encoding == "H265" || media.encoding == "HEVC") return Codec::H265;
  return std::nullopt;
}

ParameterSets parameter_sets(const Media& media, std::vector<std::string>* warnings) {
  const auto codec = video_codec(media);
  if (!codec)
    fail("parameter sets asked of " + quote_for_error(media.encoding) +
         " media (only H264 and H265 carry them)");
  ParameterSets ps;
  ps.codec = *codec;
  static constexpr std::string_view kH264[] = {"sprop-parameter-sets"};
  static constexpr std::string_view kH265[] = {"sprop-vps", "sprop-sps", "sprop-pps"};
  const std::span<const std::string_view> names =
      *codec == Codec::H264 ? std::span<const std::string_view>(kH264)
                            : std::span<const std::string_view>(kH265);
  for (std::string_view name : names) {
    const auto value = media.fmtp_param(name);
    if (!value) continue;
    split(*value, ',', [&](std::string_view item) { add_encoded(ps, item, name, warnings); });
  }
  return ps;
}

int packetization_mode(const Media& media) {
  const auto v = media.fmtp_param("packetization-mode");
  if (!v) return 0;
  const auto mode = text::parse_uint<std::uint8_t>(trim(*v));
  return mode && *mode <= 2 ? int(*mode) : 0;
}

std::optional<std::uint32_t> profile_level_id(const Media& media) {
  const auto v = media.fmtp_param("profile-level-id");
  if (!v || trim(*v).size() != 6) return std::nullopt;
  return text::parse_hex32(trim(*v));
}

std::uint32_t sprop_max_don_diff(const Media& media) {
  const auto v = media.fmtp_param("sprop-max-don-diff");
  if (!v) return 0;
  return text::parse_uint<std::uint32_t>(trim(*v)).value_or(0);
}

std::optional<AacConfig> aac_config(const Media& media) {
  if (media.encoding != "MPEG4-GENERIC") return std::nullopt;
  AacConfig c;
  const auto config = media.fmtp_param("config");
  if (!config || trim(*config).empty()) fail("mpeg4-generic media without config=");
  const std::string_view hex = trim(*config);
  if (hex.size() % 2 != 0) fail("config= has an odd number of hex digits");
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = text::hex_value(hex[i]);
    const int lo = text::hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) fail("config= is not hex: " + quote_for_error(hex));
    c.audio_specific_config.push_back(std::uint8_t((hi << 4) | lo));
  }
  // AudioSpecificConfig: audioObjectType(5, escape 31 -> 32 + 6 bits), samplingFrequencyIndex(4,
  // escape 15 -> 24-bit frequency), channelConfiguration(4).
  static constexpr std::uint32_t kRates[13] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                                22050, 16000, 12000, 11025, 8000,  7350};
  const ByteSpan asc(c.audio_specific_config);
  std::size_t bit = 0;
  c.object_type = bits_at(asc, bit, 5);
  if (c.object_type == 31) c.object_type = std::uint8_t(32 + bits_at(asc, bit, 6));
  const std::uint8_t index = bits_at(asc, bit, 4);
  if (index == 15) {
    std::uint32_t rate = bits_at(asc, bit, 8);
    rate = (rate << 8) | bits_at(asc, bit, 8);
    rate = (rate << 8) | bits_at(asc, bit, 8);
    c.sample_rate = rate;
  } else if (index < 13) {
    c.sample_rate = kRates[index];
  } else {
    fail("AudioSpecificConfig uses reserved sampling frequency index " + std::to_string(index));
  }
  if (c.sample_rate == 0) fail("AudioSpecificConfig has a zero sampling frequency");
  c.channels = bits_at(asc, bit, 4);
  const auto number = [&](std::string_view name) {
    const auto v = media.fmtp_param(name);
    return v ? text::parse_uint<std::uint32_t>(trim(*v)).value_or(0) : 0;
  };
  if (const auto mode = media.fmtp_param("mode")) c.mode = std::string(*mode);
  c.size_length = number("sizelength");
  c.index_length = number("indexlength");
  c.index_delta_length = number("indexdeltalength");
  return c;
}

}  // namespace vms::sdp
