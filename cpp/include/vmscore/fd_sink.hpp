// A fmp4::Sink that writes to a file descriptor with one writev per finished piece, retrying on
// EINTR and partial writes. Blocking; call it from a writer thread (or with the GIL released).
#pragma once

#include "vmscore/fmp4.hpp"

namespace vms {

class FdSink final : public fmp4::Sink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  // Throws vms::IoError (with errno) when the write fails, for example ENOSPC on a full disk.
  void write(std::span<const ByteSpan> parts) override;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Writes all parts with writev, handling partial writes and EINTR. Throws IoError.
void write_all(int fd, std::span<const ByteSpan> parts);

}  // namespace vms
