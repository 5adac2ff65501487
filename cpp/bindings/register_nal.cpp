// Bindings of the bitstream tools (vmscore/nal.hpp).
#include <pybind11/stl.h>

#include "common.hpp"
#include "vmscore/error.hpp"

namespace vms::bind {
namespace {

struct NalUnitInfo {
  std::size_t offset;
  std::size_t size;
  int type;
  std::string kind;
  bool is_vcl;
  bool is_first_slice;
};

std::vector<NalRange> split(ByteSpan data, int length_size) {
  std::vector<NalRange> units;
  if (length_size == 0)
    split_annexb(data, units);
  else
    split_length_prefixed(data, length_size, units);
  return units;
}

}  // namespace

ParameterSets parameter_sets_from(Codec codec, const py::sequence& units) {
  ParameterSets ps;
  ps.codec = codec;
  for (const py::handle& h : units) {
    const BufferView view(py::reinterpret_borrow<py::buffer>(h));
    const ByteSpan nal = view.span();
    const NalKind kind = classify_nal(codec, nal).kind;
    std::vector<Bytes>* sets = kind == NalKind::Vps   ? &ps.vps
                               : kind == NalKind::Sps ? &ps.sps
                               : kind == NalKind::Pps ? &ps.pps
                                                      : nullptr;
    if (!sets)
      throw BitstreamError(std::string("parameter_sets: a ") + nal_kind_name(kind) +
                           " NAL unit is not a parameter set");
    sets->emplace_back(nal.begin(), nal.end());
  }
  return ps;
}

void register_nal(py::module_& m) {
  py::class_<NalUnitInfo>(m, "NalUnit", "One NAL unit inside a buffer.")
      .def_readonly("offset", &NalUnitInfo::offset, "Byte offset of the unit (after its start code or length).")
      .def_readonly("size", &NalUnitInfo::size)
      .def_readonly("type", &NalUnitInfo::type, "nal_unit_type as coded.")
      .def_readonly("kind", &NalUnitInfo::kind,
                    "keyframe, slice, vps, sps, pps, sei, aud, end_of_sequence, end_of_stream, filler or other.")
      .def_readonly("is_vcl", &NalUnitInfo::is_vcl)
      .def_readonly("is_first_slice", &NalUnitInfo::is_first_slice)
      .def("__repr__", [](const NalUnitInfo& u) {
        return "NalUnit(kind='" + u.kind + "', type=" + std::to_string(u.type) +
               ", offset=" + std::to_string(u.offset) + ", size=" + std::to_string(u.size) + ")";
      });

  m.def(
      "nal_units",
      [](const py::buffer& data, const std::string& codec, int length_size) {
        const Codec c = parse_codec(codec);
        const BufferView view(data);
        const ByteSpan s = view.span();
        std::vector<NalUnitInfo> out;
        for (const NalRange& u : split(s, length_size)) {
          const NalHeader h = classify_nal(c, s.subspan(u.offset, u.size));
          out.push_back({u.offset, u.size, h.type, nal_kind_name(h.kind), h.is_vcl, h.is_first_slice});
        }
        return out;
      },
      py::arg("data"), py::arg("codec"), py::arg("length_size") = 0,
      "Splits Annex-B data (length_size=0) or length-prefixed data (1, 2 or 4) into NAL units.");

  m.def(
      "access_units",
      [](const py::buffer& data, const std::string& codec) {
        const Codec c = parse_codec(codec);
        const BufferView view(data);
        std::vector<AccessUnitRange> aus;
        {
          py::gil_scoped_release release;
          split_access_units(c, view.span(), aus);
        }
        std::vector<std::tuple<std::size_t, std::size_t, bool>> out;
        out.reserve(aus.size());
        for (const auto& a : aus) out.emplace_back(a.offset, a.size, a.is_keyframe);
        return out;
      },
      py::arg("data"), py::arg("codec"),
      "Splits an Annex-B elementary stream into access units: (offset, size, is_keyframe) tuples.");

  m.def(
      "annexb_to_avcc",
      [](const py::buffer& data, int length_size) {
        const BufferView view(data);
        Bytes out;
        annexb_to_length_prefixed(view.span(), out, length_size);
        return to_pybytes(out);
      },
      py::arg("data"), py::arg("length_size") = 4,
      "Converts Annex-B (start codes) to length-prefixed NAL units.");

  m.def(
      "avcc_to_annexb",
      [](const py::buffer& data, int length_size) {
        const BufferView view(data);
        Bytes out;
        length_prefixed_to_annexb(view.span(), length_size, out);
        return to_pybytes(out);
      },
      py::arg("data"), py::arg("length_size") = 4,
      "Converts length-prefixed NAL units to Annex-B with 4-byte start codes.");

  py::class_<SpsInfo>(m, "Sps", "What a sequence parameter set says about the video.")
      .def_property_readonly("codec", [](const SpsInfo& s) { return std::string(codec_name(s.codec)); })
      .def_readonly("sps_id", &SpsInfo::sps_id)
      .def_readonly("profile_idc", &SpsInfo::profile_idc)
      .def_readonly("profile_compatibility", &SpsInfo::profile_compatibility)
      .def_readonly("level_idc", &SpsInfo::level_idc)
      .def_readonly("profile_space", &SpsInfo::profile_space)
      .def_readonly("tier_flag", &SpsInfo::tier_flag)
      .def_readonly("chroma_format_idc", &SpsInfo::chroma_format_idc)
      .def_readonly("bit_depth_luma", &SpsInfo::bit_depth_luma)
      .def_readonly("bit_depth_chroma", &SpsInfo::bit_depth_chroma)
      .def_readonly("coded_width", &SpsInfo::coded_width)
      .def_readonly("coded_height", &SpsInfo::coded_height)
      .def_readonly("width", &SpsInfo::width)
      .def_readonly("height", &SpsInfo::height)
      .def_property_readonly("crop", [](const SpsInfo& s) {
        return std::make_tuple(s.crop_left, s.crop_right, s.crop_top, s.crop_bottom);
      }, "Cropping (left, right, top, bottom) in luma samples.")
      .def_readonly("frame_mbs_only", &SpsInfo::frame_mbs_only)
      .def_property_readonly("sample_aspect_ratio", [](const SpsInfo& s) {
        return std::make_tuple(s.sar_width, s.sar_height);
      })
      .def_readonly("timing_info_present", &SpsInfo::timing_info_present)
      .def_readonly("num_units_in_tick", &SpsInfo::num_units_in_tick)
      .def_readonly("time_scale", &SpsInfo::time_scale)
      .def_readonly("fixed_frame_rate", &SpsInfo::fixed_frame_rate)
      .def_property_readonly("frame_rate", &SpsInfo::frame_rate,
                             "Frames per second from VUI timing, 0.0 when absent.")
      .def_readonly("max_num_reorder_frames", &SpsInfo::max_num_reorder_frames)
      .def_readonly("max_sub_layers", &SpsInfo::max_sub_layers)
      .def_readonly("temporal_id_nesting", &SpsInfo::temporal_id_nesting)
      .def_readonly("min_spatial_segmentation", &SpsInfo::min_spatial_segmentation)
      .def("__repr__", [](const SpsInfo& s) {
        return std::string("Sps(codec='") + codec_name(s.codec) + "', profile_idc=" +
               std::to_string(s.profile_idc) + ", level_idc=" + std::to_string(s.level_idc) +
               ", width=" + std::to_string(s.width) + ", height=" + std::to_string(s.height) + ")";
      });

  m.def(
      "parse_sps",
      [](const py::buffer& nal, const std::string& codec) {
        const BufferView view(nal);
        return parse_sps(parse_codec(codec), view.span());
      },
      py::arg("nal"), py::arg("codec"), "Parses an SPS NAL unit (header included, no start code).");

  m.def(
      "decoder_config_record",
      [](const std::string& codec, const py::sequence& parameter_sets) {
        const Codec c = parse_codec(codec);
        const ParameterSets ps = parameter_sets_from(c, parameter_sets);
        return to_pybytes(c == Codec::H264 ? make_avcc(ps) : make_hvcc(ps));
      },
      py::arg("codec"), py::arg("parameter_sets"),
      "The avcC (H.264) or hvcC (H.265) record body for the given VPS/SPS/PPS NAL units.");

  m.def(
      "codec_string",
      [](const py::buffer& sps, const std::string& codec) {
        const BufferView view(sps);
        return codec_string(parse_codec(codec), view.span());
      },
      py::arg("sps"), py::arg("codec"), "The RFC 6381 codecs parameter, e.g. 'avc1.64001f'.");

  m.def(
      "parameter_sets",
      [](const py::buffer& data, const std::string& codec, int length_size) {
        const BufferView view(data);
        ParameterSets ps;
        collect_parameter_sets(parse_codec(codec), view.span(), length_size == 0, length_size, ps);
        py::list all;
        for (const auto* v : {&ps.vps, &ps.sps, &ps.pps})
          for (const Bytes& b : *v) all.append(to_pybytes(b));
        return all;
      },
      py::arg("data"), py::arg("codec"), py::arg("length_size") = 0,
      "The parameter sets (VPS, SPS, PPS NAL units, in that order) carried in the data.");
}

}  // namespace vms::bind
