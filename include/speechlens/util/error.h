#pragma once
// The exception types of SpeechLens. Every user-facing failure (bad file, bad shape, unknown
// hook name) throws one of these with a message that says what was wrong and how to fix it;
// the Python bindings map them to ValueError / KeyError / RuntimeError subclasses.
#include <stdexcept>
#include <string>

namespace speechlens {

// Base of every SpeechLens error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input that cannot be used as given: a corrupt file, a wrong shape or dtype, a bad option.
class InvalidInput : public Error {
 public:
  using Error::Error;
};

// A name that does not exist: hook points, checkpoint tensors, config keys, cache entries.
class NameError : public Error {
 public:
  using Error::Error;
};

// A file that cannot be opened or read at the operating-system level.
class IoError : public Error {
 public:
  using Error::Error;
};

}  // namespace speechlens

namespace sl = speechlens;
