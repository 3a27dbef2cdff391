// Hostile input over real sockets: a few hundred malformed and mutated HTTP requests,
// WebSocket upgrades and client frames from a fixed seed, each on a connection of its own
// that is half-closed once the bytes are sent. Whatever the server answers must be
// well-formed: HTTP responses back to back, each with a status line and a Content-Length it
// keeps to, an error's body a JSON object with an "error" string, and after a 101 only
// WebSocket frames. Throughout, a client connected from the start receives every message
// published between the cases, in order, and the server still answers at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kCases = 400;
constexpr int kPublishEvery = 10;
constexpr auto kCaseTimeout = 10s;

class Generator {
public:
    explicit Generator(std::uint32_t seed) : rng_(seed) {}

    // One case: an HTTP request or an upgrade followed by frames, mutated half of the time.
    // head is true when the bytes are an unmutated HEAD request, whose answers have no body.
    struct Case {
        std::string bytes;
        bool head = false;
    };

    Case next(int index) {
        Case c;
        const bool upgrade = pick(3) == 0;
        const bool mutated = pick(2) == 0;
        if (upgrade) {
            c.bytes = upgrade_request("hostile-" + std::to_string(index));
            for (int n = pick(5); n > 0; --n) c.bytes += frame();
        } else {
            const std::string method = mutated ? one_of({"GET", "POST", "PUT", "DELETE"})
                                               : one_of({"GET", "POST", "HEAD", "PUT", "DELETE"});
            c.head = method == "HEAD" && !mutated;
            c.bytes = http_request(method);
        }
        if (mutated) mutate(c.bytes);
        return c;
    }

private:
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

    std::string one_of(std::initializer_list<std::string_view> options) {
        return std::string(*(options.begin() + pick(static_cast<int>(options.size()))));
    }

    std::string random_bytes(int n) {
        std::string out;
        for (int i = 0; i < n; ++i) out += static_cast<char>(pick(256));
        return out;
    }

    std::string http_request(const std::string& method) {
        const std::string path =
            one_of({"/api/v1/send", "/api/v1/broadcast", "/api/v1/batch", "/api/v1/disconnect",
                    "/api/v1/stats", "/metrics", "/healthz", "/readyz", "/api/v1/clients/a",
                    "/api/v1/clients/b%ad", "/ws/plain", "/nowhere",
                    "/nowhere/\x80\xff" + std::string(300, 'z')});
        const std::string body = one_of({
            R"({"to":"nobody","data":"x"})",
            R"({"to":"nobody","data":{"deep":[[[[[[[[1]]]]]]]]}})",
            "{\"to\":\"nobody\",\"data\":\"\xff\xfe\"}",  // invalid UTF-8 in a string
            R"({"to":5,"data":"x"})",
            R"({"data":)",
            R"({"to":"nobody","data":1e999999})",
            "{\"to\":\"nobody\",\"data\":\"x\"}\n{\"to\":\"*\",\"data\":\"y\"}\nnot json\n",
            R"({"to":"nobody","code":1,"reason":"r"})",
            R"([])",
            "",
        });
        return method + " " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    }

