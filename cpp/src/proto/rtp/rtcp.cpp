// RTCP compound packets (RFC 3550 §6.4-§6.7, validity checks of Appendix A.2): parsing of SR, RR,
// SDES, BYE and APP, writing of RR/SR + SDES(CNAME), NTP time conversion.
// Pure code; see vmscore/rtp.hpp.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "vmscore/error.hpp"
#include "vmscore/rtp.hpp"

namespace vms::rtp {
namespace {

constexpr std::size_t kReportBlockSize = 24;
constexpr std::int64_t kNtpToUnixSeconds = 2'208'988'800;  // 1900-01-01 to 1970-01-01

[[noreturn]] void bad(const char* what) { throw BitstreamError(std::string("RTCP: ") + what); }

ReceptionReport read_block(const std::uint8_t* p, std::uint32_t reporter) {
  ReceptionReport r;
  r.reporter_ssrc = reporter;
  r.ssrc = load_be32(p);
  r.fraction_lost = p[4];
  // 24-bit two's complement.
  const std::uint32_t raw = (std::uint32_t(p[5]) << 16) | (std::uint32_t(p[6]) << 8) | p[7];
  r.cumulative_lost = static_cast<std::int32_t>(raw & 0x800000 ? raw | 0xFF000000u : raw);
  r.highest_sequence = load_be32(p + 8);
  r.jitter = load_be32(p + 12);
  r.last_sr = load_be32(p + 16);
  r.delay_since_last_sr = load_be32(p + 20);
  return r;
}

void read_blocks(ByteSpan body, std::size_t at, unsigned count, std::uint32_t reporter,
                 RtcpCompound& out) {
  for (unsigned i = 0; i < count; ++i)
    out.reports.push_back(read_block(body.data() + at + i * kReportBlockSize, reporter));
}

void parse_sdes(ByteSpan body, unsigned chunks, RtcpCompound& out) {
  std::size_t i = 0;
  for (unsigned c = 0; c < chunks; ++c) {
    if (body.size() - i < 4) bad("SDES chunk runs past the packet");
    const std::uint32_t ssrc = load_be32(body.data() + i);
    i += 4;
    while (true) {
      // A chunk ends with a null item and padding to 32 bits. Some senders end the last chunk at
      // the end of the packet without it; the items before are still good.
      if (i >= body.size()) break;
      const std::uint8_t type = body[i];
      if (type == 0) {
        i = (i + 4) & ~std::size_t(3);  // past the null octet(s), to the next 32-bit boundary
        break;
      }
      if (body.size() - i < 2) bad("SDES item runs past the packet");
      const std::size_t len = body[i + 1];
      if (body.size() - i - 2 < len) bad("SDES item runs past the packet");
      out.sdes.push_back({ssrc, type, body.subspan(i + 2, len)});
      i += 2 + len;
    }
    if (i > body.size()) i = body.size();
  }
}

void put_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

void put_header(std::uint8_t* p, unsigned count, std::uint8_t type, std::size_t bytes) {
  p[0] = static_cast<std::uint8_t>(0x80 | count);
  p[1] = type;
  const std::size_t words = bytes / 4 - 1;
  p[2] = static_cast<std::uint8_t>(words >> 8);
  p[3] = static_cast<std::uint8_t>(words);
}

std::size_t sdes_size(std::size_t cname_size) {
  // header, SSRC, CNAME item (type, length, text), at least one null octet, padded to 32 bits.
  return 4 + ((4 + 2 + cname_size + 1 + 3) & ~std::size_t(3));
}

std::size_t write_sdes(std::uint32_t ssrc, std::string_view cname, std::uint8_t* p) {
  const std::size_t n = sdes_size(cname.size());
  std::fill(p, p + n, std::uint8_t(0));
  put_header(p, 1, kRtcpSdes, n);
  put_u32(p + 4, ssrc);
  p[8] = 1;  // CNAME
  p[9] = static_cast<std::uint8_t>(cname.size());
  std::copy(cname.begin(), cname.end(), p + 10);
  return n;
}

void check_cname(std::string_view cname) {
  if (cname.size() > 255) throw std::length_error("RTCP: CNAME longer than 255 bytes");
}

}  // namespace

void parse_rtcp(ByteSpan data, RtcpCompound& out) {
  out.clear();
  if (data.empty()) bad("empty packet");
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < 4) bad("truncated packet header");
    const std::uint8_t b0 = data[pos];
    if ((b0 >> 6) != 2) bad("version is not 2");
    const unsigned count = b0 & 0x1F;
    const std::uint8_t type = data[pos + 1];
    const std::size_t len = (std::size_t(load_be16(data.data() + pos + 2)) + 1) * 4;
    if (len > data.size() - pos) bad("packet length runs past the data");
    ByteSpan body = data.subspan(pos + 4, len - 4);
    if (b0 & 0x20) {
      // The last octet counts the padding, itself included.
      const std::uint8_t n = body.empty() ? 0 : body.back();
      if (n == 0 || n > body.size()) bad("bad padding count");
      body = body.first(body.size() - n);
    }
    switch (type) {
      case kRtcpSenderReport: {
        if (body.size() < 24 + count * kReportBlockSize) bad("SR shorter than its report blocks");
        SenderReport sr;
        sr.ssrc = load_be32(body.data());
        sr.ntp_time = (std::uint64_t(load_be32(body.data() + 4)) << 32) | load_be32(body.data() + 8);
        sr.rtp_time = load_be32(body.data() + 12);
        sr.packet_count = load_be32(body.data() + 16);
        sr.octet_count = load_be32(body.data() + 20);
        out.sender_reports.push_back(sr);
        read_blocks(body, 24, count, sr.ssrc, out);  // profile-specific extensions may follow
        break;
      }
      case kRtcpReceiverReport:
        if (body.size() < 4 + count * kReportBlockSize) bad("RR shorter than its report blocks");
        read_blocks(body, 4, count, load_be32(body.data()), out);
        break;
      case kRtcpSdes:
        parse_sdes(body, count, out);
        break;
      case kRtcpBye: {
        if (body.size() < count * 4) bad("BYE shorter than its SSRC list");
        for (unsigned i = 0; i < count; ++i) out.byes.push_back(load_be32(body.data() + i * 4));
        const std::size_t rest = body.size() - count * 4;
        if (rest > 0 && std::size_t(body[count * 4]) + 1 > rest) bad("BYE reason runs past the packet");
        break;
      }
      case kRtcpApp: {
        if (body.size() < 8) bad("APP shorter than its SSRC and name");
        AppPacket app;
        app.ssrc = load_be32(body.data());
        app.subtype = static_cast<std::uint8_t>(count);
        std::copy(body.begin() + 4, body.begin() + 8, app.name);
        app.data = body.subspan(8);
        out.apps.push_back(app);
        break;
      }
      default:
        ++out.other_packets;
        break;
    }
    ++out.packets;
    pos += len;
  }
}

