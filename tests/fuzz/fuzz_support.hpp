// What the fuzz targets share: the fixed clock and the test-only keys their seed tokens were
// signed with (make_seeds.py writes the seeds with the same values), and the check that
// turns a broken invariant into a crash libFuzzer reports. Used from the fuzzer's one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "transport/auth_config.hpp"

namespace shardcast::fuzz {

// Tokens are judged at this instant (2027-01-15), so a seed that verifies today still does.
inline constexpr std::int64_t kNowSeconds = 1'800'000'000;
inline std::chrono::system_clock::time_point now() {
    return std::chrono::system_clock::time_point(std::chrono::seconds(kNowSeconds));
}

// Test-only secrets: nothing outside the fuzzers and their seeds trusts them.
inline constexpr std::string_view kHmacSecret = "fuzz-only-hmac-secret-not-a-real-one-0123456789";
inline constexpr std::string_view kAudience = "shardcast-fuzz";
inline constexpr std::string_view kIssuer = "https://issuer.fuzz.invalid";
inline constexpr std::string_view kApiKey = "fuzz-api-key";

// Aborts with the message: a finding, reported by libFuzzer with its input.
inline void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
        std::abort();
    }
}

inline std::string read_key(const char* name) {
    const std::string path = std::string(SHARDCAST_FUZZ_DIR) + "/keys/" + name;
    std::ifstream in(path, std::ios::binary);
    check(static_cast<bool>(in), "cannot read a key of tests/fuzz/keys");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The HMAC secret and both public keys. Strict: audience and issuer set, exp required, the
// default leeway. Lenient: none of those, and no leeway.
inline transport::JwtConfig jwt_config(bool strict) {
    transport::JwtConfig config;
    config.hmac_secret = kHmacSecret;
    config.public_keys = {{"keys/rsa_public.pem", read_key("rsa_public.pem")},
                          {"keys/ec_public.pem", read_key("ec_public.pem")}};
    if (strict) {
        config.audience = kAudience;
        config.issuer = kIssuer;
    } else {
        config.require_exp = false;
        config.leeway = std::chrono::seconds(0);
    }
    return config;
}

}  // namespace shardcast::fuzz
