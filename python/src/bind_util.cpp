#include "bindings.h"

#include <pybind11/eval.h>

#include <cstring>

#include "speechlens/util/error.h"
#include "speechlens/util/log.h"
#include "speechlens/version.h"

namespace speechlens::python {

namespace {

// Sets a Python exception of `type` from a C++ message that may hold bytes that are not UTF-8
// (a file name, a token from a hostile file): they are replaced, never turned into a
// UnicodeDecodeError that hides the real error.
void set_error(PyObject* type, const char* message) {
  py::gil_scoped_acquire gil;
  PyObject* text = PyUnicode_DecodeUTF8(message, static_cast<Py_ssize_t>(std::strlen(message)), "replace");
  if (!text) {
    PyErr_Clear();
    PyErr_SetString(type, "(an error message that could not be decoded)");
    return;
  }
  PyErr_SetObject(type, text);
  Py_DECREF(text);
}

}  // namespace

void bind_util(py::module_& m) {
  m.def("version", &speechlens::version, "SpeechLens version string.");
  m.def("torch_version", &speechlens::torch_version, "The torch version the C++ core was compiled against.");

  // C++ exception types surface as Python exceptions a notebook user can catch by kind.
  // HookNameError is a KeyError (as a missing name is) whose message prints with its line
  // breaks (KeyError's own str() shows the repr).
  static py::exception<Error> base(m, "SpeechLensError", PyExc_RuntimeError);
  static py::exception<InvalidInput> invalid(m, "InvalidInputError", PyExc_ValueError);
  static py::exception<IoError> io(m, "SpeechLensIOError", PyExc_OSError);
  py::dict scope;
  scope["__builtins__"] = py::module_::import("builtins");
  py::exec(R"(
class HookNameError(KeyError):
    """A hook name (or filter) that matches no hook point; the message lists the nearest names."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
)",
           scope);
  py::object name_error = scope["HookNameError"];
  name_error.attr("__module__") = "speechlens";
  m.attr("HookNameError") = name_error;
  static PyObject* name_error_type = name_error.release().ptr();  // lives as long as the module
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InvalidInput& e) {
      set_error(invalid.ptr(), e.what());
    } catch (const NameError& e) {
      set_error(name_error_type, e.what());
    } catch (const IoError& e) {
      set_error(io.ptr(), e.what());
    } catch (const Error& e) {
      set_error(base.ptr(), e.what());
    }
  });
}

}  // namespace speechlens::python
