#include "bindings.h"

#include "speechlens/util/error.h"
#include "speechlens/util/log.h"
#include "speechlens/version.h"

namespace speechlens::python {

void bind_util(py::module_& m) {
  m.def("version", &speechlens::version, "SpeechLens version string.");
  m.def("torch_version", &speechlens::torch_version,
        "The torch version the C++ core was compiled against.");

  // C++ exception types surface as Python exceptions a notebook user can catch by kind.
  static py::exception<Error> base(m, "SpeechLensError", PyExc_RuntimeError);
  static py::exception<InvalidInput> invalid(m, "InvalidInputError", PyExc_ValueError);
  static py::exception<NameError> name(m, "HookNameError", PyExc_KeyError);
  static py::exception<IoError> io(m, "SpeechLensIOError", PyExc_OSError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InvalidInput& e) {
      py::set_error(invalid, e.what());
    } catch (const NameError& e) {
      py::set_error(name, e.what());
    } catch (const IoError& e) {
      py::set_error(io, e.what());
    } catch (const Error& e) {
      py::set_error(base, e.what());
    }
  });
}

}  // namespace speechlens::python
