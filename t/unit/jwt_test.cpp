// Unit tests for JWT verification. Vectors come from t/unit/data/gen-jwt-vectors.sh
// (openssl CLI); the generated files are committed under t/unit/data/jwt/.
#include "pubsub/codec/jwt.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pubsub {
namespace {

constexpr std::int64_t kNow = 1700000000;  // 2023-11-14; vectors expire in 2100

std::string dataPath(const std::string& name) {
    return std::string(PUBSUB_TEST_DATA_DIR) + "/jwt/" + name;
}

std::string readData(const std::string& name) {
    std::ifstream in(dataPath(name), std::ios::binary);
    EXPECT_TRUE(in.good()) << "missing test file " << dataPath(name);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
        s.pop_back();
    }
    return s;
}

std::string token(const std::string& name) {
    return readData(name + ".jwt");
}

std::unique_ptr<TokenKey> loadKey(const std::string& spec) {
    std::string error;
    std::unique_ptr<TokenKey> key = TokenKey::load(spec, error);
    EXPECT_NE(key, nullptr) << spec << ": " << error;
    EXPECT_TRUE(error.empty());
    return key;
}

std::string keyError(const std::string& spec) {
    std::string error;
    std::unique_ptr<TokenKey> key = TokenKey::load(spec, error);
    EXPECT_EQ(key, nullptr) << spec;
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(error.find('\n'), std::string::npos);
    return error;
}

std::unique_ptr<TokenKey> hsKey() {
    return loadKey("hs256:" + readData("hs256.secret"));
}
std::unique_ptr<TokenKey> rsKey() {
    return loadKey("rs256:" + dataPath("rsa-pub.pem"));
}
std::unique_ptr<TokenKey> esKey() {
    return loadKey("es256:" + dataPath("ec-pub.pem"));
}

std::string reasonOf(const std::string& tok, const TokenKey& key, std::int64_t now = kNow) {
    TokenResult r = verifyToken(tok, key, now);
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "default", "room-1"));
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", "room-1"));
    EXPECT_FALSE(r.hasSub);
    EXPECT_TRUE(r.infoJson.empty());
    return r.reason;
}

// Returns the three segments of a compact JWS.
std::vector<std::string> segments(const std::string& tok) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = tok.find('.', start);
        parts.push_back(tok.substr(start, dot - start));
        if (dot == std::string::npos) {
            break;
        }
        start = dot + 1;
    }
    return parts;
}

std::string join(const std::vector<std::string>& p) {
    return p[0] + "." + p[1] + "." + p[2];
}

void expectFullClaims(const TokenResult& r) {
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_TRUE(r.reason.empty());
    EXPECT_TRUE(r.hasSub);
    EXPECT_EQ(r.sub, "user-42");
    // Kept verbatim: spacing and the raw UTF-8 are those of the token.
    EXPECT_EQ(r.infoJson, "{\"name\":\"Zo\xC3\xAB\", \"tags\":[\"a\",\"b\"]}");
    EXPECT_EQ(r.exp, 4102444800);
    EXPECT_TRUE(r.hasChannels);
    EXPECT_EQ(r.channels, (std::vector<std::string>{"room-1", "team-*"}));
}

TEST(Base64Url, DecodesStrictly) {
    std::string out;
    EXPECT_TRUE(base64UrlDecode("", out));
    EXPECT_EQ(out, "");
    EXPECT_TRUE(base64UrlDecode("Zg", out));
    EXPECT_EQ(out, "f");
    EXPECT_TRUE(base64UrlDecode("Zm8", out));
    EXPECT_EQ(out, "fo");
    EXPECT_TRUE(base64UrlDecode("Zm9v", out));
    EXPECT_EQ(out, "foo");
    EXPECT_TRUE(base64UrlDecode("-_-_", out));
    EXPECT_EQ(out, "\xFB\xFF\xBF");
    EXPECT_FALSE(base64UrlDecode("Zg==", out));  // padding is not used in JWS
    EXPECT_FALSE(base64UrlDecode("Zm8=", out));
    EXPECT_FALSE(base64UrlDecode("Z", out));  // impossible length
    EXPECT_FALSE(base64UrlDecode("Zm9vY", out));
    EXPECT_FALSE(base64UrlDecode("+/+/", out));  // standard alphabet
    EXPECT_FALSE(base64UrlDecode("Zm 9v", out));
    EXPECT_FALSE(base64UrlDecode("Zh", out));  // non-zero unused bits
    EXPECT_FALSE(base64UrlDecode("Zm9", out));
    EXPECT_FALSE(base64UrlDecode(std::string("Zm\0v", 4), out));
}

