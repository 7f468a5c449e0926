// Pusher Channels (protocol 7) signatures and names, shared by the
// WebSocket endpoint, the HTTP API and the webhooks (SPEC §12).
//
// - Channel subscription: auth = "<key>:" + hex(HMAC-SHA256(secret,
//   "<socket_id>:<channel>[:<channel_data>]")), channel_data only for
//   presence channels, as the exact string the client sent.
// - Sign-in: auth = "<key>:" + hex(HMAC-SHA256(secret,
//   "<socket_id>::user::<user_data>")).
// - HTTP API: auth_signature = hex(HMAC-SHA256(secret,
//   "<METHOD>\n<path>\n<query>")), the query being every parameter but
//   auth_signature, keys lowercased, sorted by key, "k=v" joined with '&',
//   values exactly as they appear in the request (not decoded);
//   auth_timestamp within 600 s of now, auth_version 1.0, body_md5 the hex
//   MD5 of the body when there is one.
// - Webhooks: X-Pusher-Signature = hex(HMAC-SHA256(secret, body)).
//
// Nothing here throws.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace pubsub {
namespace pusher {

// Lowercase hex of HMAC-SHA256(secret, message); empty when it fails.
std::string hmacSha256Hex(std::string_view secret, std::string_view message);
// Lowercase hex MD5 of data; empty when it fails.
std::string md5Hex(std::string_view data);
// Equal contents, in time that depends only on the lengths.
bool constantTimeEquals(std::string_view a, std::string_view b);

enum class ChannelKind {
    Invalid,           // not a channel name Pusher allows
    Public,            // anything else
    Private,           // private-...
    PrivateEncrypted,  // private-encrypted-... (end-to-end; we relay only)
    Presence,          // presence-...
    ServerToUser,      // #server-to-user-<user id> (sign-in only)
};

// The server's own channels (#server-to-user-<id>, #subscription_count):
// no client name starts with '#'; the HTTP API does not list them and no
// webhook speaks of them.
inline bool internalChannel(std::string_view name) {
    return !name.empty() && name[0] == '#';
}

// Pusher's channel names: 1 to 164 characters of [A-Za-z0-9_\-=@,.;], or
// the server-to-user channel "#server-to-user-" followed by such characters.
ChannelKind channelKind(std::string_view name);
inline bool needsAuth(ChannelKind k) {
    return k == ChannelKind::Private || k == ChannelKind::PrivateEncrypted ||
           k == ChannelKind::Presence;
}
// Client events ("client-*") are allowed on these.
inline bool allowsClientEvents(ChannelKind k) {
    return k == ChannelKind::Private || k == ChannelKind::Presence;
}

// Socket ids look like "<digits>.<digits>" (Laravel and the server SDKs
// refuse anything else).
bool validSocketId(std::string_view socketId);

// The "<key>:<hex>" auth of a channel subscription or a sign-in.
bool checkChannelAuth(std::string_view key, std::string_view secret, std::string_view socketId,
                      std::string_view channel, std::string_view channelData,
                      std::string_view auth);
bool checkSigninAuth(std::string_view key, std::string_view secret, std::string_view socketId,
                     std::string_view userData, std::string_view auth);

// An HTTP API request as it arrived.
struct ApiRequest {
    std::string_view method;  // "GET", "POST"
    std::string_view path;    // "/apps/1/events", no query
    std::string_view query;   // raw query string, without '?'
    std::string_view body;
    std::int64_t now = 0;  // seconds since the epoch
};

// The value of one raw query parameter (first occurrence), not decoded;
// false when absent.
bool queryParam(std::string_view query, std::string_view name, std::string_view& value);

// Empty when the request is signed by (key, secret); else the reason, for a
// 401 body ("invalid signature", "auth_timestamp too old", ...).
std::string verifyApiRequest(const ApiRequest& req, std::string_view key, std::string_view secret);

// The string a request's signature covers (for tests and the log).
std::string apiStringToSign(std::string_view method, std::string_view path, std::string_view query);

}  // namespace pusher
}  // namespace pubsub
