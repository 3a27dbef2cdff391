// FrameGather: the bytes of one write are exactly the frames in order, small payloads share
// the scratch in few runs, large ones are referenced, and the rest after a partial send is
// exact at every split point and survives the scratch being reused.
#include "transport/frame_gather.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace shardcast::transport::ws {
namespace {

std::string framed(Opcode opcode, const std::string& payload) {
    const FrameHeader header = frame_header(opcode, payload.size());
    return std::string(reinterpret_cast<const char*>(header.bytes.data()), header.size) + payload;
}

std::string joined(std::span<const iovec> iov) {
    std::string out;
    for (const iovec& v : iov) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
    return out;
}

std::string joined(const std::vector<boost::asio::const_buffer>& buffers) {
    std::string out;
    for (const auto& b : buffers) out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

class FrameGatherTest : public ::testing::Test {
protected:
    static constexpr std::size_t kFrames = 8;
    std::vector<char> scratch = std::vector<char>(FrameGather::scratch_bytes(kFrames));
    std::array<iovec, FrameGather::iovec_count(kFrames)> iov{};
};

TEST_F(FrameGatherTest, SmallFramesShareOneRunOfScratch) {
    FrameGather gather(scratch, iov);
    const std::vector<std::string> payloads{"a", std::string(125, 'b'), std::string(126, 'c'),
                                            std::string(FrameGather::kCopyLimit, 'd')};
    std::string expected;
    for (const std::string& p : payloads) {
        gather.add(Opcode::text, p);
        expected += framed(Opcode::text, p);
    }
    gather.add(Opcode::ping, {});
    expected += framed(Opcode::ping, {});
    ASSERT_EQ(gather.iovecs().size(), 1u);
    EXPECT_EQ(joined(gather.iovecs()), expected);
    EXPECT_EQ(gather.bytes(), expected.size());
}

TEST_F(FrameGatherTest, LargePayloadsAreReferencedNotCopied) {
    FrameGather gather(scratch, iov);
    const std::string big(FrameGather::kCopyLimit + 1, 'x');
    const std::string huge(70000, 'y');  // a 64-bit length header
    gather.add(Opcode::text, "small");
    gather.add(Opcode::text, big);
    gather.add(Opcode::text, huge);
    gather.add(Opcode::text, "tail");
    const auto iovecs = gather.iovecs();
    // small frame + big's header | big | huge's header | huge | tail frame
    ASSERT_EQ(iovecs.size(), 5u);
    EXPECT_EQ(iovecs[1].iov_base, big.data());
    EXPECT_EQ(iovecs[3].iov_base, huge.data());
    EXPECT_EQ(joined(iovecs), framed(Opcode::text, "small") + framed(Opcode::text, big) +
                                  framed(Opcode::text, huge) + framed(Opcode::text, "tail"));
}

TEST_F(FrameGatherTest, RestIsExactAtEverySplitAndOwnsItsScratchBytes) {
    const std::string big(FrameGather::kCopyLimit + 7, 'x');
    const std::vector<std::string> payloads{"one", big, std::string(200, 'z'), "", "last"};
    std::string expected;
    for (const std::string& p : payloads) expected += framed(Opcode::text, p);

    for (std::size_t sent = 0; sent <= expected.size(); ++sent) {
        FrameGather gather(scratch, iov);
        for (const std::string& p : payloads) gather.add(Opcode::text, p);
        std::string keep;
        std::vector<boost::asio::const_buffer> rest;
        gather.rest(sent, keep, rest);
        // The next write reuses the scratch: the rest must not depend on it.
        std::fill(scratch.begin(), scratch.end(), '!');
        ASSERT_EQ(joined(rest), expected.substr(sent)) << "after " << sent << " bytes";
        for (const auto& b : rest) {
            const char* p = static_cast<const char*>(b.data());
            EXPECT_FALSE(p >= scratch.data() && p < scratch.data() + scratch.size());
        }
    }
}

TEST_F(FrameGatherTest, WrappedFrameFramesTheWholeEnvelopeAndStillReferencesLargePayloads) {
    const std::string small = R"("hi")";
    const std::string large(3000, 'x');
    FrameGather gather(scratch, iov);
    gather.add(Opcode::text, R"({"data":)", small, "}");
    gather.add(Opcode::text, R"({"data":)", large, "}");
    EXPECT_EQ(joined(gather.iovecs()), framed(Opcode::text, R"({"data":"hi"})") +
                                           framed(Opcode::text, R"({"data":)" + large + "}"));
    bool referenced = false;
    for (const iovec& v : gather.iovecs()) {
        referenced = referenced || v.iov_base == large.data();
    }
    EXPECT_TRUE(referenced) << "the large payload was copied";
}

}  // namespace
}  // namespace shardcast::transport::ws