TEST(Base64Url, EncodeRoundTrips) {
    EXPECT_EQ(base64UrlEncode(""), "");
    EXPECT_EQ(base64UrlEncode("f"), "Zg");
    EXPECT_EQ(base64UrlEncode("fo"), "Zm8");
    EXPECT_EQ(base64UrlEncode("foo"), "Zm9v");
    EXPECT_EQ(base64UrlEncode("\xFB\xFF\xBF"), "-_-_");
    std::string all;
    for (int i = 0; i < 256; ++i) {
        all.push_back(static_cast<char>(i));
        std::string back;
        ASSERT_TRUE(base64UrlDecode(base64UrlEncode(all), back));
        ASSERT_EQ(back, all);
    }
}

TEST(JwtVerify, ValidTokenOfEachAlgorithm) {
    expectFullClaims(verifyToken(token("hs256-valid"), *hsKey(), kNow));
    expectFullClaims(verifyToken(token("rs256-valid"), *rsKey(), kNow));
    expectFullClaims(verifyToken(token("es256-valid"), *esKey(), kNow));
}

TEST(JwtVerify, MinimalTokenAllowsNoChannel) {
    TokenResult r = verifyToken(token("hs256-minimal"), *hsKey(), kNow);
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_FALSE(r.hasSub);
    EXPECT_TRUE(r.sub.empty());
    EXPECT_TRUE(r.infoJson.empty());
    EXPECT_FALSE(r.hasChannels);
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "default", "anything"));
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", ""));
}

TEST(JwtVerify, InfoKeptAsRawJson) {
    TokenResult r = verifyToken(token("hs256-info-string"), *hsKey(), kNow);
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_EQ(r.sub, "u");
    EXPECT_EQ(r.infoJson, "\"line\\nbreak \\u00e9\"");
}

TEST(JwtVerify, BearerPrefix) {
    const std::string tok = token("hs256-valid");
    auto key = hsKey();
    expectFullClaims(verifyToken("Bearer " + tok, *key, kNow));
    expectFullClaims(verifyToken("bearer " + tok, *key, kNow));
    expectFullClaims(verifyToken("BEARER \t " + tok + " ", *key, kNow));
    expectFullClaims(verifyToken("  " + tok, *key, kNow));
    EXPECT_EQ(reasonOf("Bearer", *key), "token missing");
    EXPECT_EQ(reasonOf("Bearer   ", *key), "token missing");
    EXPECT_EQ(reasonOf("Basic " + tok, *key), "token malformed: unsupported authorization scheme");
    EXPECT_EQ(reasonOf("Bearer x " + tok, *key),
              "token malformed: unsupported authorization scheme");
    EXPECT_FALSE(verifyToken("Bearer" + tok, *key, kNow).ok);

    EXPECT_EQ(stripBearer("Bearer abc"), "abc");
    EXPECT_EQ(stripBearer(" bEaReR  abc "), "abc");
    EXPECT_EQ(stripBearer("abc"), "abc");
    EXPECT_EQ(stripBearer("Bearerabc"), "Bearerabc");
    EXPECT_EQ(stripBearer("Basic abc"), "Basic abc");
    EXPECT_EQ(stripBearer(""), "");
}

TEST(JwtVerify, MissingAndTooLong) {
    auto key = hsKey();
    EXPECT_EQ(reasonOf("", *key), "token missing");
    EXPECT_EQ(reasonOf(" \t ", *key), "token missing");
    EXPECT_EQ(reasonOf(std::string(kMaxTokenLength + 1, 'a'), *key), "token too long");
    EXPECT_EQ(reasonOf(std::string(kMaxTokenLength, 'a'), *key),
              "token malformed: wrong segment count");
}

