#include "transport/request_checks.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#include "transport/printable.hpp"

namespace shardcast::transport {
namespace {

std::string lowercase(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// The codings in order, lowercased, with parameters and spaces dropped.
std::vector<std::string> codings_of(std::string_view header) {
    std::vector<std::string> codings;
    while (!header.empty()) {
        const std::size_t comma = header.find(',');
        std::string_view coding = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
        coding = coding.substr(0, coding.find(';'));
        const std::size_t first = coding.find_first_not_of(" \t");
        if (first == std::string_view::npos) {
            continue;
        }
        coding = coding.substr(first, coding.find_last_not_of(" \t") - first + 1);
        codings.push_back(lowercase(coding));
    }
    return codings;
}

}  // namespace

std::optional<std::size_t> head_size(std::string_view buffered, std::size_t limit) {
    constexpr std::string_view kEnd = "\r\n\r\n";
    const std::size_t at = buffered.substr(0, limit).find(kEnd);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    return at + kEnd.size();
}

bool has_obs_fold(std::string_view head) {
    for (std::size_t at = head.find('\n'); at != std::string_view::npos;
         at = head.find('\n', at + 1)) {
        if (at + 1 < head.size() && (head[at + 1] == ' ' || head[at + 1] == '\t')) {
            return true;
        }
    }
    return false;
}

std::optional<FramingError> check_framing(std::string_view transfer_encoding,
                                          bool has_transfer_encoding,
                                          bool has_content_length) {
    if (!has_transfer_encoding) {
        return std::nullopt;
    }
    const std::vector<std::string> codings = codings_of(transfer_encoding);
    for (const std::string& coding : codings) {
        if (coding != "chunked") {
            // Echoed in a JSON error: bytes from the network, percent-encoded to stay UTF-8.
            return FramingError{501, "transfer coding \"" + printable(coding, 32) +
                                         "\" is not implemented; send chunked or a "
                                         "Content-Length"};
        }
    }
    if (codings.size() != 1) {
        return FramingError{400, "Transfer-Encoding must name chunked exactly once"};
    }
    if (has_content_length) {
        return FramingError{400, "both Transfer-Encoding and Content-Length: ambiguous framing"};
    }
    return std::nullopt;
}

}  // namespace shardcast::transport
