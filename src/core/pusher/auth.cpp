#include "pubsub/pusher/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "pubsub/codec/hex.h"

namespace pubsub {
namespace pusher {

namespace {

constexpr std::size_t kMaxChannelName = 164;
constexpr std::string_view kServerToUser = "#server-to-user-";
constexpr std::int64_t kMaxClockSkew = 600;

bool nameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '=' || c == '@' || c == ',' || c == '.' || c == ';';
}

bool startsWith(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool allDigits(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

// "<key>:<hex>" against the HMAC of message
bool checkKeyedAuth(std::string_view key, std::string_view secret, std::string_view message,
                    std::string_view auth) {
    if (auth.size() <= key.size() || auth.compare(0, key.size(), key) != 0 ||
        auth[key.size()] != ':') {
        return false;
    }
    const std::string expected = hmacSha256Hex(secret, message);
    return !expected.empty() && constantTimeEquals(expected, auth.substr(key.size() + 1));
}

}  // namespace

std::string hmacSha256Hex(std::string_view secret, std::string_view message) {
    try {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
                 &len) == nullptr) {
            return std::string();
        }
        return toHex(mac, len);
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string md5Hex(std::string_view data) {
    try {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr) != 1) {
            return std::string();
        }
        return toHex(md, len);
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

ChannelKind channelKind(std::string_view name) {
    std::string_view rest = name;
    const bool toUser = startsWith(name, kServerToUser);
    if (toUser) {
        rest = name.substr(kServerToUser.size());
    }
    if (rest.empty() || name.size() > kMaxChannelName ||
        !std::all_of(rest.begin(), rest.end(), nameChar)) {
        return ChannelKind::Invalid;
    }
    if (toUser) {
        return ChannelKind::ServerToUser;
    }
    if (startsWith(name, "private-encrypted-")) {
        return ChannelKind::PrivateEncrypted;
    }
    if (startsWith(name, "private-")) {
        return ChannelKind::Private;
    }
    if (startsWith(name, "presence-")) {
        return ChannelKind::Presence;
    }
    return ChannelKind::Public;
}

bool validSocketId(std::string_view socketId) {
    const std::size_t dot = socketId.find('.');
    return dot != std::string_view::npos && socketId.size() <= 64 &&
           allDigits(socketId.substr(0, dot)) && allDigits(socketId.substr(dot + 1));
}

bool checkChannelAuth(std::string_view key, std::string_view secret, std::string_view socketId,
                      std::string_view channel, std::string_view channelData,
                      std::string_view auth) {
    try {
        std::string message;
        message.reserve(socketId.size() + channel.size() + channelData.size() + 2);
        message.append(socketId).append(":").append(channel);
        if (channelKind(channel) == ChannelKind::Presence) {
            message.append(":").append(channelData);
        }
        return checkKeyedAuth(key, secret, message, auth);
    } catch (const std::bad_alloc&) {
        return false;
    }
}

bool checkSigninAuth(std::string_view key, std::string_view secret, std::string_view socketId,
                     std::string_view userData, std::string_view auth) {
    try {
        std::string message;
        message.reserve(socketId.size() + userData.size() + 8);
        message.append(socketId).append("::user::").append(userData);
        return checkKeyedAuth(key, secret, message, auth);
    } catch (const std::bad_alloc&) {
        return false;
    }
}

bool queryParam(std::string_view query, std::string_view name, std::string_view& value) {
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const std::size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
            return true;
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    return false;
}

std::string apiStringToSign(std::string_view method, std::string_view path,
                            std::string_view query) {
    std::vector<std::pair<std::string, std::string_view>> params;
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const std::size_t eq = pair.find('=');
        std::string key(pair.substr(0, eq));
        for (char& c : key) {
            if (c >= 'A' && c <= 'Z') {
                c = static_cast<char>(c - 'A' + 'a');
            }
        }
        if (!pair.empty() && key != "auth_signature") {
            params.emplace_back(std::move(key), eq == std::string_view::npos ? std::string_view()
                                                                             : pair.substr(eq + 1));
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    std::stable_sort(params.begin(), params.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out;
    out.append(method).append("\n").append(path).append("\n");
    for (std::size_t i = 0; i < params.size(); i++) {
        if (i != 0) {
            out.push_back('&');
        }
        out.append(params[i].first).append("=").append(params[i].second);
    }
    return out;
}

std::string verifyApiRequest(const ApiRequest& req, std::string_view key, std::string_view secret) {
    try {
        std::string_view v;
        if (!queryParam(req.query, "auth_key", v) || v.empty()) {
            return "auth_key missing";
        }
        if (!constantTimeEquals(v, key)) {
            return "unknown auth_key";
        }
        if (!queryParam(req.query, "auth_version", v) || v != "1.0") {
            return "auth_version must be 1.0";
        }
        if (!queryParam(req.query, "auth_timestamp", v) || !allDigits(v) || v.size() > 18) {
            return "auth_timestamp missing or not a number";
        }
        const std::int64_t ts = std::strtoll(std::string(v).c_str(), nullptr, 10);
        if (ts < req.now - kMaxClockSkew || ts > req.now + kMaxClockSkew) {
            return "auth_timestamp not within 600 s of the server's time";
        }
        if (!req.body.empty()) {
            if (!queryParam(req.query, "body_md5", v)) {
                return "body_md5 missing";
            }
            if (!constantTimeEquals(v, md5Hex(req.body))) {
                return "body_md5 does not match the body";
            }
        }
        if (!queryParam(req.query, "auth_signature", v) || v.empty()) {
            return "auth_signature missing";
        }
        const std::string expected =
            hmacSha256Hex(secret, apiStringToSign(req.method, req.path, req.query));
        if (expected.empty() || !constantTimeEquals(expected, v)) {
            return "invalid signature";
        }
        return std::string();
    } catch (const std::bad_alloc&) {
        return "out of memory";
    }
}

}  // namespace pusher
}  // namespace pubsub
