// Audio depacketization: AAC in RFC 3640 mpeg4-generic (§3.2.1 AU-header section, §3.2.2
// auxiliary section, §3.2.3 fragmented access units) and G.711 PCMU / PCMA (RFC 3551).
// Pure code; one depacketizer belongs to one thread at a time.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "vmscore/depacketize.hpp"

namespace vms::rtp {
namespace {

// Reads big-endian bit fields of up to 32 bits; reports running past `limit_bits` instead of throwing.
class Bits {
 public:
  Bits(ByteSpan data, std::size_t limit_bits) : data_(data), limit_(limit_bits) {}
  bool read(int n, std::uint32_t& v) {
    if (n == 0) {
      v = 0;
      return true;
    }
    if (static_cast<std::size_t>(n) > limit_ - pos_) return false;
    std::uint64_t acc = 0;
    for (int i = 0; i < n; ++i, ++pos_)
      acc = (acc << 1) | ((data_[pos_ >> 3] >> (7 - (pos_ & 7))) & 1);
    v = static_cast<std::uint32_t>(acc);
    return true;
  }
  std::size_t position() const { return pos_; }

 private:
  ByteSpan data_;
  std::size_t limit_;
  std::size_t pos_ = 0;
};

std::uint32_t saturating_add(std::uint32_t a, std::uint32_t b) {
  return a > std::numeric_limits<std::uint32_t>::max() - b ? std::numeric_limits<std::uint32_t>::max()
                                                           : a + b;
}

void check_length(int v, const char* what) {
  if (v < 0 || v > 32) throw std::invalid_argument(std::string("AAC: ") + what + " must be 0..32");
}

constexpr std::size_t kMaxAuHeaders = 1024;

}  // namespace

AacDepacketizer::AacDepacketizer(AacOptions opt) : opt_(opt) {
  if (opt_.size_length < 1 || opt_.size_length > 32)
    throw std::invalid_argument("AAC: sizelength must be 1..32 (constant-size streams are not supported)");
  check_length(opt_.index_length, "indexlength");
  check_length(opt_.index_delta_length, "indexdeltalength");
  check_length(opt_.cts_delta_length, "ctsdeltalength");
  check_length(opt_.dts_delta_length, "dtsdeltalength");
  check_length(opt_.stream_state_indication, "streamstateindication");
  check_length(opt_.auxiliary_data_size_length, "auxiliarydatasizelength");
  if (opt_.samples_per_frame == 0) throw std::invalid_argument("AAC: samples_per_frame must be positive");
  if (opt_.max_frame_bytes == 0) throw std::invalid_argument("AAC: max_frame_bytes must be positive");
  headers_.reserve(16);
}

void AacDepacketizer::reset() {
  drop_fragment();
  out_.clear();
}

void AacDepacketizer::drop_fragment() {
  if (!in_frag_) return;
  in_frag_ = false;
  frag_.clear();
  ++stats_.dropped_frames;
  pending_dropped_ = saturating_add(pending_dropped_, 1);
}

void AacDepacketizer::emit(ByteSpan frame, std::uint32_t timestamp) {
  offsets_.push_back(buf_.size());
  buf_.insert(buf_.end(), frame.begin(), frame.end());
  AccessUnit au;
  au.kind = MediaKind::Audio;
  au.rtp_timestamp = timestamp;
  au.keyframe = true;
  out_.push_back(au);
}

void AacDepacketizer::finish_outputs() {
  // Spans are made once every frame is in buf_, which may have moved while growing.
  for (std::size_t i = 0; i < out_.size(); ++i) {
    const std::size_t end = i + 1 < out_.size() ? offsets_[i + 1] : buf_.size();
    out_[i].data = ByteSpan(buf_.data() + offsets_[i], end - offsets_[i]);
  }
  if (out_.empty()) return;
  AccessUnit& first = out_.front();
  first.gap = delivered_any_ && (pending_lost_ > 0 || pending_dropped_ > 0);
  first.lost_packets = pending_lost_;
  first.dropped_frames = pending_dropped_;
  pending_lost_ = pending_dropped_ = 0;
  delivered_any_ = true;
  stats_.access_units += out_.size();
}

std::span<const AccessUnit> AacDepacketizer::push(const Packet& p, std::uint32_t lost) {
  out_.clear();
  offsets_.clear();
  buf_.clear();
  ++stats_.packets;
  if (lost > 0) {
    stats_.lost_packets += lost;
    pending_lost_ = saturating_add(pending_lost_, lost);
    drop_fragment();
  }
  if ((opt_.payload_type >= 0 && p.payload_type != opt_.payload_type) || p.payload.empty()) {
    ++stats_.ignored_packets;
    return out_;
  }
  if (repeated(p)) return out_;
  auto fail = [&](const char* why) -> std::span<const AccessUnit> {
    ++stats_.errors;
    last_error_ = why;
    drop_fragment();
    out_.clear();
    return out_;
  };
  const ByteSpan d = p.payload;
  if (d.size() < 2) return fail("AAC: payload shorter than AU-headers-length");
  const std::size_t header_bits = load_be16(d.data());
  const std::size_t header_bytes = (header_bits + 7) / 8;
  if (header_bytes > d.size() - 2) return fail("AAC: AU headers run past the packet");
  Bits bits(d.subspan(2, header_bytes), header_bits);
  headers_.clear();
  std::uint32_t index = 0;
  while (bits.position() < header_bits) {
    std::uint32_t size = 0, idx = 0, flag = 0, skipped = 0;
    const bool first = headers_.empty();
    bool ok = bits.read(opt_.size_length, size) &&
              bits.read(first ? opt_.index_length : opt_.index_delta_length, idx);
    if (ok && opt_.cts_delta_length > 0) ok = bits.read(1, flag) && (!flag || bits.read(opt_.cts_delta_length, skipped));
    if (ok && opt_.dts_delta_length > 0) ok = bits.read(1, flag) && (!flag || bits.read(opt_.dts_delta_length, skipped));
    if (ok && opt_.random_access_indication) ok = bits.read(1, skipped);
    if (ok) ok = bits.read(opt_.stream_state_indication, skipped);
    if (!ok) return fail("AAC: an AU header runs past AU-headers-length");
    if (headers_.size() >= kMaxAuHeaders) return fail("AAC: too many AU headers in one packet");
    // AU-Index-delta counts the frames between consecutive AUs, minus one (§3.2.1.1).
    index = first ? idx : index + idx + 1;
    headers_.push_back({size, index});
  }
  std::size_t pos = 2 + header_bytes;
  if (opt_.auxiliary_data_size_length > 0) {
    // §3.2.2: the auxiliary section's size field, then that many bits, padded to a byte.
    Bits aux(d.subspan(pos), (d.size() - pos) * 8);
    std::uint32_t aux_bits = 0;
    if (!aux.read(opt_.auxiliary_data_size_length, aux_bits)) return fail("AAC: auxiliary section runs past the packet");
    const std::uint64_t aux_bytes = (std::uint64_t(opt_.auxiliary_data_size_length) + aux_bits + 7) / 8;
    if (aux_bytes > d.size() - pos) return fail("AAC: auxiliary section runs past the packet");
    pos += static_cast<std::size_t>(aux_bytes);
  }
  const ByteSpan data = d.subspan(pos);

  if (in_frag_) {
    if (p.timestamp == frag_ts_ && headers_.size() == 1 && headers_[0].size == frag_size_) {
      if (data.size() > frag_size_ - frag_.size()) return fail("AAC: fragments larger than their frame");
      frag_.insert(frag_.end(), data.begin(), data.end());
      if (frag_.size() == frag_size_) {
        in_frag_ = false;
        emit(frag_, frag_ts_);
        frag_.clear();
        finish_outputs();
      }
      return out_;
    }
    // The rest of the fragmented frame never came.
    drop_fragment();
    ++stats_.errors;
    last_error_ = "AAC: a fragmented frame was not completed";
  }
  if (headers_.empty()) return out_;
  if (headers_.size() == 1 && headers_[0].size > data.size()) {
    // The marker is on the last fragment only: this is the tail of a frame whose start was lost
    // (and already counted dropped).
    if (p.marker) return pending_lost_ > 0 ? out_ : fail("AAC: the last fragment of a frame without its start");
    // §3.2.3: the first fragment of a frame larger than a packet; the AU-size is the whole frame's.
    if (headers_[0].size > opt_.max_frame_bytes) return fail("AAC: frame larger than the configured limit");
    in_frag_ = true;
    frag_size_ = headers_[0].size;
    frag_ts_ = p.timestamp;
    frag_.assign(data.begin(), data.end());
    return out_;
  }
  std::size_t off = 0;
  for (const Header& h : headers_) {
    if (h.size > data.size() - off) return fail("AAC: AU sizes run past the packet");
    if (h.size > opt_.max_frame_bytes) return fail("AAC: frame larger than the configured limit");
    off += h.size;
  }
  off = 0;
  for (const Header& h : headers_) {
    // Frames in one packet are consecutive (or interleaved by index) at samples_per_frame each.
    const std::uint32_t ts = p.timestamp + (h.index - headers_.front().index) * opt_.samples_per_frame;
    if (h.size > 0) emit(data.subspan(off, h.size), ts);
    off += h.size;
  }
  finish_outputs();
  return out_;
}

std::span<const AccessUnit> G711Depacketizer::push(const Packet& p, std::uint32_t lost) {
  ++stats_.packets;
  if (lost > 0) {
    stats_.lost_packets += lost;
    pending_lost_ = saturating_add(pending_lost_, lost);
  }
  if ((payload_type_ >= 0 && p.payload_type != payload_type_) || p.payload.empty()) {
    ++stats_.ignored_packets;
    return {};
  }
  if (repeated(p)) return {};
  buf_.assign(p.payload.begin(), p.payload.end());
  out_ = AccessUnit{};
  out_.kind = MediaKind::Audio;
  out_.data = buf_;
  out_.rtp_timestamp = p.timestamp;
  out_.keyframe = true;
  out_.gap = delivered_any_ && pending_lost_ > 0;
  out_.lost_packets = pending_lost_;
  pending_lost_ = 0;
  delivered_any_ = true;
  ++stats_.access_units;
  return {&out_, 1};
}

}  // namespace vms::rtp
