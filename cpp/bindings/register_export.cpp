// Bindings of segment scanning and export: scan_segment (what start-up recovery trims to) and
// ExportPlan (one MP4 for a time range: size up front, any byte range, or the whole file). File I/O
// runs with the GIL released; a progress callback runs on the calling thread between steps.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <optional>
#include <utility>

#include "common.hpp"
#include "vmscore/export.hpp"
#include "vmscore/fmp4_reader.hpp"
#include "vmscore/segment_file.hpp"

namespace vms::bind {
namespace {

using fmp4::SegmentScan;

// Bytes written between two progress reports.
constexpr std::uint64_t kWriteStep = 64u << 20;

py::object text_or_none(const std::string& s) {
  if (s.empty()) return py::none();
  // Opaque text from a file: bytes that are not UTF-8 become U+FFFD rather than an error.
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeUTF8(s.data(), static_cast<py::ssize_t>(s.size()), "replace"));
}

py::list parameter_set_list(const ParameterSets& ps) {
  py::list out;
  for (const auto* sets : {&ps.vps, &ps.sps, &ps.pps})
    for (const Bytes& unit : *sets) out.append(to_pybytes(unit));
  return out;
}

SegmentScan scan_file(const std::filesystem::path& path, bool samples) {
  py::gil_scoped_release release;
  return scan_segment_file(path.string(), samples).scan;
}

ExportPlan make_plan(const std::vector<std::pair<std::filesystem::path, std::int64_t>>& segments,
                     std::int64_t start_wall_us, std::int64_t end_wall_us) {
  std::vector<ExportSegment> list;
  list.reserve(segments.size());
  for (const auto& [path, start] : segments) list.push_back({path.string(), start});
  py::gil_scoped_release release;
  return ExportPlan(list, start_wall_us, end_wall_us);
}

py::bytes read_range(const ExportPlan& plan, std::int64_t offset, std::int64_t length) {
  if (offset < 0 || length < 0) throw py::value_error("offset and length must not be negative");
  const auto at = static_cast<std::uint64_t>(offset);
  const std::uint64_t n =
      at >= plan.size() ? 0 : std::min<std::uint64_t>(static_cast<std::uint64_t>(length), plan.size() - at);
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(n));
  if (!raw) throw py::error_already_set();
  auto out = py::reinterpret_steal<py::bytes>(raw);
  // The new bytes object is not visible to other threads yet: fill it without the GIL.
  auto* dst = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(raw));
  {
    py::gil_scoped_release release;
    plan.read(at, {dst, static_cast<std::size_t>(n)});
  }
  return out;
}

std::uint64_t write_file(const ExportPlan& plan, const std::filesystem::path& path,
                         const py::object& progress) {
  std::optional<ExportWriter> writer;
  {
    py::gil_scoped_release release;
    writer.emplace(plan, path.string());
  }
  // If the callback raises, the writer is destroyed on the way out and removes the partial file.
  while (!writer->done()) {
    {
      py::gil_scoped_release release;
      writer->write_some(kWriteStep);
    }
    if (!progress.is_none()) progress(writer->written(), plan.size());
  }
  {
    py::gil_scoped_release release;
    writer->finish();
  }
  return writer->written();
}

}  // namespace

