// JWT verification; see include/pubsub/jwt.h.
#include "pubsub/codec/jwt.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>

#include "pubsub/codec/json.h"

namespace pubsub {

struct TokenKey::Impl {
    TokenAlgorithm alg = TokenAlgorithm::HS256;
    std::string secret;        // HS256
    EVP_PKEY* pkey = nullptr;  // RS256 / ES256, owned

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() { EVP_PKEY_free(pkey); }
};

namespace {

constexpr std::size_t kMaxPemFileSize = 1024 * 1024;
constexpr int kMinRsaBits = 2048;

// Clears OpenSSL's per-thread error queue when leaving a scope, so failures here
// never leak into whatever nginx checks next.
struct ErrorQueueGuard {
    ~ErrorQueueGuard() { ERR_clear_error(); }
};

char asciiLower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (asciiLower(a[i]) != asciiLower(b[i])) {
            return false;
        }
    }
    return true;
}

bool isSpace(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && isSpace(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && isSpace(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

int base64UrlValue(unsigned char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

// Reads a whole (small) file. Returns false with a one-line error.
bool readSmallFile(const std::string& path, std::string& data, std::string& error) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = "cannot open \"" + path + "\": " + std::strerror(errno);
        return false;
    }
    char buf[4096];
    bool ok = true;
    for (;;) {
        const std::size_t n = std::fread(buf, 1, sizeof buf, f);
        data.append(buf, n);
        if (data.size() > kMaxPemFileSize) {
            error = "\"" + path + "\" is too large for a PEM public key";
            ok = false;
            break;
        }
        if (n < sizeof buf) {
            if (std::ferror(f)) {
                error = "cannot read \"" + path + "\": " + std::strerror(errno);
                ok = false;
            }
            break;
        }
    }
    std::fclose(f);
    return ok;
}

int refusePassword(char*, int, int, void*) {
    return 0;
}

const char* keyKind(EVP_PKEY* pkey) {
    switch (EVP_PKEY_get_base_id(pkey)) {
        case EVP_PKEY_RSA:
            return "an RSA key";
        case EVP_PKEY_RSA_PSS:
            return "an RSA-PSS key";
        case EVP_PKEY_EC:
            return "an EC key";
        case EVP_PKEY_ED25519:
            return "an Ed25519 key";
        case EVP_PKEY_ED448:
            return "an Ed448 key";
        default:
            return "an unsupported key type";
    }
}

// Loads and checks the public key for rs256/es256. Returns nullptr with `error`.
EVP_PKEY* loadPublicKey(TokenAlgorithm alg, const std::string& path, std::string& error) {
    ErrorQueueGuard guard;
    std::string pem;
    if (!readSmallFile(path, pem, error)) {
        return nullptr;
    }
    const std::string quoted = "\"" + path + "\"";
    if (pem.find("-----BEGIN ") == std::string::npos) {
        error = quoted + " is not a PEM file (no \"-----BEGIN\" line)";
        return nullptr;
    }
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    if (bio == nullptr) {
        error = "out of memory reading " + quoted;
        return nullptr;
    }
    EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, refusePassword, nullptr);
    BIO_free(bio);
    if (pkey == nullptr) {
        if (pem.find("PRIVATE KEY-----") != std::string::npos) {
            error = quoted +
                    " holds a private key; give the public key "
                    "(openssl pkey -in KEY -pubout)";
        } else if (pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos) {
            error = quoted +
                    " holds a certificate; give its public key "
                    "(openssl x509 -in CERT -pubkey -noout)";
        } else if (pem.find("-----BEGIN PUBLIC KEY-----") == std::string::npos) {
            error = quoted + " has no \"-----BEGIN PUBLIC KEY-----\" block";
        } else {
            error = "cannot parse the public key in " + quoted;
        }
        return nullptr;
    }
    if (alg == TokenAlgorithm::RS256) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
            error = quoted + " holds " + keyKind(pkey) + ", rs256 needs an RSA key";
            EVP_PKEY_free(pkey);
            return nullptr;
        }
        const int bits = EVP_PKEY_get_bits(pkey);
        if (bits < kMinRsaBits) {
            error = quoted + " holds a " + std::to_string(bits) +
                    "-bit RSA key, rs256 needs at least 2048 bits";
            EVP_PKEY_free(pkey);
            return nullptr;
        }
    } else {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) {
            error = quoted + " holds " + keyKind(pkey) + ", es256 needs an EC P-256 key";
            EVP_PKEY_free(pkey);
            return nullptr;
        }
        char group[80] = {0};
        std::size_t groupLen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &groupLen) != 1) {
            group[0] = '\0';
        }
        const std::string_view name(group);
        if (!equalsIgnoreCase(name, "prime256v1") && !equalsIgnoreCase(name, "P-256") &&
            !equalsIgnoreCase(name, "secp256r1")) {
            error = quoted + " holds an EC key on curve " +
                    (name.empty() ? std::string("(unknown)") : std::string(name)) +
                    ", es256 needs P-256 (prime256v1)";
            EVP_PKEY_free(pkey);
            return nullptr;
        }
    }
    return pkey;
}

