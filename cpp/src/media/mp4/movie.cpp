// Progressive MP4 headers (ISO/IEC 14496-12 §8.2-8.7: mvhd, tkhd, elst, mdhd, stsd, stts, ctts,
// stss, stsz, stsc, co64).
#include <limits>

#include "media/boxes.hpp"
#include "vmscore/error.hpp"
#include "vmscore/mp4.hpp"

namespace vms::mp4 {
namespace {

constexpr std::uint32_t kTimescale = 90000;
constexpr std::uint64_t kU32Max = std::numeric_limits<std::uint32_t>::max();

// Run-length tables: (count, value) pairs of consecutive equal values.
template <typename Value, typename Get>
std::vector<std::pair<std::uint32_t, Value>> runs(const std::vector<Sample>& samples, Get get) {
  std::vector<std::pair<std::uint32_t, Value>> out;
  for (const Sample& s : samples) {
    const Value v = get(s);
    if (!out.empty() && out.back().second == v)
      ++out.back().first;
    else
      out.emplace_back(1, v);
  }
  return out;
}

void sample_tables(ByteWriter& w, const Movie& m, std::vector<std::size_t>& chunk_offset_at) {
  const std::size_t stbl = w.begin_box("stbl");

  const std::size_t stsd = w.begin_full_box("stsd", 0, 0);
  w.u32(static_cast<std::uint32_t>(m.sample_entries.size()));
  for (const Bytes& entry : m.sample_entries) w.raw(entry);
  w.end_box(stsd);

  const auto durations = runs<std::uint32_t>(m.samples, [](const Sample& s) { return s.duration; });
  const std::size_t stts = w.begin_full_box("stts", 0, 0);
  w.u32(static_cast<std::uint32_t>(durations.size()));
  for (const auto& [count, delta] : durations) {
    w.u32(count);
    w.u32(delta);
  }
  w.end_box(stts);

  bool any_offset = false, negative = false;
  for (const Sample& s : m.samples) {
    any_offset |= s.composition_offset != 0;
    negative |= s.composition_offset < 0;
  }
  if (any_offset) {
    const auto offsets =
        runs<std::int32_t>(m.samples, [](const Sample& s) { return s.composition_offset; });
    // Version 1 stores signed offsets; version 0 (unsigned) is what older readers know.
    const std::size_t ctts = w.begin_full_box("ctts", negative ? 1 : 0, 0);
    w.u32(static_cast<std::uint32_t>(offsets.size()));
    for (const auto& [count, offset] : offsets) {
      w.u32(count);
      w.u32(static_cast<std::uint32_t>(offset));
    }
    w.end_box(ctts);
  }

  std::uint32_t sync = 0;
  for (const Sample& s : m.samples) sync += s.keyframe;
  if (sync != m.samples.size()) {
    const std::size_t stss = w.begin_full_box("stss", 0, 0);
    w.u32(sync);
    for (std::size_t i = 0; i < m.samples.size(); ++i)
      if (m.samples[i].keyframe) w.u32(static_cast<std::uint32_t>(i + 1));
    w.end_box(stss);
  }

  bool same_size = true;
  for (const Sample& s : m.samples) same_size &= s.size == m.samples.front().size;
  const std::size_t stsz = w.begin_full_box("stsz", 0, 0);
  w.u32(same_size ? m.samples.front().size : 0);
  w.u32(static_cast<std::uint32_t>(m.samples.size()));
  if (!same_size)
    for (const Sample& s : m.samples) w.u32(s.size);
  w.end_box(stsz);

  // stsc: a new entry wherever samples-per-chunk or the sample description changes.
  std::vector<std::size_t> firsts;
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    const Chunk& c = m.chunks[i];
    if (i == 0 || c.samples != m.chunks[i - 1].samples ||
        c.sample_description != m.chunks[i - 1].sample_description)
      firsts.push_back(i);
  }
  const std::size_t stsc = w.begin_full_box("stsc", 0, 0);
  w.u32(static_cast<std::uint32_t>(firsts.size()));
  for (std::size_t i : firsts) {
    w.u32(static_cast<std::uint32_t>(i + 1));
    w.u32(m.chunks[i].samples);
    w.u32(m.chunks[i].sample_description);
  }
  w.end_box(stsc);

  const std::size_t co64 = w.begin_full_box("co64", 0, 0);
  w.u32(static_cast<std::uint32_t>(m.chunks.size()));
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    chunk_offset_at.push_back(w.size());
    w.u64(0);  // patched once the header's size is known
  }
  w.end_box(co64);
  w.end_box(stbl);
}

