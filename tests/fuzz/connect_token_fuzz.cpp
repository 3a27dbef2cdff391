// libFuzzer target: TokenVerifier::verify, the check of every connect token, with the
// test-only HMAC secret and the RSA and EC public keys of tests/fuzz/keys, at a fixed instant.
//
// Input: byte 0 chooses the verifier (bit 0x20 clear, as in an upper-case letter: the strict
// one, with audience and issuer set and exp required; set: the lenient one) and the mode (its
// value modulo 8):
//   h (0)  the rest is the claims, under {"alg":"HS256|HS384|HS512","typ":"JWT"} (byte 1
//          modulo 3) and signed with the secret, so that every input reaches the claims checks
//   s (3)  the rest is a header, a newline and the claims, signed with the secret by the
//          header's HS algorithm (HS256 when it names none)
//   r (2)  header, claims and signature, one per line, each base64url-encoded as given: RSA
//          and EC verification of whatever the header names
//   else   the rest is the token as a client sends it ('t' in the seeds)
//
// Besides ASan and UBSan, it checks the verdict: a verified token has a valid client id, an
// exp when one is required and an info claim that is a JSON object within its limit; a
// token signed with the secret under a fixed header is never refused for its signature.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "transport/client_id.hpp"
#include "transport/connect_token.hpp"

namespace {

using shardcast::fuzz::check;
using shardcast::transport::TokenError;
using shardcast::transport::TokenVerdict;
using shardcast::transport::TokenVerifier;

std::string base64url(std::string_view data) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(std::uint8_t(data[k])); };
    for (; i + 3 <= data.size(); i += 3) {
        const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(n >> shift) & 63];
    }
    if (data.size() - i == 1) {
        const std::uint32_t n = byte(i) << 16;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
    } else if (data.size() - i == 2) {
        const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8;
        for (int shift = 18; shift >= 6; shift -= 6) out += kAlphabet[(n >> shift) & 63];
    }
    return out;
}

// The digest of an HS algorithm name; HS256's for anything else.
const EVP_MD* digest_for(std::string_view alg) {
    return alg == "HS384" ? EVP_sha384() : alg == "HS512" ? EVP_sha512() : EVP_sha256();
}

// header.claims.signature with both parts base64url-encoded and signed with the secret.
std::string signed_token(std::string_view header, std::string_view claims, const EVP_MD* md) {
    std::string token = base64url(header) + "." + base64url(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    const std::string_view secret = shardcast::fuzz::kHmacSecret;
    HMAC(md, secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &length);
    return token + "." +
           base64url(std::string_view(reinterpret_cast<const char*>(mac), std::size_t{length}));
}

// The alg the header names, when it is a JSON object that names one.
std::string alg_of(std::string_view header) {
    boost::system::error_code ec;
    const boost::json::value value = boost::json::parse(header, ec);
    const boost::json::object* object = ec ? nullptr : value.if_object();
    const boost::json::value* alg = object != nullptr ? object->if_contains("alg") : nullptr;
    return alg != nullptr && alg->is_string() ? std::string(alg->get_string()) : std::string();
}

// Cuts text at the first newline: what comes before, and text becomes what comes after.
std::string_view take_line(std::string_view& text) {
    const std::size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    return line;
}

void check_verdict(const TokenVerdict& verdict, bool strict) {
    if (verdict.error) {
        check(!verdict.detail.empty(), "a refusal without a detail");
        return;
    }
    check(shardcast::transport::valid_client_id(verdict.claims.sub), "admitted an invalid sub");
    check(!strict || verdict.claims.exp.has_value(), "admitted a token without exp");
    const std::string& info = verdict.claims.info;
    check(info.size() <= shardcast::transport::kMaxInfoBytes, "an info claim over its limit");
    if (!info.empty()) {
        boost::system::error_code ec;
        const boost::json::value parsed = boost::json::parse(info, ec);
        check(!ec && parsed.is_object(), "an info claim that is not a JSON object");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const TokenVerifier strict_verifier(shardcast::fuzz::jwt_config(true));
    static const TokenVerifier lenient_verifier(shardcast::fuzz::jwt_config(false));
    if (size < 1) {
        return 0;
    }
    const bool strict = (data[0] & 0x20) == 0;
    const TokenVerifier& verifier = strict ? strict_verifier : lenient_verifier;
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::string token;
    bool signed_here = false;
    switch (data[0] % 8) {
        case 0: {  // h
            static constexpr std::string_view kAlgs[] = {"HS256", "HS384", "HS512"};
            const std::string_view alg = rest.empty() ? kAlgs[0] : kAlgs[std::uint8_t(rest[0]) % 3];
            rest = rest.empty() ? rest : rest.substr(1);
            const std::string header = R"({"alg":")" + std::string(alg) + R"(","typ":"JWT"})";
            token = signed_token(header, rest, digest_for(alg));
            signed_here = true;
            break;
        }
        case 3: {  // s
            const std::string_view header = take_line(rest);
            token = signed_token(header, rest, digest_for(alg_of(header)));
            break;
        }
        case 2: {  // r
            const std::string_view header = take_line(rest);
            const std::string_view claims = take_line(rest);
            token = base64url(header) + "." + base64url(claims) + "." + base64url(rest);
            break;
        }
        default:
            token.assign(rest);
            break;
    }
    const TokenVerdict verdict = verifier.verify(token, shardcast::fuzz::now());
    check_verdict(verdict, strict);
    if (signed_here && verdict.error) {
        check(*verdict.error != TokenError::bad_signature &&
                  *verdict.error != TokenError::algorithm_refused,
              "a token signed with the configured secret was refused for its signature");
    }
    return 0;
}
