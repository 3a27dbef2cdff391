// ConnectToken: verifies the JWT a client proves its id with, and mints HS256 tokens for the
// `shardcast token` command. Signatures are checked by libjwt (on OpenSSL); this file picks
// the key, refuses what must never verify (alg none, an algorithm whose key type does not
// match) and checks the claims.
//
// Thread contract: a TokenVerifier is immutable once built; verify() may be called from any
// thread concurrently (HTTP threads for upgrades, shard threads for refreshes).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "dispatcher/enum_name.hpp"
#include "transport/auth_config.hpp"

namespace shardcast::transport {

// Why a token was refused. Each is answered 401 and counted under its name.
enum class TokenError : unsigned char {
    missing_token,        // no token was sent
    malformed_token,      // not a JWT, bad claims (sub, exp, info of the wrong type), too long
    algorithm_refused,    // alg none, unknown, or no key configured for its type
    bad_signature,        // no configured key of the right type verifies it
    token_expired,        // exp (plus leeway) has passed
    token_not_yet_valid,  // nbf or iat (minus leeway) still ahead
    wrong_audience,       // aud does not contain auth.jwt.audience, or is set when that is not
    wrong_issuer,         // iss is not auth.jwt.issuer
};
inline constexpr std::size_t kTokenErrorCount = enum_count<TokenError>;

// What a verified token says about its holder.
struct TokenClaims {
    std::string sub;                  // a valid client id
    std::optional<std::int64_t> exp;  // Unix seconds; none only with require_exp: false
    std::string info;                 // the info claim as compact JSON, "" when absent
};

struct TokenVerdict {
    std::optional<TokenError> error;  // none: the token is good and claims is filled in
    std::string detail;               // for the JSON error: what exactly is wrong
    TokenClaims claims;
};

// The longest token accepted, and the longest info claim.
inline constexpr std::size_t kMaxTokenBytes = 8 * 1024;
inline constexpr std::size_t kMaxInfoBytes = 4 * 1024;

class TokenVerifier {
public:
    // Loads and checks the keys; throws std::invalid_argument naming the config key (for
    // example "auth.jwt.public_keys[1] (keys/app.pem): not a PEM public key").
    explicit TokenVerifier(const JwtConfig& config);
    ~TokenVerifier();
    TokenVerifier(const TokenVerifier&) = delete;
    TokenVerifier& operator=(const TokenVerifier&) = delete;

    // Whether any key is configured; without one every token is refused.
    bool enabled() const;
    TokenVerdict verify(std::string_view token, std::chrono::system_clock::time_point now) const;
    // Clock skew allowed on exp, nbf and iat: a session ends this long after its exp.
    std::chrono::seconds leeway() const;

private:
    struct Impl;
    std::unique_ptr<const Impl> impl_;
};

// An HS256 token for sub that expires ttl after now, with the configured audience and
// issuer when set, and info (a JSON object, or "") as its info claim. Throws
// std::invalid_argument when there is no HMAC secret or info is not an object.
std::string mint_token(const JwtConfig& config,
                       std::string_view sub,
                       std::chrono::seconds ttl,
                       std::chrono::system_clock::time_point now,
                       std::string_view info = {});

}  // namespace shardcast::transport