    static std::string upgrade_request(const std::string& id) {
        return "GET /ws/" + id +
               " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    }

    // A frame a client might send, well-formed or not: any opcode, RSV bits, an unmasked
    // frame, invalid UTF-8 in a text frame, a close with any code, a continuation with no
    // start, or a length far beyond the message limit that never arrives.
    std::string frame() {
        const auto key = static_cast<std::uint32_t>(rng_());
        switch (pick(7)) {
            case 0:
                return random_bytes(1 + pick(64));
            case 1: {
                const auto first =
                    static_cast<std::uint8_t>((pick(2) << 7) | (pick(8) << 4) | pick(16));
                return client_frame(first, random_bytes(pick(200)), key, pick(5) != 0);
            }
            case 2:
                return client_frame(0x81, "ok \xff\xfe", key);
            case 3: {
                const auto code = static_cast<std::uint16_t>(pick(5000));
                std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
                return client_frame(0x88, payload + random_bytes(pick(130)), key);
            }
            case 4:
                return client_frame(0x80, "no start", key);
            case 5:
                return client_frame(0x01, "part", key) + client_frame(0x89, "ping", key) +
                       client_frame(0x80, "rest", key);
            default: {
                std::string header{static_cast<char>(0x82), static_cast<char>(0xff)};
                for (int i = 0; i < 8; ++i) header += static_cast<char>(i == 3 ? 1 : 0);
                return header + "mask";
            }
        }
    }

    // A few byte flips, cuts, insertions and repeats.
    void mutate(std::string& bytes) {
        for (int n = 1 + pick(6); n > 0; --n) {
            const auto at = static_cast<std::size_t>(pick(static_cast<int>(bytes.size()) + 1));
            switch (pick(4)) {
                case 0:
                    if (at < bytes.size()) bytes[at] = static_cast<char>(pick(256));
                    break;
                case 1:
                    bytes.erase(at, static_cast<std::size_t>(pick(20)));
                    break;
                case 2:
                    bytes.insert(at, random_bytes(1 + pick(30)));
                    break;
                default: {
                    const std::string piece = bytes.substr(at, static_cast<std::size_t>(pick(40)));
                    for (int r = pick(20); r > 0; --r) bytes.insert(at, piece);
                }
            }
        }
    }

    std::mt19937 rng_;
};

// The value of a header in a response head, or "" when it is absent.
std::string_view header_value(std::string_view head, std::string_view name) {
    const auto at = head.find("\r\n" + std::string(name) + ": ");
    if (at == std::string_view::npos) return {};
    const auto start = at + name.size() + 4;
    return head.substr(start, head.find("\r\n", start) - start);
}

// Walks the responses in what the server sent: "" when they are well-formed, otherwise
// what is wrong with them.
std::string check_answer(std::string_view answer, bool head) {
    while (!answer.empty()) {
        if (!answer.starts_with("HTTP/1.1 ") && !answer.starts_with("HTTP/1.0 ")) {
            return "no status line where a response should start";
        }
        const auto end = answer.find("\r\n\r\n");
        if (end == std::string_view::npos) return "a response header with no end";
        const std::string_view status_text = answer.substr(9, 3);
        const std::string_view response_head = answer.substr(0, end);
        answer.remove_prefix(end + 4);
        int status = 0;
        for (const char c : status_text) {
            if (c < '0' || c > '9') return "a status that is not three digits";
            status = status * 10 + (c - '0');
        }
        if (status < 100 || status > 599) return "status " + std::to_string(status);
        if (status == 101) return {};  // WebSocket frames follow
        const std::string_view length_text = header_value(response_head, "Content-Length");
        if (length_text.empty()) return "a response with no Content-Length";
        const std::size_t length = head ? 0 : std::stoul(std::string(length_text));
        if (answer.size() < length) return "a body shorter than its Content-Length";
        const std::string_view body = answer.substr(0, length);
        answer.remove_prefix(length);
        if (status >= 400 && !head &&
            header_value(response_head, "Content-Type") == "application/json") {
            boost::system::error_code ec;
            const auto value = boost::json::parse(body, ec);
            const auto* object = ec ? nullptr : value.if_object();
            const auto* error = object ? object->if_contains("error") : nullptr;
            if (!error || !error->is_string()) {
                return "an error body that is not {\"error\": string}: " + std::string(body);
            }
        }
    }
    return {};
}

// Bytes as C-escaped text, to reproduce a failing case.
std::string escaped(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && c != '\\' && c != '"') {
            out += c;
        } else {
            out += "\\x";
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        }
    }
    return out;
}

bool is_ours(const std::string& message) { return message.starts_with("after case "); }

TEST(HostileInputTest, EveryAnswerIsWellFormedAndAConnectedClientMissesNothing) {
    TestServer server;
    ClientLoop loop;
    HttpClient http(server.port());
    auto steady = WsClient::start(loop, server.port(), "/ws/steady");
    ASSERT_TRUE(steady->wait_open(10s));

    Generator generator(20261123);
    std::vector<std::string> published;
    for (int i = 0; i < kCases; ++i) {
        const Generator::Case c = generator.next(i);
        const auto started = Clock::now();
        const std::string answer =
            raw_exchange(server.port(), c.bytes, kCaseTimeout, AfterSend::half_close);
        ASSERT_LT(Clock::now() - started, kCaseTimeout)
            << "case " << i << ": the server kept the connection open after end-of-stream\n"
            << "sent: \"" << escaped(c.bytes) << "\"";
        const std::string problem = check_answer(answer, c.head);
        ASSERT_TRUE(problem.empty())
            << "case " << i << ": " << problem << "\nsent: \"" << escaped(c.bytes)
            << "\"\nanswer: \"" << escaped(answer) << "\"";
        if (i % kPublishEvery == 0) {
            published.push_back("after case " + std::to_string(i));
            ASSERT_EQ(
                http.post("/api/v1/send", R"({"to":"steady","data":")" + published.back() + "\"}")
                    .status,
                202);
        }
    }
    // A case can broadcast (a batch line to "*"), so other messages may come between ours.
    ASSERT_TRUE(wait_until(
        [&] {
            return std::ranges::count_if(steady->messages(), is_ours) ==
                   static_cast<std::ptrdiff_t>(published.size());
        },
        10s))
        << steady->message_count();
    std::vector<std::string> ours;
    std::ranges::copy_if(steady->messages(), std::back_inserter(ours), is_ours);
    EXPECT_EQ(ours, published);
    EXPECT_EQ(http.get("/healthz").status, 200);
    EXPECT_GT(server.server().stats().rejected(), 0u);
}

}  // namespace
}  // namespace shardcast::test
