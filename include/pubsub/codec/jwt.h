// JWT (JWS compact serialization) verification for `pubsub_token` /
// `pubsub_token_key` (SPEC section 3, "Tokens").
//
// Supported algorithms: HS256 (shared secret), RS256 (RSA PKCS#1 v1.5 + SHA-256,
// key >= 2048 bits), ES256 (ECDSA P-256 + SHA-256, signature as raw R||S).
// The token header's "alg" must equal the configured key's algorithm; "none" and
// every other value are rejected. A "crit" header is rejected (we implement no
// extensions). Claims:
//   exp       required, a JSON number (NumericDate, seconds since the epoch); the
//             token is expired when now >= exp.
//   nbf       optional; when present it must be a number and now >= nbf.
//   sub       optional non-empty string: the presence id.
//   info      optional, any JSON value: presence info, kept as its exact raw JSON
//             text (TokenResult::infoJson).
//   channels  optional array of strings: the channels the token may subscribe to
//             and read the presence of (TokenScope::kSubscribe).
//   publish   optional array of strings: the channels the token may publish to,
//             over HTTP or WebSocket (TokenScope::kPublish).
//             In both, an entry ending in '*' matches every name starting with the
//             part before the '*' (so "*" alone matches all); any other entry
//             matches exactly. A channel's name is its id in group "default", and
//             "group/id" in any other group. A token WITHOUT the claim of an
//             action does not allow that action on any channel (SPEC section 11:
//             tokens say what they allow); an empty array allows nothing either.
// Other claims (iat, iss, aud, ...) are ignored.
//
// Nothing here throws; nothing keeps global state. Reasons are short, one line,
// safe to log and to send as a 401 body.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pubsub {

enum class TokenAlgorithm { HS256, RS256, ES256 };

// "HS256", "RS256" or "ES256".
const char* tokenAlgorithmName(TokenAlgorithm alg);

// Tokens longer than this (after stripping "Bearer ") are refused unread.
constexpr std::size_t kMaxTokenLength = 8192;

// The reasons TokenResult::allows() failures should be reported with.
constexpr const char* kTokenChannelDenied = "token not valid for channel";
constexpr const char* kTokenPublishDenied = "token does not allow publishing to channel";
// ... and a presence query about another user than the token's sub.
constexpr const char* kTokenUserDenied = "token not valid for user";

// HS256 secrets shorter than this are refused (RFC 7518 section 3.2: a key of at
// least the hash's size).
constexpr std::size_t kMinHs256SecretLength = 32;

// What a token is asked to allow.
enum class TokenScope {
    kSubscribe,  // the "channels" claim: subscribe, read presence
    kPublish,    // the "publish" claim: publish over HTTP or WebSocket
};

// Whether one claim entry `pattern` matches the channel `id` of `group`
// (the name "id" in group "default", "group/id" in any other).
bool tokenPatternMatches(std::string_view pattern, std::string_view group, std::string_view id);

struct TokenResult;

// A verification key, loaded once (at nginx configuration time) from the
// `pubsub_token_key` argument and then used read-only by any number of requests.
// Cheap to copy (copies share one immutable, reference-counted key; copying and
// moving never allocate or throw). A moved-from key verifies nothing ("token key
// not configured").
class TokenKey {
public:
    // Parses "hs256:SECRET", "rs256:/path/pub.pem" or "es256:/path/pub.pem" (the
    // algorithm prefix is case-insensitive). The secret is taken as raw bytes and
    // must be at least kMinHs256SecretLength (32) bytes long. The PEM file must
    // hold a public key ("-----BEGIN PUBLIC KEY-----", or "BEGIN RSA PUBLIC KEY"
    // for RSA; private keys and certificates are refused with a hint): an RSA key
    // of >= 2048 bits for rs256, an EC P-256 key for es256. The path is used as
    // given (relative paths are relative to the working directory; resolve them
    // against nginx's prefix before calling). Returns nullptr and sets `error` to
    // one line such as `cannot open "/x.pem": No such file or directory` on failure.
    static std::unique_ptr<TokenKey> load(std::string_view spec, std::string& error) noexcept;

    TokenAlgorithm algorithm() const;

    struct Impl;  // defined in jwt.cpp

private:
    explicit TokenKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    friend TokenResult verifyToken(std::string_view, const TokenKey&, std::int64_t) noexcept;

    std::shared_ptr<const Impl> impl_;
};

struct TokenResult {
    bool ok = false;
    std::string reason;  // set when !ok, e.g. "token expired"
    bool hasSub = false;
    std::string sub;           // the "sub" claim, decoded
    std::string infoJson;      // raw JSON text of "info"; empty when absent
    bool hasChannels = false;  // false: no "channels" claim, subscribes nowhere
    std::vector<std::string> channels;
    bool hasPublish = false;  // false: no "publish" claim, publishes nowhere
    std::vector<std::string> publish;
    std::int64_t exp = 0;  // "exp", rounded down to whole seconds

    // True when the token allows `scope` on channel `id` of `group` (see the
    // header comment for the matching rules). Always false for a token that is
    // not ok, and for a scope whose claim the token does not have.
    bool allows(TokenScope scope, std::string_view group, std::string_view id) const;
};

// Returns the token inside an Authorization-style value: surrounding spaces/tabs
// are trimmed and a case-insensitive "Bearer" scheme followed by spaces is
// removed. A value without a scheme is returned trimmed and otherwise unchanged.
std::string_view stripBearer(std::string_view value);

// Verifies `token` (raw, or "Bearer <jwt>": stripBearer() is applied first)
// against `key` at time `now` (seconds since the epoch). Checks, in order:
// presence ("token missing"), length ("token too long"), shape (3 segments),
// header (base64url, JSON object, alg == key's), signature, payload (base64url,
// JSON object), claims (exp, nbf, sub, info, channels, publish). Never throws.
TokenResult verifyToken(std::string_view token, const TokenKey& key, std::int64_t now) noexcept;

// Strict base64url (RFC 4648 section 5) without padding, as JWS uses it: only
// [A-Za-z0-9_-], no '=', length % 4 != 1 and unused trailing bits zero.
// Returns false on any violation (out is then unspecified). May throw
// std::bad_alloc (verifyToken() catches it).
bool base64UrlDecode(std::string_view in, std::string& out);
// Unpadded base64url encoding (for tests and tools).
std::string base64UrlEncode(std::string_view in);

}  // namespace pubsub