TEST(JwtVerify, TamperedPayload) {
    auto key = hsKey();
    std::vector<std::string> p = segments(token("hs256-valid"));
    p[1] = base64UrlEncode("{\"sub\":\"admin\",\"exp\":4102444800,\"channels\":[\"*\"]}");
    EXPECT_EQ(reasonOf(join(p), *key), "token signature invalid");

    for (const char* name : {"rs256-valid", "es256-valid"}) {
        std::vector<std::string> q = segments(token(name));
        q[1][5] = q[1][5] == 'A' ? 'B' : 'A';
        EXPECT_EQ(reasonOf(join(q), name[0] == 'r' ? *rsKey() : *esKey()),
                  "token signature invalid")
            << name;
    }
}

TEST(JwtVerify, TamperedSignature) {
    struct Case {
        const char* name;
        std::unique_ptr<TokenKey> key;
    };
    Case cases[] = {{"hs256-valid", hsKey()}, {"rs256-valid", rsKey()}, {"es256-valid", esKey()}};
    for (Case& c : cases) {
        std::vector<std::string> p = segments(token(c.name));
        std::string sig;
        ASSERT_TRUE(base64UrlDecode(p[2], sig));
        sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
        p[2] = base64UrlEncode(sig);
        EXPECT_EQ(reasonOf(join(p), *c.key), "token signature invalid") << c.name;

        // Truncated or missing signature.
        std::vector<std::string> t = segments(token(c.name));
        std::string shortSig;
        ASSERT_TRUE(base64UrlDecode(t[2], shortSig));
        t[2] = base64UrlEncode(shortSig.substr(0, shortSig.size() - 1));
        EXPECT_NE(reasonOf(join(t), *c.key).find("token signature invalid"), std::string::npos);
        t[2].clear();
        EXPECT_NE(reasonOf(join(t), *c.key).find("token signature invalid"), std::string::npos);
    }
}

TEST(JwtVerify, WrongKey) {
    EXPECT_EQ(reasonOf(token("hs256-valid"), *loadKey("hs256:another-secret-of-enough-length!")),
              "token signature invalid");
    EXPECT_EQ(reasonOf(token("rs256-valid"), *loadKey("rs256:" + dataPath("rsa-other-pub.pem"))),
              "token signature invalid");
    EXPECT_EQ(reasonOf(token("es256-valid"), *loadKey("es256:" + dataPath("ec-other-pub.pem"))),
              "token signature invalid");
}

TEST(JwtVerify, AlgorithmMismatch) {
    EXPECT_EQ(reasonOf(token("hs256-valid"), *rsKey()), "token algorithm mismatch: expected RS256");
    EXPECT_EQ(reasonOf(token("rs256-valid"), *esKey()), "token algorithm mismatch: expected ES256");
    EXPECT_EQ(reasonOf(token("es256-valid"), *hsKey()), "token algorithm mismatch: expected HS256");
    // The classic key-confusion attack: HS256 keyed with the RSA public key file.
    EXPECT_EQ(reasonOf(token("hs256-keyed-with-rsa-pem"), *rsKey()),
              "token algorithm mismatch: expected RS256");
    // alg is compared exactly.
    std::vector<std::string> p = segments(token("hs256-valid"));
    p[0] = base64UrlEncode("{\"alg\":\"hs256\"}");
    EXPECT_EQ(reasonOf(join(p), *hsKey()), "token algorithm mismatch: expected HS256");
    p[0] = base64UrlEncode("{\"alg\":[\"HS256\"]}");
    EXPECT_EQ(reasonOf(join(p), *hsKey()), "token malformed: header has no alg");
    EXPECT_EQ(reasonOf(token("hs256-no-alg"), *hsKey()), "token malformed: header has no alg");
}

TEST(JwtVerify, AlgorithmNone) {
    std::unique_ptr<TokenKey> keys[] = {hsKey(), rsKey(), esKey()};
    for (const auto& key : keys) {
        const std::string reason = reasonOf(token("none-alg"), *key);
        EXPECT_EQ(reason.rfind("token algorithm none not allowed: expected ", 0), 0u) << reason;
    }
    std::vector<std::string> p = segments(token("hs256-valid"));
    p[0] = base64UrlEncode("{\"alg\":\"NONE\"}");
    p[2].clear();
    EXPECT_EQ(reasonOf(join(p), *hsKey()), "token algorithm none not allowed: expected HS256");
}

