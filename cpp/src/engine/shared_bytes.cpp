// Pooled reference-counted byte blocks; see vmscore/shared_bytes.hpp.
#include "vmscore/shared_bytes.hpp"

#include <bit>
#include <cstdlib>
#include <new>

namespace vms {

BytePool::BytePool(std::size_t max_cached_bytes) : max_cached_(max_cached_bytes) {}

BytePool::~BytePool() {
  for (auto& list : free_)
    for (SharedBytes* b : list) {
      b->~SharedBytes();
      std::free(b);
    }
}

BytePool& BytePool::shared() {
  // Never destroyed: blocks may still be referenced by Python objects at interpreter exit.
  static BytePool* pool = new BytePool(256u << 20);
  return *pool;
}

std::size_t BytePool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

BytesRef BytePool::acquire(std::size_t size) {
  const std::size_t want = size < 1024 ? 1024 : std::bit_ceil(size);
  const int cls = std::countr_zero(want) - 10;
  if (cls >= kClasses) throw std::bad_alloc();
  SharedBytes* b = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& list = free_[cls];
    if (!list.empty()) {
      b = list.back();
      list.pop_back();
      cached_ -= b->capacity_;
    }
  }
  if (!b) {
    void* mem = std::malloc(sizeof(SharedBytes) + want);
    if (!mem) throw std::bad_alloc();
    b = new (mem) SharedBytes();
    b->capacity_ = want;
    b->size_class_ = static_cast<std::uint32_t>(cls);
    b->pool_ = this;
    allocations_.fetch_add(1, std::memory_order_relaxed);
  }
  b->size_ = size;
  return BytesRef(b);
}

void BytePool::release(SharedBytes* b) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + b->capacity_ <= max_cached_) {
      free_[b->size_class_].push_back(b);
      cached_ += b->capacity_;
      return;
    }
  }
  b->~SharedBytes();
  std::free(b);
}

}  // namespace vms