void check(const Movie& m) {
  if (m.samples.empty()) throw MuxError("MP4: no samples");
  if (m.sample_entries.empty()) throw MuxError("MP4: no sample entry");
  if (m.samples.size() > kU32Max || m.chunks.size() > kU32Max) throw MuxError("MP4: too many samples");
  std::uint64_t in_chunks = 0, bytes = 0;
  for (const Chunk& c : m.chunks) {
    if (c.samples == 0) throw MuxError("MP4: empty chunk");
    if (c.sample_description == 0 || c.sample_description > m.sample_entries.size())
      throw MuxError("MP4: chunk refers to a missing sample entry");
    in_chunks += c.samples;
  }
  if (in_chunks != m.samples.size()) throw MuxError("MP4: chunks do not cover the samples");
  for (const Sample& s : m.samples) bytes += s.size;
  if (bytes != m.payload_size) throw MuxError("MP4: sample sizes do not add up to the payload");
}

}  // namespace

Bytes make_progressive_header(const Movie& m) {
  check(m);
  std::uint64_t media_duration = 0;
  for (const Sample& s : m.samples) media_duration += s.duration;

  Bytes out;
  out.reserve(1024 + m.samples.size() * 12 + m.chunks.size() * 20);
  ByteWriter w(out);

  const std::size_t ftyp = w.begin_box("ftyp");
  w.fourcc("isom");
  w.u32(512);
  w.fourcc("isom");
  w.fourcc("iso2");
  if (m.codec == Codec::H264) w.fourcc("avc1");
  w.fourcc("mp41");
  w.end_box(ftyp);

  const std::size_t moov = w.begin_box("moov");
  const std::size_t mvhd = media::begin_timed_box(w, "mvhd", 0, kTimescale, m.edit_duration);
  media::mvhd_rest(w);
  w.end_box(mvhd);

  const std::size_t trak = w.begin_box("trak");
  const std::size_t tkhd = media::begin_timed_box(w, "tkhd", 0x000003, 1, m.edit_duration);
  media::tkhd_rest(w, m.display_width, m.display_height);
  w.end_box(tkhd);

  const std::size_t edts = w.begin_box("edts");
  const bool elst_v1 = m.edit_duration > kU32Max ||
                       m.edit_media_time > std::uint64_t(std::numeric_limits<std::int32_t>::max());
  const std::size_t elst = w.begin_full_box("elst", elst_v1 ? 1 : 0, 0);
  w.u32(1);
  if (elst_v1) {
    w.u64(m.edit_duration);
    w.u64(m.edit_media_time);
  } else {
    w.u32(static_cast<std::uint32_t>(m.edit_duration));
    w.u32(static_cast<std::uint32_t>(m.edit_media_time));
  }
  w.u16(1);  // media_rate_integer
  w.u16(0);
  w.end_box(elst);
  w.end_box(edts);

  const std::size_t mdia = w.begin_box("mdia");
  const std::size_t mdhd = media::begin_timed_box(w, "mdhd", 0, kTimescale, media_duration);
  media::mdhd_rest(w);
  w.end_box(mdhd);
  media::video_handler(w);
  const std::size_t minf = w.begin_box("minf");
  media::video_media_info(w);
  std::vector<std::size_t> chunk_offset_at;
  sample_tables(w, m, chunk_offset_at);
  w.end_box(minf);
  w.end_box(mdia);
  w.end_box(trak);
  if (out.size() - moov > kU32Max) throw MuxError("MP4: moov larger than 4 GiB");
  w.end_box(moov);

  if (m.payload_size + 8 > kU32Max) {
    w.u32(1);
    w.fourcc("mdat");
    w.u64(m.payload_size + 16);
  } else {
    w.u32(static_cast<std::uint32_t>(m.payload_size + 8));
    w.fourcc("mdat");
  }

  const std::uint64_t payload_start = out.size();
  for (std::size_t i = 0; i < m.chunks.size(); ++i) {
    const std::uint64_t offset = payload_start + m.chunks[i].payload_offset;
    w.patch_u32(chunk_offset_at[i], static_cast<std::uint32_t>(offset >> 32));
    w.patch_u32(chunk_offset_at[i] + 4, static_cast<std::uint32_t>(offset));
  }
  return out;
}

}  // namespace vms::mp4