std::size_t receiver_report_size(std::size_t blocks, std::size_t cname_size) {
  return 8 + blocks * kReportBlockSize + sdes_size(cname_size);
}

std::size_t write_receiver_report(std::uint32_t ssrc, std::span<const ReceptionReport> blocks,
                                  std::string_view cname, std::span<std::uint8_t> out) {
  if (blocks.size() > 31) throw std::length_error("RTCP: more than 31 report blocks");
  check_cname(cname);
  const std::size_t rr = 8 + blocks.size() * kReportBlockSize;
  const std::size_t total = rr + sdes_size(cname.size());
  if (out.size() < total) throw std::length_error("RTCP: buffer too small for the receiver report");
  std::uint8_t* p = out.data();
  put_header(p, static_cast<unsigned>(blocks.size()), kRtcpReceiverReport, rr);
  put_u32(p + 4, ssrc);
  std::uint8_t* b = p + 8;
  for (const ReceptionReport& r : blocks) {
    put_u32(b, r.ssrc);
    const std::int32_t lost = std::clamp<std::int32_t>(r.cumulative_lost, -0x800000, 0x7FFFFF);
    put_u32(b + 4, (std::uint32_t(r.fraction_lost) << 24) | (static_cast<std::uint32_t>(lost) & 0xFFFFFF));
    put_u32(b + 8, r.highest_sequence);
    put_u32(b + 12, r.jitter);
    put_u32(b + 16, r.last_sr);
    put_u32(b + 20, r.delay_since_last_sr);
    b += kReportBlockSize;
  }
  write_sdes(ssrc, cname, p + rr);
  return total;
}

std::size_t sender_report_size(std::size_t cname_size) { return 28 + sdes_size(cname_size); }

std::size_t write_sender_report(const SenderReport& sr, std::string_view cname,
                                std::span<std::uint8_t> out) {
  check_cname(cname);
  const std::size_t total = sender_report_size(cname.size());
  if (out.size() < total) throw std::length_error("RTCP: buffer too small for the sender report");
  std::uint8_t* p = out.data();
  put_header(p, 0, kRtcpSenderReport, 28);
  put_u32(p + 4, sr.ssrc);
  put_u32(p + 8, static_cast<std::uint32_t>(sr.ntp_time >> 32));
  put_u32(p + 12, static_cast<std::uint32_t>(sr.ntp_time));
  put_u32(p + 16, sr.rtp_time);
  put_u32(p + 20, sr.packet_count);
  put_u32(p + 24, sr.octet_count);
  write_sdes(sr.ssrc, cname, p + 28);
  return total;
}

std::int64_t ntp_to_unix_us(std::uint64_t ntp_time) {
  std::int64_t seconds = static_cast<std::int64_t>(ntp_time >> 32);
  // RFC 4330 §3: with the top bit clear, the time is in era 1 (from 2036-02-07 06:28:16 UTC).
  if (seconds < 0x80000000LL) seconds += 0x100000000LL;
  const std::uint64_t frac = ntp_time & 0xFFFFFFFFu;
  const std::int64_t us = static_cast<std::int64_t>((frac * 1'000'000 + 0x80000000u) >> 32);
  return (seconds - kNtpToUnixSeconds) * 1'000'000 + us;
}

std::uint64_t unix_us_to_ntp(std::int64_t unix_us) {
  std::int64_t seconds = unix_us / 1'000'000;
  std::int64_t us = unix_us % 1'000'000;
  if (us < 0) {
    us += 1'000'000;
    seconds -= 1;
  }
  const std::uint64_t ntp_seconds = static_cast<std::uint64_t>(seconds + kNtpToUnixSeconds) & 0xFFFFFFFFu;
  const std::uint64_t frac = ((static_cast<std::uint64_t>(us) << 32) + 500'000) / 1'000'000;
  return (ntp_seconds << 32) + frac;  // frac may round up to 2^32: carries into the seconds
}

}  // namespace vms::rtp
