// Scanning segment files with pread: one read for the init segment, about one per fragment.
#include "vmscore/segment_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmscore/error.hpp"

namespace vms {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw IoError(what + ": " + std::strerror(err), err);
}

// Enough for the init segment, or a moof of a few seconds of video and the mdat header after it.
constexpr std::size_t kReadAhead = 4096;

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
  }
  return *this;
}

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

UniqueFd open_for_reading(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail("cannot open " + path, errno);
  return UniqueFd(fd);
}

void pread_exact(int fd, void* buf, std::size_t n, std::uint64_t offset, const std::string& what) {
  auto* p = static_cast<std::uint8_t*>(buf);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("cannot read " + what, errno);
    }
    if (got == 0)
      throw IoError(what + " ends at byte " + std::to_string(offset) + ", earlier than expected "
                    "(was it truncated?)", EIO);
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

ByteSpan FileSource::read(std::uint64_t offset, std::size_t n) {
  if (offset > size_ || n > size_ - offset)
    throw IoError(name_ + ": read past the end of the file", EIO);
  if (offset >= window_at_ && offset + n <= window_at_ + window_.size())
    return ByteSpan(window_).subspan(static_cast<std::size_t>(offset - window_at_), n);
  const std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(std::max(n, kReadAhead), size_ - offset));
  window_.resize(want);
  window_at_ = offset;
  try {
    pread_exact(fd_, window_.data(), want, offset, name_);
  } catch (...) {
    window_.clear();
    throw;
  }
  return ByteSpan(window_).first(n);
}

FileIdentity identity_of(int fd, const std::string& what, std::uint64_t* size) {
  struct statx st;
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_SIZE | STATX_BTIME, &st) != 0)
    fail("cannot stat " + what, errno);
  if (!S_ISREG(st.stx_mode)) throw IoError(what + " is not a regular file", EINVAL);
  if (size) *size = st.stx_size;
  FileIdentity id;
  id.device = (std::uint64_t(st.stx_dev_major) << 32) | st.stx_dev_minor;
  id.inode = st.stx_ino;
  if (st.stx_mask & STATX_BTIME) {
    id.born_s = st.stx_btime.tv_sec;
    id.born_ns = st.stx_btime.tv_nsec;
  }
  return id;
}

ScannedFile scan_segment_file(const std::string& path, bool with_samples) {
  const UniqueFd fd = open_for_reading(path);
  std::uint64_t size = 0;
  ScannedFile out;
  out.identity = identity_of(fd.get(), path, &size);
  FileSource source(fd.get(), size, path);
  try {
    out.scan = fmp4::scan_segment(source, with_samples);
  } catch (const BitstreamError& e) {
    throw BitstreamError(path + ": " + e.what());
  }
  return out;
}

}  // namespace vms
