#include "dispatcher/payload.hpp"

namespace shardcast::dispatcher {

std::string_view Content::json() const {
    if (form_ == Form::json) {
        return text_;
    }
    // acquire: the string another thread installed is fully built before we read it.
    if (const std::string* quoted = quoted_.load(std::memory_order_acquire)) {
        return *quoted;
    }
    auto made = std::make_unique<const std::string>(quote_json(text_));
    const std::string* expected = nullptr;
    if (quoted_.compare_exchange_strong(expected, made.get(), std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        return *made.release();
    }
    return *expected;  // another thread won; ours is dropped
}

std::string quote_json(std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (byte < 0x20) {
                    out += "\\u00";
                    out += kHex[byte >> 4];
                    out += kHex[byte & 0xf];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    return out;
}

}  // namespace shardcast::dispatcher