bool verifyHmac(const TokenKey::Impl& key, std::string_view signingInput, const std::string& sig) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int macLen = 0;
    if (HMAC(EVP_sha256(), key.secret.data(), static_cast<int>(key.secret.size()),
             reinterpret_cast<const unsigned char*>(signingInput.data()), signingInput.size(), mac,
             &macLen) == nullptr) {
        return false;
    }
    return macLen == 32 && sig.size() == 32 && CRYPTO_memcmp(mac, sig.data(), 32) == 0;
}

bool verifyDigestSignature(EVP_PKEY* pkey, std::string_view signingInput, const unsigned char* sig,
                           std::size_t sigLen) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) {
        return false;
    }
    bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, sigLen,
                               reinterpret_cast<const unsigned char*>(signingInput.data()),
                               signingInput.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

// Appends one DER INTEGER holding the unsigned big-endian `bytes` (32 of them).
std::size_t derInteger(const unsigned char* bytes, std::size_t n, unsigned char* out) {
    std::size_t skip = 0;
    while (skip + 1 < n && bytes[skip] == 0) {
        ++skip;
    }
    const bool pad = (bytes[skip] & 0x80) != 0;
    const std::size_t len = n - skip + (pad ? 1 : 0);
    std::size_t o = 0;
    out[o++] = 0x02;
    out[o++] = static_cast<unsigned char>(len);
    if (pad) {
        out[o++] = 0x00;
    }
    std::memcpy(out + o, bytes + skip, n - skip);
    return o + n - skip;
}

// JWS ES256 signatures are R||S (32 + 32 bytes); OpenSSL wants a DER ECDSA-Sig-Value.
bool verifyEs256(EVP_PKEY* pkey, std::string_view signingInput, const std::string& sig) {
    if (sig.size() != 64) {
        return false;
    }
    const auto* raw = reinterpret_cast<const unsigned char*>(sig.data());
    unsigned char ints[2 * 35];
    std::size_t intsLen = derInteger(raw, 32, ints);
    intsLen += derInteger(raw + 32, 32, ints + intsLen);
    unsigned char der[2 + sizeof ints];
    der[0] = 0x30;  // SEQUENCE, short-form length (at most 70 bytes)
    der[1] = static_cast<unsigned char>(intsLen);
    std::memcpy(der + 2, ints, intsLen);
    return verifyDigestSignature(pkey, signingInput, der, 2 + intsLen);
}

const json::ParseOptions& tokenJsonOptions() {
    static const json::ParseOptions options{32, kMaxTokenLength, false};
    return options;
}

