// Writes finished fMP4 pieces to a file descriptor: one writev per piece (moof+mdat header and the
// payload together), so a GOP costs one system call, not one per frame.
#include "vmscore/fd_sink.hpp"

#include <limits.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "vmscore/error.hpp"

namespace vms {

void write_all(int fd, std::span<const ByteSpan> parts) {
  // A GOP of Annex-B input is two parts per NAL unit: batch them IOV_MAX at a time.
  constexpr std::size_t kBatch = IOV_MAX < 1024 ? IOV_MAX : 1024;
  iovec iov[kBatch];
  std::size_t next = 0;
  while (next < parts.size()) {
    std::size_t count = 0;
    while (next < parts.size() && count < kBatch) {
      const ByteSpan p = parts[next++];
      if (!p.empty()) iov[count++] = {const_cast<std::uint8_t*>(p.data()), p.size()};
    }
    std::size_t first = 0;
    while (first < count) {
      const ssize_t n = ::writev(fd, iov + first, static_cast<int>(count - first));
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        throw IoError(std::string("write failed: ") + std::strerror(err), err);
      }
      // Partial write: skip what went out and continue with the rest.
      auto done = static_cast<std::size_t>(n);
      while (first < count && done >= iov[first].iov_len) done -= iov[first++].iov_len;
      if (first < count) {
        iov[first].iov_base = static_cast<std::uint8_t*>(iov[first].iov_base) + done;
        iov[first].iov_len -= done;
      }
    }
  }
}

void FdSink::write(std::span<const ByteSpan> parts) { write_all(fd_, parts); }

}  // namespace vms
