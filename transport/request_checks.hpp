// What a request's head must be before the server reads its body or acts on it, beyond what
// Beast's parser checks: no obsolete line folding, and message framing that cannot be read
// two ways (RFC 9112, sections 5.2 and 6). Pure functions, any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace shardcast::transport {

// The longest request head (request line and header fields) the server reads.
inline constexpr std::size_t kHeaderLimit = 16 * 1024;

// Whether the raw head (up to and including its blank line) folds a field value over lines:
// a line break followed by a space or tab. Beast would join such lines; RFC 9112 says a
// server must reject them (or replace them), since proxies may read them otherwise.
bool has_obs_fold(std::string_view head);

// The size of the head at the front of buffered, through its blank line ("\r\n\r\n"), when
// it ends within the first limit bytes. Bytes past limit are never searched: they may be a
// pipelined request's, or the rest of a head too long to read.
std::optional<std::size_t> head_size(std::string_view buffered, std::size_t limit);

// A framing refusal: the status and the reason.
struct FramingError {
    unsigned status;
    std::string message;
};

// Transfer-Encoding and Content-Length as the server takes them: a coding other than
// chunked is 501 (the server decodes no other), chunked not last or both headers at once is
// 400 (a message two readers would frame differently).
std::optional<FramingError> check_framing(std::string_view transfer_encoding,
                                          bool has_transfer_encoding,
                                          bool has_content_length);

}  // namespace shardcast::transport