std::int64_t clampToInt64(double d) {
    const double f = std::floor(d);
    if (f >= 9.2e18) {
        return std::numeric_limits<std::int64_t>::max();
    }
    if (f <= -9.2e18) {
        return std::numeric_limits<std::int64_t>::min();
    }
    return static_cast<std::int64_t>(f);
}

// Reads the optional claim `name`, an array of strings, into `out`; false with
// `reason` set when it is there but not an array of strings.
bool readPatterns(const json::Value& payload, const char* name, bool& has,
                  std::vector<std::string>& out, std::string& reason) {
    const json::Value* v = payload.find(name);
    if (v == nullptr) {
        return true;
    }
    if (!v->isArray()) {
        reason = std::string("token malformed: ") + name + " is not an array of strings";
        return false;
    }
    out.reserve(v->items().size());
    for (const json::Value& item : v->items()) {
        if (!item.isString()) {
            reason = std::string("token malformed: ") + name + " is not an array of strings";
            return false;
        }
        out.push_back(item.asString());
    }
    has = true;
    return true;
}

// Fills `r` (which starts out !ok); returns with r.reason set on failure.
void verifyInto(TokenResult& r, std::string_view token, const TokenKey::Impl* key,
                std::int64_t now) {
    token = stripBearer(token);
    if (token.empty()) {
        r.reason = "token missing";
        return;
    }
    if (token.size() > kMaxTokenLength) {
        r.reason = "token too long";
        return;
    }
    if (token.find_first_of(" \t") != std::string_view::npos) {
        r.reason = "token malformed: unsupported authorization scheme";
        return;
    }
    if (key == nullptr) {
        r.reason = "token key not configured";
        return;
    }
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        r.reason = "token malformed: wrong segment count";
        return;
    }
    const std::string_view headerB64 = token.substr(0, dot1);
    const std::string_view payloadB64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string_view sigB64 = token.substr(dot2 + 1);
    const std::string_view signingInput = token.substr(0, dot2);

    std::string buf;
    if (headerB64.empty() || !base64UrlDecode(headerB64, buf)) {
        r.reason = "token malformed: bad base64 in header";
        return;
    }
    json::ParseResult header = json::parse(buf, tokenJsonOptions());
    if (!header) {
        r.reason = "token malformed: header is not JSON";
        return;
    }
    const json::Value& h = header.document->root();
    if (!h.isObject()) {
        r.reason = "token malformed: header is not a JSON object";
        return;
    }
    const json::Value* alg = h.find("alg");
    if (alg == nullptr || !alg->isString()) {
        r.reason = "token malformed: header has no alg";
        return;
    }
    const char* expected = tokenAlgorithmName(key->alg);
    if (equalsIgnoreCase(alg->asString(), "none")) {
        r.reason = std::string("token algorithm none not allowed: expected ") + expected;
        return;
    }
    if (alg->asString() != expected) {
        r.reason = std::string("token algorithm mismatch: expected ") + expected;
        return;
    }
    if (h.find("crit") != nullptr) {
        r.reason = "token has unsupported critical header parameters";
        return;
    }

    std::string sig;
    if (!base64UrlDecode(sigB64, sig)) {
        r.reason = "token malformed: bad base64 in signature";
        return;
    }
    bool valid = false;
    switch (key->alg) {
        case TokenAlgorithm::HS256:
            valid = verifyHmac(*key, signingInput, sig);
            break;
        case TokenAlgorithm::RS256:
            valid = !sig.empty() &&
                    verifyDigestSignature(key->pkey, signingInput,
                                          reinterpret_cast<const unsigned char*>(sig.data()),
                                          sig.size());
            break;
        case TokenAlgorithm::ES256:
            if (sig.size() != 64) {
                r.reason = "token signature invalid: ES256 needs 64 bytes (R||S)";
                return;
            }
            valid = verifyEs256(key->pkey, signingInput, sig);
            break;
    }
    if (!valid) {
        r.reason = "token signature invalid";
        return;
    }

    buf.clear();
    if (payloadB64.empty() || !base64UrlDecode(payloadB64, buf)) {
        r.reason = "token malformed: bad base64 in payload";
        return;
    }
    json::ParseResult payload = json::parse(buf, tokenJsonOptions());
    if (!payload) {
        r.reason = "token malformed: payload is not JSON";
        return;
    }
    const json::Document& doc = *payload.document;
    const json::Value& p = doc.root();
    if (!p.isObject()) {
        r.reason = "token malformed: payload is not a JSON object";
        return;
    }

    const json::Value* exp = p.find("exp");
    if (exp == nullptr) {
        r.reason = "token has no exp claim";
        return;
    }
    if (!exp->isNumber()) {
        r.reason = "token malformed: exp is not a number";
        return;
    }
    if (static_cast<double>(now) >= exp->asNumber()) {
        r.reason = "token expired";
        return;
    }
    if (const json::Value* nbf = p.find("nbf")) {
        if (!nbf->isNumber()) {
            r.reason = "token malformed: nbf is not a number";
            return;
        }
        if (static_cast<double>(now) < nbf->asNumber()) {
            r.reason = "token not yet valid";
            return;
        }
    }
    if (const json::Value* sub = p.find("sub")) {
        if (!sub->isString() || sub->asString().empty()) {
            r.reason = "token malformed: sub is not a non-empty string";
            return;
        }
        r.hasSub = true;
        r.sub = sub->asString();
    }
    if (const json::Value* info = p.find("info")) {
        r.infoJson.assign(doc.raw(*info));
    }
    if (!readPatterns(p, "channels", r.hasChannels, r.channels, r.reason) ||
        !readPatterns(p, "publish", r.hasPublish, r.publish, r.reason)) {
        return;
    }
    r.exp = clampToInt64(exp->asNumber());
    r.ok = true;
}

}  // namespace

