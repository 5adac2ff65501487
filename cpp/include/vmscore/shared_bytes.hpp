// Reference-counted byte blocks from a pool: one access unit's bytes, shared without copying by the
// ring, the recorder, live viewers and Python (through the buffer protocol). Blocks return to
// their pool when the last reference goes, so steady-state ingest allocates nothing per frame.
//
// Threading: references may be copied and dropped on any thread; the pool is thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

namespace vms {

class BytePool;

class SharedBytes {
 public:
  std::uint8_t* data() { return reinterpret_cast<std::uint8_t*>(this + 1); }
  const std::uint8_t* data() const { return reinterpret_cast<const std::uint8_t*>(this + 1); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  void set_size(std::size_t n) { size_ = n <= capacity_ ? n : capacity_; }
  std::span<const std::uint8_t> span() const { return {data(), size_}; }

 private:
  friend class BytePool;
  friend class BytesRef;
  std::atomic<std::uint32_t> refs_{0};
  std::uint32_t size_class_ = 0;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  BytePool* pool_ = nullptr;
};

// An owning reference (like a shared_ptr without the control block).
class BytesRef {
 public:
  BytesRef() = default;
  explicit BytesRef(SharedBytes* b) : b_(b) {
    if (b_) b_->refs_.fetch_add(1, std::memory_order_relaxed);
  }
  BytesRef(const BytesRef& o) : BytesRef(o.b_) {}
  BytesRef(BytesRef&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  BytesRef& operator=(BytesRef o) noexcept {
    std::swap(b_, o.b_);
    return *this;
  }
  ~BytesRef() { reset(); }
  void reset();
  SharedBytes* get() const { return b_; }
  SharedBytes* operator->() const { return b_; }
  explicit operator bool() const { return b_ != nullptr; }
  std::span<const std::uint8_t> span() const {
    return b_ ? b_->span() : std::span<const std::uint8_t>{};
  }

 private:
  SharedBytes* b_ = nullptr;
};

// Size classes are powers of two from 1 KiB to 256 MiB. Freed blocks are kept for reuse up to
// `max_cached_bytes` in total; beyond that they go back to the system.
class BytePool {
 public:
  explicit BytePool(std::size_t max_cached_bytes = 64u << 20);
  ~BytePool();
  BytePool(const BytePool&) = delete;
  BytePool& operator=(const BytePool&) = delete;

  // A block of at least `size` bytes, with size() set to `size`. Throws std::bad_alloc past 256 MiB.
  BytesRef acquire(std::size_t size);
  static BytePool& shared();  // process-wide pool used by the engine

  std::size_t cached_bytes() const;
  std::uint64_t system_allocations() const { return allocations_.load(); }

 private:
  friend class BytesRef;
  static constexpr int kClasses = 19;  // 2^10 .. 2^28
  void release(SharedBytes* b);
  mutable std::mutex mutex_;
  std::vector<SharedBytes*> free_[kClasses];
  std::size_t cached_ = 0;
  std::size_t max_cached_;
  std::atomic<std::uint64_t> allocations_{0};
};

inline void BytesRef::reset() {
  if (b_ && b_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) b_->pool_->release(b_);
  b_ = nullptr;
}

}  // namespace vms
