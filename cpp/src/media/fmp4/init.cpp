// The fMP4 init segment: ftyp + moov for one video track (ISO/IEC 14496-12 §4.3, §8.2-8.8,
// §12.1.3 VisualSampleEntry; ISO/IEC 14496-15 sample entries avc1 / hvc1). Sample tables are empty
// and mvex/trex is present, as the MSE byte-stream format requires.
#include "media/boxes.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"

namespace vms::fmp4 {
namespace {

void visual_sample_entry(ByteWriter& w, const ParameterSets& ps, const SpsInfo& sps) {
  // hvc1/avc1 (not hev1/avc3): parameter sets only in the configuration record, which Safari needs.
  const std::size_t entry = w.begin_box(ps.codec == Codec::H264 ? "avc1" : "hvc1");
  w.zeros(6);  // reserved
  w.u16(1);    // data_reference_index
  w.zeros(16); // pre_defined, reserved, pre_defined[3]
  w.u16(static_cast<std::uint16_t>(sps.width));
  w.u16(static_cast<std::uint16_t>(sps.height));
  w.u32(0x00480000);  // 72 dpi
  w.u32(0x00480000);
  w.u32(0);           // reserved
  w.u16(1);           // frame_count
  w.zeros(32);        // compressorname
  w.u16(0x0018);      // depth
  w.u16(0xFFFF);      // pre_defined = -1
  const std::size_t cfg = w.begin_box(ps.codec == Codec::H264 ? "avcC" : "hvcC");
  w.raw(ps.codec == Codec::H264 ? make_avcc(ps) : make_hvcc(ps));
  w.end_box(cfg);
  if (sps.sar_width != sps.sar_height && sps.sar_width != 0 && sps.sar_height != 0) {
    // Anamorphic sub-streams (704x480 shown at 16:9) need pasp or players show them squeezed.
    const std::size_t pasp = w.begin_box("pasp");
    w.u32(sps.sar_width);
    w.u32(sps.sar_height);
    w.end_box(pasp);
  }
  w.end_box(entry);
}

}  // namespace

Bytes make_init_segment(const ParameterSets& ps) {
  if (!ps.complete())
    throw BitstreamError(std::string("fMP4 init segment: incomplete ") + codec_name(ps.codec) +
                         " parameter sets (need " +
                         (ps.codec == Codec::H265 ? "VPS, SPS and PPS)" : "SPS and PPS)"));
  const SpsInfo sps = parse_sps(ps.codec, ps.sps.front());
  if (sps.width > 0xFFFF || sps.height > 0xFFFF) throw BitstreamError("fMP4: picture too large");

  Bytes out;
  out.reserve(1024);
  ByteWriter w(out);

  const std::size_t ftyp = w.begin_box("ftyp");
  // iso5/iso6 brands: default-base-is-moof and tfdt are in use (14496-12 §A.2); Safari needs a
  // compatible brand it knows.
  w.fourcc("iso5");
  w.u32(512);
  w.fourcc("iso5");
  w.fourcc("iso6");
  w.fourcc("mp41");
  w.end_box(ftyp);

  const std::size_t moov = w.begin_box("moov");
  // Durations unknown (0): fragments follow.
  const std::size_t mvhd = media::begin_timed_box(w, "mvhd", 0, kTimescale, 0);
  media::mvhd_rest(w);
  w.end_box(mvhd);

  const std::size_t trak = w.begin_box("trak");
  const std::size_t tkhd = media::begin_timed_box(w, "tkhd", 0x000003, 1, 0);  // enabled, in movie
  // Presentation size: the picture stretched by its sample aspect ratio.
  std::uint64_t display_width = sps.width;
  if (sps.sar_width != 0 && sps.sar_height != 0)
    display_width = (std::uint64_t(sps.width) * sps.sar_width + sps.sar_height / 2) / sps.sar_height;
  media::tkhd_rest(w, static_cast<std::uint32_t>(display_width << 16), sps.height << 16);
  w.end_box(tkhd);

  const std::size_t mdia = w.begin_box("mdia");
  const std::size_t mdhd = media::begin_timed_box(w, "mdhd", 0, kTimescale, 0);
  media::mdhd_rest(w);
  w.end_box(mdhd);
  media::video_handler(w);

  const std::size_t minf = w.begin_box("minf");
  media::video_media_info(w);

  const std::size_t stbl = w.begin_box("stbl");
  const std::size_t stsd = w.begin_full_box("stsd", 0, 0);
  w.u32(1);
  visual_sample_entry(w, ps, sps);
  w.end_box(stsd);
  for (const char* type : {"stts", "stsc", "stco"}) {
    w.u32(16);  // an empty full box: size, type, version+flags, entry_count = 0
    w.raw(type, 4);
    w.u32(0);
    w.u32(0);
  }
  const std::size_t stsz = w.begin_full_box("stsz", 0, 0);
  w.u32(0);  // sample_size
  w.u32(0);  // sample_count
  w.end_box(stsz);
  w.end_box(stbl);
  w.end_box(minf);
  w.end_box(mdia);
  w.end_box(trak);

  const std::size_t mvex = w.begin_box("mvex");
  const std::size_t trex = w.begin_full_box("trex", 0, 0);
  w.u32(1);  // track_ID
  w.u32(1);  // default_sample_description_index
  w.u32(0);  // default_sample_duration
  w.u32(0);  // default_sample_size
  w.u32(kNonKeyframeFlags);
  w.end_box(trex);
  w.end_box(mvex);
  w.end_box(moov);
  return out;
}

}  // namespace vms::fmp4
