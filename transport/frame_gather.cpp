#include "transport/frame_gather.hpp"

#include <cassert>
#include <cstring>

namespace shardcast::transport::ws {

void FrameGather::add(Opcode opcode,
                      std::string_view before,
                      std::string_view payload,
                      std::string_view after) {
    assert(before.size() + after.size() <= kMaxWrapBytes);
    // The header is written where it goes. Built on the stack and copied over, its bytes were
    // read back before their stores had landed: a store-forwarding stall that made this the
    // costliest line of a burst fan-out.
    assert(used_ + sizeof(FrameHeader::bytes) <= scratch_.size());
    claim(put_frame_header(reinterpret_cast<std::uint8_t*>(scratch_.data() + used_), opcode,
                           before.size() + payload.size() + after.size()));
    copy(before);
    if (payload.size() <= kCopyLimit) {
        copy(payload);
    } else {
        reference(payload);
    }
    copy(after);
}

bool FrameGather::in_scratch(const iovec& v) const {
    const char* base = static_cast<const char*>(v.iov_base);
    return base >= scratch_.data() && base < scratch_.data() + scratch_.size();
}

void FrameGather::copy(std::string_view bytes) {
    if (bytes.empty()) {
        return;
    }
    assert(used_ + bytes.size() <= scratch_.size());
    std::memcpy(scratch_.data() + used_, bytes.data(), bytes.size());
    claim(bytes.size());
}

void FrameGather::claim(std::size_t size) {
    char* at = scratch_.data() + used_;
    used_ += size;
    bytes_ += size;
    if (count_ > 0 && in_scratch(iov_[count_ - 1]) &&
        static_cast<char*>(iov_[count_ - 1].iov_base) + iov_[count_ - 1].iov_len == at) {
        iov_[count_ - 1].iov_len += size;
        return;
    }
    assert(count_ < iov_.size());
    iov_[count_++] = iovec{at, size};
}

void FrameGather::reference(std::string_view bytes) {
    if (bytes.empty()) {
        return;
    }
    assert(count_ < iov_.size());
    iov_[count_++] = iovec{const_cast<char*>(bytes.data()), bytes.size()};
    bytes_ += bytes.size();
}

void FrameGather::rest(std::size_t sent,
                       std::string& keep,
                       std::vector<boost::asio::const_buffer>& out) const {
    assert(sent <= bytes_);
    out.clear();
    keep.clear();
    // Sized first: out points into keep, which must not move once filled.
    std::size_t skip = sent;
    std::size_t keep_size = 0;
    for (const iovec& v : iovecs()) {
        const std::size_t drop = std::min(skip, v.iov_len);
        skip -= drop;
        if (drop < v.iov_len && in_scratch(v)) {
            keep_size += v.iov_len - drop;
        }
    }
    keep.resize(keep_size);
    skip = sent;
    std::size_t kept = 0;
    for (const iovec& v : iovecs()) {
        const std::size_t drop = std::min(skip, v.iov_len);
        skip -= drop;
        if (drop == v.iov_len) {
            continue;
        }
        const char* from = static_cast<const char*>(v.iov_base) + drop;
        const std::size_t size = v.iov_len - drop;
        if (in_scratch(v)) {
            std::memcpy(keep.data() + kept, from, size);
            out.emplace_back(keep.data() + kept, size);
            kept += size;
        } else {
            out.emplace_back(from, size);
        }
    }
}

}  // namespace shardcast::transport::ws