TEST(JwtVerify, CritHeaderRejected) {
    EXPECT_EQ(reasonOf(token("hs256-crit"), *hsKey()),
              "token has unsupported critical header parameters");
}

TEST(JwtVerify, MalformedBase64) {
    auto key = hsKey();
    const std::vector<std::string> good = segments(token("hs256-valid"));
    std::vector<std::string> p = good;
    p[0] += "=";
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: bad base64 in header");
    p = good;
    p[0][3] = '+';
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: bad base64 in header");
    p = good;
    p[0].clear();
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: bad base64 in header");
    p = good;
    p[2] += "==";
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: bad base64 in signature");
    p = good;
    p[2][0] = '!';
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: bad base64 in signature");
}

TEST(JwtVerify, MalformedPayloadBase64IsCaughtBySignatureFirst) {
    // The signature covers the payload text, so a corrupted payload fails there
    // unless it is signed; then it is reported as bad base64.
    auto key = hsKey();
    std::vector<std::string> p = segments(token("hs256-valid"));
    p[1] += "*";
    EXPECT_EQ(reasonOf(join(p), *key), "token signature invalid");
}

TEST(JwtVerify, WrongSegmentCount) {
    auto key = hsKey();
    const std::string tok = token("hs256-valid");
    const std::vector<std::string> p = segments(tok);
    EXPECT_EQ(reasonOf(p[0] + "." + p[1], *key), "token malformed: wrong segment count");
    EXPECT_EQ(reasonOf(p[0], *key), "token malformed: wrong segment count");
    EXPECT_EQ(reasonOf(tok + ".", *key), "token malformed: wrong segment count");
    EXPECT_EQ(reasonOf(tok + "." + p[2], *key), "token malformed: wrong segment count");
    EXPECT_EQ(reasonOf("..", *key), "token malformed: bad base64 in header");
}

TEST(JwtVerify, NonJsonHeaderAndPayload) {
    auto key = hsKey();
    EXPECT_EQ(reasonOf(token("hs256-header-not-json"), *key),
              "token malformed: header is not JSON");
    EXPECT_EQ(reasonOf(token("hs256-payload-not-json"), *key),
              "token malformed: payload is not JSON");
    EXPECT_EQ(reasonOf(token("hs256-payload-array"), *key),
              "token malformed: payload is not a JSON object");
    EXPECT_EQ(reasonOf(token("hs256-payload-duplicate-exp"), *key),
              "token malformed: payload is not JSON");
    std::vector<std::string> p = segments(token("hs256-valid"));
    p[0] = base64UrlEncode("\"HS256\"");
    EXPECT_EQ(reasonOf(join(p), *key), "token malformed: header is not a JSON object");
}

TEST(JwtVerify, ExpClaim) {
    auto key = hsKey();
    EXPECT_EQ(reasonOf(token("hs256-no-exp"), *key), "token has no exp claim");
    EXPECT_EQ(reasonOf(token("hs256-exp-string"), *key), "token malformed: exp is not a number");
    EXPECT_EQ(reasonOf(token("hs256-expired"), *key), "token expired");
    EXPECT_EQ(reasonOf(token("rs256-expired"), *rsKey()), "token expired");
    // The boundary: valid strictly before exp.
    EXPECT_TRUE(verifyToken(token("hs256-valid"), *key, 4102444799).ok);
    EXPECT_EQ(reasonOf(token("hs256-valid"), *key, 4102444800), "token expired");
    // The expired vector is fine in its own time.
    EXPECT_TRUE(verifyToken(token("hs256-expired"), *key, 999999999).ok);
    // Fractional NumericDate.
    TokenResult r = verifyToken(token("hs256-exp-fraction"), *key, 4102444800);
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_EQ(r.exp, 4102444800);
    EXPECT_EQ(reasonOf(token("hs256-exp-fraction"), *key, 4102444801), "token expired");
}

TEST(JwtVerify, NbfClaim) {
    auto key = hsKey();
    EXPECT_EQ(reasonOf(token("hs256-nbf-future"), *key), "token not yet valid");
    EXPECT_TRUE(verifyToken(token("hs256-nbf-future"), *key, 4000000000).ok);
}

