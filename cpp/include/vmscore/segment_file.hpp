// Segment files on disk: scanning one for its complete fragments with pread (box headers and moof
// boxes only, never the media payload), and the small file helpers the exporter shares.
// Blocking I/O: call with the GIL released. Errors: vms::IoError for the system, BitstreamError for
// a file that is not a segment (a missing or broken init segment).
#pragma once

#include <cstdint>
#include <string>

#include "vmscore/fmp4_reader.hpp"

namespace vms {

// A file descriptor closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// Opens `path` read-only; IoError naming the file when that fails.
UniqueFd open_for_reading(const std::string& path);

// Reads exactly n bytes at offset (retrying EINTR and short reads); IoError when the file ends
// first (it shrank) or the read fails. `what` names the file in messages.
void pread_exact(int fd, void* buf, std::size_t n, std::uint64_t offset, const std::string& what);

// A ByteSource over an open file, with a small read-ahead window so a moof and the header after it
// cost one pread.
class FileSource final : public fmp4::ByteSource {
 public:
  FileSource(int fd, std::uint64_t size, std::string name)
      : fd_(fd), size_(size), name_(std::move(name)) {}
  std::uint64_t size() const override { return size_; }
  ByteSpan read(std::uint64_t offset, std::size_t n) override;

 private:
  int fd_;
  std::uint64_t size_;
  std::string name_;
  Bytes window_;
  std::uint64_t window_at_ = 0;
};

// What tells a file from another one put in its place: the inode, and its birth time where the
// filesystem keeps one (a deleted file's inode number is soon reused).
struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::int64_t born_s = 0;
  std::uint32_t born_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

// The identity of an open file, and its size; IoError naming `what` when it is no regular file.
FileIdentity identity_of(int fd, const std::string& what, std::uint64_t* size = nullptr);

struct ScannedFile {
  fmp4::SegmentScan scan;
  FileIdentity identity;
};

// Scans the segment file at `path` (see fmp4::scan_segment).
ScannedFile scan_segment_file(const std::string& path, bool with_samples);

}  // namespace vms