const char* tokenAlgorithmName(TokenAlgorithm alg) {
    switch (alg) {
        case TokenAlgorithm::HS256:
            return "HS256";
        case TokenAlgorithm::RS256:
            return "RS256";
        case TokenAlgorithm::ES256:
            return "ES256";
    }
    return "?";
}

bool base64UrlDecode(std::string_view in, std::string& out) {
    if (in.size() % 4 == 1) {
        return false;
    }
    out.clear();
    out.reserve(in.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char ch : in) {
        const int v = base64UrlValue(static_cast<unsigned char>(ch));
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    // Leftover bits (2 or 4) must be zero, or the encoding is not canonical.
    return (acc & ((1u << bits) - 1)) == 0;
}

std::string base64UrlEncode(std::string_view in) {
    static const char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char ch : in) {
        acc = (acc << 8) | static_cast<unsigned char>(ch);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
        }
    }
    if (bits > 0) {
        out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
    }
    return out;
}

std::unique_ptr<TokenKey> TokenKey::load(std::string_view spec, std::string& error) noexcept {
    try {
        error.clear();
        const std::size_t colon = spec.find(':');
        if (colon == std::string_view::npos) {
            error =
                "expected \"hs256:SECRET\", \"rs256:/path/pub.pem\" or "
                "\"es256:/path/pub.pem\"";
            return nullptr;
        }
        const std::string_view name = spec.substr(0, colon);
        const std::string_view rest = spec.substr(colon + 1);
        auto impl = std::make_shared<Impl>();
        if (equalsIgnoreCase(name, "hs256")) {
            impl->alg = TokenAlgorithm::HS256;
        } else if (equalsIgnoreCase(name, "rs256")) {
            impl->alg = TokenAlgorithm::RS256;
        } else if (equalsIgnoreCase(name, "es256")) {
            impl->alg = TokenAlgorithm::ES256;
        } else {
            error = "unknown token algorithm \"" + std::string(name) +
                    "\" (expected hs256, rs256 or es256)";
            return nullptr;
        }
        if (impl->alg == TokenAlgorithm::HS256) {
            if (rest.empty()) {
                error = "hs256 secret is empty";
                return nullptr;
            }
            if (rest.size() < kMinHs256SecretLength) {
                error = "hs256 secret is " + std::to_string(rest.size()) +
                        " bytes long, at least " + std::to_string(kMinHs256SecretLength) +
                        " are needed (e.g. openssl rand -base64 48)";
                return nullptr;
            }
            if (rest.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
                error = "hs256 secret is too long";
                return nullptr;
            }
            impl->secret.assign(rest.data(), rest.size());
        } else {
            if (rest.empty()) {
                error = std::string(name) + " needs the path of a PEM public key file";
                return nullptr;
            }
            impl->pkey = loadPublicKey(impl->alg, std::string(rest), error);
            if (impl->pkey == nullptr) {
                return nullptr;
            }
        }
        std::unique_ptr<TokenKey> key(new TokenKey(std::move(impl)));
        return key;
    } catch (...) {  // only std::bad_alloc can get here
        try {
            error = "out of memory";
        } catch (...) {
        }
        return nullptr;
    }
}