TEST(JwtVerify, BadClaimTypes) {
    auto key = hsKey();
    EXPECT_EQ(reasonOf(token("hs256-sub-number"), *key),
              "token malformed: sub is not a non-empty string");
    EXPECT_EQ(reasonOf(token("hs256-channels-not-array"), *key),
              "token malformed: channels is not an array of strings");
}

TEST(JwtVerify, Channels) {
    TokenResult r = verifyToken(token("es256-valid"), *esKey(), kNow);
    ASSERT_TRUE(r.ok) << r.reason;
    auto sub = [&r](std::string_view id) {
        return r.allows(TokenScope::kSubscribe, "default", id);
    };
    EXPECT_TRUE(sub("room-1"));    // exact
    EXPECT_FALSE(sub("room-10"));  // exact means exact
    EXPECT_FALSE(sub("room-"));
    EXPECT_FALSE(sub(""));
    EXPECT_TRUE(sub("team-"));  // prefix "team-"
    EXPECT_TRUE(sub("team-blue"));
    EXPECT_FALSE(sub("team"));
    EXPECT_FALSE(sub("teams-blue"));
    EXPECT_FALSE(sub("other"));
    // "channels" is for subscribing only: no "publish" claim, no publishing
    EXPECT_FALSE(r.hasPublish);
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", "room-1"));
    EXPECT_STREQ(kTokenChannelDenied, "token not valid for channel");

    TokenResult empty = verifyToken(token("hs256-channels-empty"), *hsKey(), kNow);
    ASSERT_TRUE(empty.ok) << empty.reason;
    EXPECT_TRUE(empty.hasChannels);
    EXPECT_FALSE(empty.allows(TokenScope::kSubscribe, "default", "room-1"));
    EXPECT_FALSE(empty.allows(TokenScope::kSubscribe, "default", ""));

    TokenResult star;
    star.ok = true;
    star.hasChannels = true;
    star.channels = {"*"};
    EXPECT_TRUE(star.allows(TokenScope::kSubscribe, "default", "anything"));
    EXPECT_TRUE(star.allows(TokenScope::kSubscribe, "default", ""));
    EXPECT_TRUE(star.allows(TokenScope::kSubscribe, "tenant", "anything"));
    EXPECT_FALSE(star.allows(TokenScope::kPublish, "default", "anything"));
}

TEST(JwtVerify, AbsentClaimsAllowNothing) {
    // SPEC section 11: a token without the claim for an action does not allow it
    TokenResult r = verifyToken(token("hs256-minimal"), *hsKey(), kNow);
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_FALSE(r.hasChannels);
    EXPECT_FALSE(r.hasPublish);
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "default", "room-1"));
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", "room-1"));
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "default", ""));
}

TEST(JwtVerify, PublishIsItsOwnClaim) {
    TokenResult r;
    r.ok = true;
    r.hasPublish = true;
    r.publish = {"news", "feed-*"};
    EXPECT_TRUE(r.allows(TokenScope::kPublish, "default", "news"));
    EXPECT_TRUE(r.allows(TokenScope::kPublish, "default", "feed-1"));
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", "newsroom"));
    // publishing does not give subscribing
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "default", "news"));
    r.ok = false;
    EXPECT_FALSE(r.allows(TokenScope::kPublish, "default", "news"));
}

