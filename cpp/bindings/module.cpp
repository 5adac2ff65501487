// The vmscore._core extension module: the only place (with register_*.cpp) that sees pybind11.
#include "common.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "vmscore's native core: bitstream tools, fragmented MP4, system information";
  m.attr("__version__") = VMSCORE_VERSION;
  vms::bind::register_errors(m);
  vms::bind::register_system(m);
  vms::bind::register_nal(m);
  vms::bind::register_fmp4(m);
  vms::bind::register_export(m);
  vms::bind::register_ingest(m);
  vms::bind::register_rtp(m);
  vms::bind::register_rtsp(m);
  vms::bind::register_camera_server(m);
  vms::bind::register_record(m);
  vms::bind::register_motion(m);
  vms::bind::register_live(m);
}