void register_export(py::module_& m) {
  m.attr("SEGMENT_METADATA_UUID") = py::bytes(reinterpret_cast<const char*>(fmp4::kSegmentMetadataUuid),
                                              sizeof fmp4::kSegmentMetadataUuid);
  m.def(
      "segment_metadata_box",
      [](const std::string& text) { return to_pybytes(fmp4::make_metadata_box(as_bytes(text))); },
      py::arg("text"),
      "The top-level uuid box that carries a segment's metadata (UTF-8 text, JSON by convention); "
      "it goes right after the init segment.");

  py::class_<fmp4::SegmentSample>(m, "SegmentSample", "One sample of a scanned segment file.")
      .def_readonly("offset", &fmp4::SegmentSample::offset, "Byte offset in the file.")
      .def_readonly("size", &fmp4::SegmentSample::size)
      .def_readonly("dts_90k", &fmp4::SegmentSample::dts_90k)
      .def_readonly("duration_90k", &fmp4::SegmentSample::duration_90k)
      .def_readonly("composition_offset_90k", &fmp4::SegmentSample::composition_offset_90k)
      .def_readonly("keyframe", &fmp4::SegmentSample::keyframe);

  py::class_<SegmentScan>(m, "SegmentScan", "What a segment file holds, up to its first problem.")
      .def_readonly("file_size", &SegmentScan::file_size)
      .def_readonly("init_size", &SegmentScan::init_size)
      .def_readonly("valid_end", &SegmentScan::valid_end,
                    "Just after the last complete fragment: what a crashed segment is trimmed to.")
      .def_property_readonly("metadata", [](const SegmentScan& s) { return text_or_none(s.metadata); },
                             "The metadata box's text, or None.")
      .def_property_readonly("problem", [](const SegmentScan& s) { return text_or_none(s.problem); },
                             "The first thing wrong after valid_end, or None.")
      .def_property_readonly("codec", [](const SegmentScan& s) { return std::string(codec_name(s.track.codec)); })
      .def_property_readonly("codec_string", [](const SegmentScan& s) { return s.track.codec_string; })
      .def_property_readonly("width", [](const SegmentScan& s) { return s.track.width; })
      .def_property_readonly("height", [](const SegmentScan& s) { return s.track.height; })
      .def_property_readonly("parameter_sets",
                             [](const SegmentScan& s) { return parameter_set_list(s.track.parameter_sets); })
      .def_readonly("fragments", &SegmentScan::fragments)
      .def_readonly("samples", &SegmentScan::samples, "Per sample, when scanned with samples=True.")
      .def_property_readonly("frames", [](const SegmentScan& s) {
        std::uint64_t n = 0;
        for (const fmp4::FragmentInfo& f : s.fragments) n += f.samples;
        return n;
      })
      .def_property_readonly("duration_90k", [](const SegmentScan& s) -> std::int64_t {
        if (s.fragments.empty()) return 0;
        return s.fragments.back().base_dts_90k + s.fragments.back().duration_90k;
      }, "Decode time at the end of the last complete fragment.");

  m.def("scan_segment", &scan_file, py::arg("path"), py::arg("samples") = false,
        "Scans a segment file (init segment, optional metadata box, fragments) with pread, without "
        "reading media payloads. Raises BitstreamError when the init segment is missing or broken "
        "and StorageError when the file cannot be read; a damaged tail is reported in .problem.");
  m.def(
      "scan_segment_bytes",
      [](const py::buffer& data, bool samples) {
        BufferView view(data);
        fmp4::MemorySource source(view.span());
        if (view.span().size() < kReleaseGilBytes) return fmp4::scan_segment(source, samples);
        py::gil_scoped_release release;
        return fmp4::scan_segment(source, samples);
      },
      py::arg("data"), py::arg("samples") = false, "As scan_segment, for a segment in memory.");

  py::class_<ExportPlan>(m, "ExportPlan",
                         "One progressive MP4 for [start_wall_us, end_wall_us) across segment files, "
                         "planned up front: size, any byte range, or the whole file.")
      .def(py::init(&make_plan), py::arg("segments"), py::arg("start_wall_us"), py::arg("end_wall_us"))
      .def_property_readonly("size", &ExportPlan::size, "Bytes of the output file.")
      .def("read", &read_range, py::arg("offset"), py::arg("length"),
           "The output's bytes at [offset, offset + length), shorter at the end.")
      .def("write", &write_file, py::arg("path"), py::arg("progress") = py::none(),
           "Writes the whole file (fsynced); progress(done, total) is called between steps. "
           "Returns the bytes written.")
      .def_property_readonly("codec", [](const ExportPlan& p) { return std::string(codec_name(p.codec())); })
      .def_property_readonly("width", &ExportPlan::width)
      .def_property_readonly("height", &ExportPlan::height)
      .def_property_readonly("start_wall_us", &ExportPlan::start_wall_us,
                             "Wall time where playback begins (the requested start when it has video).")
      .def_property_readonly("end_wall_us", &ExportPlan::end_wall_us, "Wall time where playback ends.")
      .def_property_readonly("first_sample_wall_us", &ExportPlan::first_sample_wall_us,
                             "Wall time of the first sample: the keyframe at or before the start.")
      .def_property_readonly("lead_in_90k", &ExportPlan::lead_in_90k,
                             "From the first keyframe to where playback begins (the edit list skips it).")
      .def_property_readonly("duration_90k", &ExportPlan::duration_90k, "Playback duration.")
      .def_property_readonly("frames", &ExportPlan::frames, "Samples in the file, lead-in included.")
      .def_property_readonly("segments_used", &ExportPlan::segments_used)
      .def_property_readonly("sample_descriptions", &ExportPlan::sample_descriptions,
                             "Distinct sample entries (parameter sets) in stsd.");
}

}  // namespace vms::bind