TEST(JwtVerify, GroupIsPartOfTheName) {
    // "room1" of group "default" is "room1"; of group "acme", "acme/room1"
    EXPECT_TRUE(tokenPatternMatches("room1", "default", "room1"));
    EXPECT_TRUE(tokenPatternMatches("room1", "", "room1"));
    EXPECT_FALSE(tokenPatternMatches("room1", "acme", "room1"));
    EXPECT_FALSE(tokenPatternMatches("room*", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("acme/room1", "acme", "room1"));
    EXPECT_FALSE(tokenPatternMatches("acme/room1", "acme", "room10"));
    EXPECT_FALSE(tokenPatternMatches("acme/room1", "acmes", "room1"));
    EXPECT_FALSE(tokenPatternMatches("acme/room1", "acm", "e/room1"));
    EXPECT_TRUE(tokenPatternMatches("acme/*", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("acme/*", "acme", ""));
    EXPECT_FALSE(tokenPatternMatches("acme/*", "acmeco", "room1"));
    EXPECT_TRUE(tokenPatternMatches("ac*", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("acme*", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("acme/ro*", "acme", "room1"));
    EXPECT_FALSE(tokenPatternMatches("acme/ro*", "acme", "r"));
    EXPECT_TRUE(tokenPatternMatches("*", "acme", "room1"));
    EXPECT_FALSE(tokenPatternMatches("", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("", "default", ""));
    EXPECT_FALSE(tokenPatternMatches("acme/", "acme", "room1"));
    EXPECT_TRUE(tokenPatternMatches("acme/", "acme", ""));

    TokenResult r;
    r.ok = true;
    r.hasChannels = true;
    r.channels = {"room1"};
    EXPECT_TRUE(r.allows(TokenScope::kSubscribe, "default", "room1"));
    EXPECT_FALSE(r.allows(TokenScope::kSubscribe, "tenant-b", "room1"));
}

TEST(JwtVerify, Es256RejectsDerSignature) {
    // openssl dgst emits DER; JWS wants raw R||S, so the DER form is refused.
    EXPECT_EQ(reasonOf(token("es256-der-signature"), *esKey()),
              "token signature invalid: ES256 needs 64 bytes (R||S)");
}

TEST(JwtVerify, ArbitraryGarbageNeverCrashes) {
    auto key = esKey();
    const std::string tok = token("es256-valid");
    // Every single-byte change of a valid token is rejected.
    for (std::size_t i = 0; i < tok.size(); ++i) {
        std::string t = tok;
        t[i] = t[i] == 'x' ? 'y' : 'x';
        TokenResult r = verifyToken(t, *key, kNow);
        EXPECT_FALSE(r.ok) << i;
        EXPECT_FALSE(r.reason.empty());
    }
    for (std::size_t len = 0; len < tok.size(); len += 7) {
        EXPECT_FALSE(verifyToken(tok.substr(0, len), *key, kNow).ok);
    }
}

TEST(JwtVerify, LeavesNoOpenSslErrorsBehind) {
    ERR_clear_error();
    std::vector<std::string> p = segments(token("es256-valid"));
    p[2] = base64UrlEncode(std::string(64, '\0'));  // r = s = 0
    EXPECT_EQ(reasonOf(join(p), *esKey()), "token signature invalid");
    EXPECT_EQ(reasonOf(token("es256-valid"), *loadKey("es256:" + dataPath("ec-other-pub.pem"))),
              "token signature invalid");
    p = segments(token("rs256-valid"));
    p[2] = base64UrlEncode("short");
    EXPECT_EQ(reasonOf(join(p), *rsKey()), "token signature invalid");
    keyError("rs256:" + dataPath("broken-pub.pem"));
    keyError("rs256:" + dataPath("ec-pub.pem"));
    EXPECT_EQ(ERR_peek_error(), 0ul);
}

TEST(TokenKey, LoadsEachAlgorithm) {
    EXPECT_EQ(hsKey()->algorithm(), TokenAlgorithm::HS256);
    EXPECT_EQ(rsKey()->algorithm(), TokenAlgorithm::RS256);
    EXPECT_EQ(esKey()->algorithm(), TokenAlgorithm::ES256);
    EXPECT_EQ(loadKey("HS256:" + std::string(32, 'x'))->algorithm(), TokenAlgorithm::HS256);
    EXPECT_EQ(loadKey("Es256:" + dataPath("ec-pub.pem"))->algorithm(), TokenAlgorithm::ES256);
    // A secret may itself contain ':'.
    EXPECT_NE(loadKey("hs256:a:b:c:" + std::string(26, 'x')), nullptr);
    EXPECT_STREQ(tokenAlgorithmName(TokenAlgorithm::ES256), "ES256");
}

TEST(TokenKey, AcceptsPkcs1RsaPublicKey) {
    // "-----BEGIN RSA PUBLIC KEY-----" (PKCS#1) holds the same key as the SPKI form.
    std::unique_ptr<TokenKey> key = loadKey("rs256:" + dataPath("rsa-pkcs1-pub.pem"));
    ASSERT_NE(key, nullptr);
    expectFullClaims(verifyToken(token("rs256-valid"), *key, kNow));
}

TEST(TokenKey, CopyAndMove) {
    std::unique_ptr<TokenKey> original = rsKey();
    TokenKey copy = *original;
    original.reset();
    expectFullClaims(verifyToken(token("rs256-valid"), copy, kNow));
    TokenKey moved = std::move(copy);
    expectFullClaims(verifyToken(token("rs256-valid"), moved, kNow));
    // A moved-from key verifies nothing.
    EXPECT_EQ(reasonOf(token("rs256-valid"), copy), "token key not configured");  // NOLINT
    TokenKey assigned = *hsKey();
    assigned = moved;
    expectFullClaims(verifyToken(token("rs256-valid"), assigned, kNow));
}

TEST(TokenKey, BadSpecs) {
    EXPECT_EQ(keyError(""),
              "expected \"hs256:SECRET\", \"rs256:/path/pub.pem\" or "
              "\"es256:/path/pub.pem\"");
    EXPECT_EQ(keyError("secret"), keyError(""));
    EXPECT_EQ(keyError("hs512:x"),
              "unknown token algorithm \"hs512\" (expected hs256, rs256 "
              "or es256)");
    EXPECT_EQ(keyError("none:x"),
              "unknown token algorithm \"none\" (expected hs256, rs256 "
              "or es256)");
    EXPECT_EQ(keyError("hs256:"), "hs256 secret is empty");
    // SPEC section 11: HS256 secrets shorter than 32 bytes are refused
    EXPECT_EQ(keyError("hs256:x"),
              "hs256 secret is 1 bytes long, at least 32 are needed "
              "(e.g. openssl rand -base64 48)");
    EXPECT_EQ(keyError("hs256:" + std::string(31, 's')).find("hs256 secret is 31 bytes long"), 0u);
    EXPECT_NE(loadKey("hs256:" + std::string(32, 's')), nullptr);
    EXPECT_EQ(keyError("rs256:"), "rs256 needs the path of a PEM public key file");
    EXPECT_EQ(keyError("es256:"), "es256 needs the path of a PEM public key file");
}

TEST(TokenKey, BadKeyFiles) {
    EXPECT_EQ(keyError("rs256:/nonexistent/dir/pub.pem"),
              "cannot open \"/nonexistent/dir/pub.pem\": No such file or directory");
    const std::string notPem = dataPath("not-a-pem.txt");
    EXPECT_EQ(keyError("rs256:" + notPem),
              "\"" + notPem + "\" is not a PEM file (no \"-----BEGIN\" line)");
    const std::string broken = dataPath("broken-pub.pem");
    EXPECT_EQ(keyError("es256:" + broken), "cannot parse the public key in \"" + broken + "\"");
    EXPECT_NE(keyError("rs256:" + dataPath("hs256-valid.jwt")).find("is not a PEM file"),
              std::string::npos);
    EXPECT_NE(keyError("rs256:" + std::string(PUBSUB_TEST_DATA_DIR)).find("cannot"),
              std::string::npos);  // a directory
}

TEST(TokenKey, WrongKeyTypes) {
    const std::string rsa = dataPath("rsa-pub.pem");
    const std::string ec = dataPath("ec-pub.pem");
    const std::string p384 = dataPath("ec-p384-pub.pem");
    const std::string ed = dataPath("ed25519-pub.pem");
    const std::string small = dataPath("rsa1024-pub.pem");
    EXPECT_EQ(keyError("es256:" + rsa),
              "\"" + rsa + "\" holds an RSA key, es256 needs an EC P-256 key");
    EXPECT_EQ(keyError("rs256:" + ec), "\"" + ec + "\" holds an EC key, rs256 needs an RSA key");
    EXPECT_EQ(keyError("es256:" + p384), "\"" + p384 +
                                             "\" holds an EC key on curve secp384r1, es256 needs "
                                             "P-256 (prime256v1)");
    EXPECT_EQ(keyError("es256:" + ed),
              "\"" + ed + "\" holds an Ed25519 key, es256 needs an EC P-256 key");
    EXPECT_EQ(keyError("rs256:" + small),
              "\"" + small + "\" holds a 1024-bit RSA key, rs256 needs at least 2048 bits");
}

}  // namespace
}  // namespace pubsub
