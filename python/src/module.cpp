// The extension module's entry point; each area registers its bindings from its own file.
#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "SpeechLens C++ core (bindings only; see the speechlens package for the API)";
  speechlens::python::bind_util(m);
  speechlens::python::bind_io(m);
  speechlens::python::bind_hooks(m);
  speechlens::python::bind_models(m);
  speechlens::python::bind_models_whisper(m);
  speechlens::python::bind_models_hubert(m);
  speechlens::python::bind_audio(m);
  speechlens::python::bind_text(m);
  speechlens::python::bind_models_qwen2_audio(m);
  speechlens::python::bind_analysis(m);
  speechlens::python::bind_ctranslate2(m);
}
