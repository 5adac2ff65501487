// The body of fuzz_h264_sps and fuzz_h265_sps: parameter-set parsing and everything built from it.
//
// Input, either
//  - one NAL unit (no start code): it takes the place of the VPS, SPS or PPS of a real 64x64 stream
//    according to its type (any other type is tried as an SPS, to exercise the type checks), or
//  - Annex-B data (it begins with 00 00): its parameter sets are collected, and kinds it lacks are
//    filled in from the real stream.
// Then: parse_sps with the invariants of check_sps_info, the codec string (which must agree with the
// parse), parameter_set_id of every unit (the SPS's must equal the parsed id), the avcC / hvcC record
// and the fMP4 init segment, each either rejected with BitstreamError or structurally valid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/nal.hpp"

namespace vms::fuzz {

inline void run_sps_target(Codec codec, ByteSpan in) {
  ParameterSets ps = seed_parameter_sets(codec);
  if (in.size() >= 2 && in[0] == 0 && in[1] == 0) {
    ParameterSets found;
    try {
      collect_parameter_sets(codec, in, true, 0, found);
    } catch (const BitstreamError&) {
      return;
    }
    FUZZ_CHECK(found.codec == codec);
    if (!found.vps.empty()) ps.vps = found.vps;
    if (!found.sps.empty()) ps.sps = found.sps;
    if (!found.pps.empty()) ps.pps = found.pps;
  } else {
    NalKind kind;
    try {
      kind = classify_nal(codec, in).kind;
    } catch (const BitstreamError&) {
      return;
    }
    const Bytes unit(in.begin(), in.end());
    if (kind == NalKind::Vps && codec == Codec::H265)
      ps.vps = {unit};
    else if (kind == NalKind::Pps)
      ps.pps = {unit};
    else
      ps.sps = {unit};
  }

  const Bytes& sps = ps.sps.front();
  SpsInfo info;
  bool parsed = false;
  try {
    info = parse_sps(codec, sps);
    parsed = true;
  } catch (const BitstreamError&) {
  }
  if (parsed) {
    check_sps_info(codec, info);
    must_not_throw("codec_string / parameter_set_id of a parsed SPS", [&] {
      check_codec_string(codec, info, codec_string(codec, sps));
      // parse_sps also reads an H.264 subset SPS (type 15), which is no parameter set of its own.
      if (classify_nal(codec, sps).kind == NalKind::Sps)
        FUZZ_CHECK(parameter_set_id(codec, sps) == info.sps_id);
    });
  } else {
    try {
      (void)codec_string(codec, sps);  // H.265 reads only the SPS head, so it may still succeed
    } catch (const BitstreamError&) {
    }
  }

  for (const auto* sets : {&ps.vps, &ps.sps, &ps.pps}) {
    for (const Bytes& unit : *sets) {
      try {
        const std::uint32_t id = parameter_set_id(codec, unit);
        FUZZ_CHECK(id <= 255);
      } catch (const BitstreamError&) {
      }
    }
  }

  bool record_ok = false;
  try {
    const Bytes record = codec == Codec::H264 ? make_avcc(ps) : make_hvcc(ps);
    record_ok = true;
    FUZZ_CHECK(parsed);  // the record is built from the parsed SPS
    check_decoder_config(ps, record);
  } catch (const BitstreamError&) {
    FUZZ_CHECK(!record_ok);
  }

  try {
    const Bytes init = fmp4::make_init_segment(ps);
    FUZZ_CHECK(record_ok);  // the init segment holds that record
    check_init_segment(ps, init);
  } catch (const BitstreamError&) {
  }
}

}  // namespace vms::fuzz
