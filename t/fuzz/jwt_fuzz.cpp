// Tokens as clients send them (pubsub_token): verifyToken() with an HS256
// key. Half of the inputs are taken as "header JSON \0 payload JSON" and
// signed with the right key, so that the fuzzer reaches the claim checks
// (exp, nbf, sub, info, channels, publish) and not only the signature check.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/json.h"
#include "pubsub/codec/jwt.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

constexpr std::string_view kSecret = "fuzzing-secret-0123456789abcdef!";
constexpr int64_t kNow = 1700000000;

const TokenKey& key() {
    static std::unique_ptr<TokenKey> k = [] {
        std::string err;
        auto loaded = TokenKey::load("hs256:" + std::string(kSecret), err);
        check(loaded != nullptr, "key");
        return loaded;
    }();
    return *k;
}

std::string sign(std::string_view header, std::string_view payload) {
    std::string input = base64UrlEncode(header) + "." + base64UrlEncode(payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return input + "." + base64UrlEncode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

// signedByUs: the fuzzer signed it (raw inputs may also hold a valid token).
void checkResult(const TokenResult& r, bool signedByUs) {
    if (!r.ok) {
        check(!r.reason.empty() && r.reason.find('\n') == std::string::npos, "reason");
        check(!r.allows(TokenScope::kSubscribe, "default", "a") &&
                  !r.allows(TokenScope::kPublish, "default", "a"),
              "a refused token allows a channel");
        return;
    }
    (void)signedByUs;
    check(r.exp >= kNow, "expired token accepted");
    check(!r.hasSub || !r.sub.empty(), "empty sub");
    if (!r.infoJson.empty()) {
        check(static_cast<bool>(json::parse(r.infoJson)), "info is not JSON");
    }
    (void)r.allows(TokenScope::kSubscribe, "default", "");
    (void)r.allows(TokenScope::kPublish, "g", "room/1");
    check(r.hasChannels || !r.allows(TokenScope::kSubscribe, "default", "a"),
          "no channels claim, yet a channel allowed");
    check(r.hasPublish || !r.allows(TokenScope::kPublish, "default", "a"),
          "no publish claim, yet publishing allowed");
    for (const std::string& c : r.channels) {
        check(r.allows(TokenScope::kSubscribe, "default", c) || (!c.empty() && c.back() == '*'),
              "listed channel refused");
    }
    for (const std::string& c : r.publish) {
        check(r.allows(TokenScope::kPublish, "default", c) || (!c.empty() && c.back() == '*'),
              "listed publish channel refused");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    uint8_t mode = in.byte();
    if (mode & 1) {
        std::string_view header = in.until('\0');
        std::string_view payload = in.rest();
        std::string token = sign(header, payload);
        if (mode & 2) {
            token = "Bearer " + token;
        }
        checkResult(verifyToken(token, key(), kNow), true);
    } else {
        std::string_view token = in.rest();
        checkResult(verifyToken(token, key(), kNow), false);
        std::string decoded;
        (void)base64UrlDecode(token, decoded);
        (void)stripBearer(token);
    }
    return 0;
}
