// Exceptions of the C++ core. The bindings translate each into the Python class of the same name in
// vmscore.errors (all subclasses of VmsError). Pure code throws; the engine turns faults into events.
#pragma once

#include <stdexcept>
#include <string>

namespace vms {

// Malformed, truncated or hostile bytes in a bitstream or container.
class BitstreamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A muxer or writer was used against its contract (timestamps going backwards, a sample too large).
class MuxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// In-band parameter sets differ from the ones the init segment was built from: the caller must
// start a new file (a new init segment) to keep the output decodable.
class ParametersChangedError : public MuxError {
 public:
  using MuxError::MuxError;
};

// An export's time range holds no recorded video.
class NoFootageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A system call on a file or socket failed; errno_value keeps the cause.
class IoError : public std::runtime_error {
 public:
  IoError(const std::string& what, int errno_value)
      : std::runtime_error(what), errno_value_(errno_value) {}
  int errno_value() const noexcept { return errno_value_; }

 private:
  int errno_value_;
};

}  // namespace vms
