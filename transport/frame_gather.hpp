// FrameGather: the frames of one socket write, laid out for one sendmsg. Headers and small
// payloads are copied into a scratch buffer the caller lends for the duration of the write,
// so a batch of small messages leaves as a few contiguous runs of bytes; a larger payload is
// referenced where it lies, never copied. When the kernel takes only part, rest() hands back
// what is left with every scratch byte copied out, so the scratch can serve the next write.
//
// A plain value used on one thread. Payloads passed to add() must outlive the write.
#pragma once

#include <sys/uio.h>

#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/ws_frame.hpp"

namespace shardcast::transport::ws {

class FrameGather {
public:
    // Payloads up to this size are copied next to their header; larger ones are referenced.
    static constexpr std::size_t kCopyLimit = 512;
    // The most bytes a frame may wrap its payload in (before and after it, together).
    static constexpr std::size_t kMaxWrapBytes = 128;
    // What the scratch and iov must hold for a write of the given number of frames.
    static constexpr std::size_t scratch_bytes(std::size_t frames) {
        return frames * (sizeof(FrameHeader::bytes) + kCopyLimit + kMaxWrapBytes);
    }
    // A header (with a copied payload), a referenced payload, and what follows it.
    static constexpr std::size_t iovec_count(std::size_t frames) { return 3 * frames; }

    FrameGather(std::span<char> scratch, std::span<iovec> iov) : scratch_(scratch), iov_(iov) {}

    void add(Opcode opcode, std::string_view payload) { add(opcode, {}, payload, {}); }
    // A frame whose payload is before + payload + after: the payload copied or referenced as
    // above, the wrapping copied (at most kMaxWrapBytes together).
    void add(Opcode opcode,
             std::string_view before,
             std::string_view payload,
             std::string_view after);

    std::span<const iovec> iovecs() const { return iov_.first(count_); }
    std::size_t bytes() const { return bytes_; }

    // The sent bytes went out; the rest, in order, into out (replaced). Bytes that live in
    // the scratch are copied into keep (replaced), which out then points into.
    void rest(std::size_t sent,
              std::string& keep,
              std::vector<boost::asio::const_buffer>& out) const;

private:
    bool in_scratch(const iovec& v) const;
    // Appends bytes to the scratch, extending the last run if it ends in the scratch.
    void copy(std::string_view bytes);
    // Takes the size bytes just written at the end of the scratch into the write.
    void claim(std::size_t size);
    void reference(std::string_view bytes);

    std::span<char> scratch_;
    std::size_t used_ = 0;  // scratch bytes taken
    std::span<iovec> iov_;
    std::size_t count_ = 0;  // iovecs filled
    std::size_t bytes_ = 0;
};

}  // namespace shardcast::transport::ws
