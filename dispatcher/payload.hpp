// Payload: the immutable content of one message. Any thread may create, copy or read one.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace shardcast::dispatcher {

// What a message carries, in the two forms clients may ask for: its text, which plain
// clients receive as is, and its JSON value, which shardcast.v1 clients receive inside
// {"data":...}. A message published as a JSON string has that string as its text; any other
// JSON value is its own text. The JSON form of a string is made on first use, once, however
// many threads ask: a server with no shardcast.v1 client never makes it.
class Content {
public:
    enum class Form : unsigned char {
        text,  // the text is the message (published as a JSON string, or raw text)
        json,  // the text is the serialisation of a JSON value other than a string
    };

    Content(std::string text, Form form) : text_(std::move(text)), form_(form) {}
    Content(const Content&) = delete;
    Content& operator=(const Content&) = delete;
    ~Content() { delete quoted_.load(std::memory_order_relaxed); }

    const std::string& text() const { return text_; }
    std::size_t size() const { return text_.size(); }
    Form form() const { return form_; }
    operator std::string_view() const { return text_; }

    // The message as a JSON value: the text itself, or the text as a JSON string literal.
    std::string_view json() const;

private:
    const std::string text_;
    const Form form_;
    // The text as a JSON string literal; set once, by whichever thread first needs it.
    mutable std::atomic<const std::string*> quoted_{nullptr};
};

// Shared, never mutated after creation: a broadcast hands the same bytes to every session of
// every shard, so copying it costs one reference count, not the text.
using Payload = std::shared_ptr<const Content>;

// A message that is text: a JSON string's content, or raw text from the bus.
inline Payload make_payload(std::string text) {
    return std::make_shared<const Content>(std::move(text), Content::Form::text);
}

// A message that is a JSON value other than a string, given as its serialisation.
inline Payload make_json_payload(std::string json) {
    return std::make_shared<const Content>(std::move(json), Content::Form::json);
}

// text as a JSON string literal, quotes included (RFC 8259: ", \ and control characters
// escaped; everything else, UTF-8 included, as it is).
std::string quote_json(std::string_view text);

}  // namespace shardcast::dispatcher
