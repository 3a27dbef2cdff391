// JsonReader: parses request bodies and batch lines, one document after another, into
// memory it reuses. One reader per request, on the HTTP thread serving it.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <string_view>

namespace shardcast::transport {

// A fresh parser and the default allocator cost about six heap allocations for a batch line
// such as {"to":"a","data":"x"} before its payload is copied out; a batch parses thousands.
// Here the parser keeps its stack between documents and each document lives in an arena that
// is rewound, not freed, before the next: small documents allocate nothing, larger ones take
// blocks from the heap that the next parse returns.
class JsonReader {
public:
    JsonReader() = default;
    JsonReader(const JsonReader&) = delete;
    JsonReader& operator=(const JsonReader&) = delete;

    // Parses text as one JSON value. Returns "" or what is wrong and where. On success
    // value() is the document until the next parse().
    std::string parse(std::string_view text) {
        value_ = nullptr;  // it lives in the arena about to be rewound
        arena_.release();
        parser_.reset(boost::json::storage_ptr(&arena_));
        boost::system::error_code ec;
        const std::size_t consumed = parser_.write(text.data(), text.size(), ec);
        if (!ec) {
            parser_.finish(ec);
        }
        if (ec) {
            return "malformed JSON at byte " + std::to_string(consumed) + ": " + ec.message();
        }
        value_ = parser_.release();
        return {};
    }

    const boost::json::value& value() const { return value_; }

private:
    static constexpr std::size_t kArenaBytes = 4096;  // a 3 KiB message parses in place
    static constexpr std::size_t kParserBytes = 512;  // nesting beyond this takes the heap

    // A monotonic arena frees nothing until release(); values in it skip deallocation.
    unsigned char arena_memory_[kArenaBytes];
    boost::json::monotonic_resource arena_{arena_memory_, kArenaBytes};
    unsigned char parser_memory_[kParserBytes];
    boost::json::stream_parser parser_{{}, {}, parser_memory_, kParserBytes};
    boost::json::value value_ = boost::json::value(boost::json::storage_ptr(&arena_));
};

}  // namespace shardcast::transport
