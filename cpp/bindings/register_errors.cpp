// Translates the core's C++ exceptions into vmscore.errors classes (each a VmsError that also
// inherits the matching builtin). The classes are defined in Python so that pure-Python code raises
// the same ones.
#include <pybind11/gil_safe_call_once.h>

#include "common.hpp"
#include "vmscore/error.hpp"

namespace vms::bind {
namespace {

py::object error_class(const char* name) {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> errors;
  auto& mod = errors.call_once_and_store_result(
      [] { return py::object(py::module_::import("vmscore.errors")); }).get_stored();
  return mod.attr(name);
}

void raise_as(const char* name, const char* what) {
  PyErr_SetString(error_class(name).ptr(), what);
}

}  // namespace

void register_errors(py::module_&) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ParametersChangedError& e) {
      raise_as("ParametersChangedError", e.what());
    } catch (const MuxError& e) {
      raise_as("MuxError", e.what());
    } catch (const BitstreamError& e) {
      raise_as("BitstreamError", e.what());
    } catch (const NoFootageError& e) {
      raise_as("NoFootageError", e.what());
    } catch (const IoError& e) {
      // OSError(errno, strerror) fills .errno and .strerror, as callers of os functions expect.
      py::object err = error_class("StorageError")(e.errno_value(), e.what());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
    }
  });
}

}  // namespace vms::bind
