// Parameter-set collection from Annex-B or length-prefixed access units, checked against a reference
// built from the same units: per kind, one entry per id in first-seen order holding the last unit
// with that id. complete() must agree with the lists, and complete sets either build a valid
// avcC / hvcC record and init segment or are rejected with BitstreamError.
//
// Input: byte 0, bit 0: H.265 (else H.264); bits 1-2: framing (0 Annex-B, 1/2/3 length-prefixed
// with 1/2/4-byte lengths). The rest is the data.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "vmscore/error.hpp"
#include "vmscore/fmp4.hpp"
#include "vmscore/nal.hpp"

using namespace vms;

namespace {

std::vector<Bytes>* list_for(ParameterSets& ps, NalKind kind) {
  return kind == NalKind::Vps ? &ps.vps : kind == NalKind::Sps ? &ps.sps
                                        : kind == NalKind::Pps ? &ps.pps
                                                               : nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Codec codec = (data[0] & 1) ? Codec::H265 : Codec::H264;
  static constexpr int kLengthSizes[4] = {0, 1, 2, 4};
  const int length_size = kLengthSizes[(data[0] >> 1) & 3];
  const bool annexb = length_size == 0;
  const ByteSpan in(data + 1, size - 1);

  ParameterSets got;
  try {
    collect_parameter_sets(codec, in, annexb, length_size, got);
  } catch (const BitstreamError&) {
    return 0;
  }
  FUZZ_CHECK(got.codec == codec);

  // The reference: every step already succeeded inside collect_parameter_sets.
  ParameterSets want;
  want.codec = codec;
  fuzz::must_not_throw("re-walking accepted parameter sets", [&] {
    std::vector<NalRange> units;
    if (annexb)
      split_annexb(in, units);
    else
      split_length_prefixed(in, length_size, units);
    std::vector<std::uint32_t> vps_ids, sps_ids, pps_ids;
    for (const NalRange& u : units) {
      const ByteSpan nal = in.subspan(u.offset, u.size);
      const NalKind kind = classify_nal(codec, nal).kind;
      std::vector<Bytes>* list = list_for(want, kind);
      if (!list) continue;
      std::vector<std::uint32_t>& list_ids =
          kind == NalKind::Vps ? vps_ids : kind == NalKind::Sps ? sps_ids : pps_ids;
      const std::uint32_t id = parameter_set_id(codec, nal);
      std::size_t i = 0;
      while (i < list_ids.size() && list_ids[i] != id) ++i;
      if (i == list_ids.size()) {
        list_ids.push_back(id);
        list->emplace_back(nal.begin(), nal.end());
      } else {
        (*list)[i].assign(nal.begin(), nal.end());
      }
    }
    FUZZ_CHECK(vps_ids.size() <= 16 && sps_ids.size() <= 32 && pps_ids.size() <= 256);
  });
  FUZZ_CHECK(got.vps == want.vps && got.sps == want.sps && got.pps == want.pps);
  if (codec == Codec::H264) FUZZ_CHECK(got.vps.empty());
  FUZZ_CHECK(got.complete() ==
             (!got.sps.empty() && !got.pps.empty() && (codec == Codec::H264 || !got.vps.empty())));
  if (!got.complete()) return 0;

  try {
    const Bytes record = codec == Codec::H264 ? make_avcc(got) : make_hvcc(got);
    fuzz::check_decoder_config(got, record);
  } catch (const BitstreamError&) {
  }
  try {
    const Bytes init = fmp4::make_init_segment(got);
    fuzz::check_init_segment(got, init);
  } catch (const BitstreamError&) {
  }
  return 0;
}