TokenAlgorithm TokenKey::algorithm() const {
    return impl_ ? impl_->alg : TokenAlgorithm::HS256;
}

std::string_view stripBearer(std::string_view value) {
    value = trim(value);
    constexpr std::string_view kScheme = "bearer";
    if (value.size() >= kScheme.size() &&
        equalsIgnoreCase(value.substr(0, kScheme.size()), kScheme) &&
        (value.size() == kScheme.size() || isSpace(value[kScheme.size()]))) {
        return trim(value.substr(kScheme.size()));
    }
    return value;
}

TokenResult verifyToken(std::string_view token, const TokenKey& key, std::int64_t now) noexcept {
    TokenResult r;
    try {
        verifyInto(r, token, key.impl_.get(), now);
        if (!r.ok) {
            r.hasSub = false;
            r.sub.clear();
            r.infoJson.clear();
            r.hasChannels = false;
            r.channels.clear();
            r.hasPublish = false;
            r.publish.clear();
        }
    } catch (...) {  // only std::bad_alloc can get here
        r.ok = false;
        r.hasSub = false;
        r.hasChannels = false;
        r.hasPublish = false;
        try {
            r.reason = "token rejected: out of memory";
        } catch (...) {
        }
    }
    return r;
}

bool tokenPatternMatches(std::string_view pattern, std::string_view group, std::string_view id) {
    // the channel's name, in pieces: "id" in group "default", "group/id" in any other
    const bool qualified = !group.empty() && group != "default";
    const std::string_view pieces[3] = {qualified ? group : std::string_view(),
                                        qualified ? std::string_view("/") : std::string_view(), id};
    const bool prefix = !pattern.empty() && pattern.back() == '*';
    if (prefix) {
        pattern.remove_suffix(1);
    }
    std::size_t length = 0;
    for (std::string_view piece : pieces) {
        length += piece.size();
    }
    if (prefix ? length < pattern.size() : length != pattern.size()) {
        return false;
    }
    // the name starts with the pattern (the whole name, when exact)
    for (std::string_view piece : pieces) {
        const std::size_t n = std::min(piece.size(), pattern.size());
        if (piece.substr(0, n) != pattern.substr(0, n)) {
            return false;
        }
        pattern.remove_prefix(n);
    }
    return true;
}

bool TokenResult::allows(TokenScope scope, std::string_view group, std::string_view id) const {
    if (!ok) {
        return false;
    }
    const bool has = scope == TokenScope::kSubscribe ? hasChannels : hasPublish;
    const std::vector<std::string>& patterns = scope == TokenScope::kSubscribe ? channels : publish;
    if (!has) {
        return false;
    }
    for (const std::string& entry : patterns) {
        if (tokenPatternMatches(entry, group, id)) {
            return true;
        }
    }
    return false;
}

}  // namespace pubsub
