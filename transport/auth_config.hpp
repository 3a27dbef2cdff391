// AuthConfig: the auth.* keys. Who may publish (API keys) and who may connect (connect
// tokens, origins). Plain values, read-only once running.
//
// The defaults let no one in: with no API key the publish, disconnect, lookup and stats calls
// are refused, and with no JWT key no client can connect. Opening either up takes an
// explicit key (auth.insecure_api, auth.anonymous_clients), which the server logs loudly.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace shardcast::transport {

// A PEM public key as read from auth.jwt.public_keys: where it came from (for messages that
// name the file) and its text.
struct PublicKeyFile {
    std::string path;
    std::string pem;
};

struct JwtConfig {
    // HS256/HS384/HS512 secret; empty: HMAC tokens are refused.
    std::string hmac_secret;
    // RSA (RS256/384/512) and EC P-256/P-384/P-521 (ES256/384/512) keys. A token is verified only
    // against keys of the type its algorithm names.
    std::vector<PublicKeyFile> public_keys;
    // When set, aud must contain it; when empty, a token that carries aud is refused.
    std::string audience;
    // When set, iss must equal it.
    std::string issuer;
    // Clock skew allowed on exp, nbf and iat.
    std::chrono::seconds leeway{30};
    // A token without exp is refused unless this is false (it then never expires).
    bool require_exp = true;

    bool enabled() const { return !hmac_secret.empty() || !public_keys.empty(); }
};

struct AuthConfig {
    // Bearer keys for publish, disconnect, lookup and stats.
    std::vector<std::string> api_keys;
    // With no api_keys: true serves those calls to anyone; false refuses them with 403.
    bool insecure_api = false;
    // true: a client without a token takes its id from the URL (/ws/{id}), as anyone may.
    bool anonymous_clients = false;
    // Origins (scheme://host[:port]) a browser may connect from besides the server's own;
    // "*" allows every origin.
    std::vector<std::string> allowed_origins;
    JwtConfig jwt;

    bool api_open() const { return api_keys.empty() && insecure_api; }
    bool any_origin() const {
        return allowed_origins.size() == 1 && allowed_origins.front() == "*";
    }
};

}  // namespace shardcast::transport
