// ExactAllocator: gives asio exactly the bytes an operation needs, from operator new.
//
// For the read wait an idle connection keeps pending. asio's default (its recycling
// allocator) hands an operation a block cached by the thread, as large as the largest one it
// ran before: after the WebSocket handshake's, about 780 bytes, held for as long as the
// connection idles, where the wait needs about a tenth of that.
#pragma once

#include <cstddef>
#include <new>

namespace shardcast::transport {

template <class T>
struct ExactAllocator {
    using value_type = T;

    ExactAllocator() = default;
    template <class U>
    ExactAllocator(const ExactAllocator<U>&) noexcept {}

    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }

    template <class U>
    bool operator==(const ExactAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace shardcast::transport
