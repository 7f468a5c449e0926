// pubsub-load: the client side of the Pusher Channels protocol 7 (as
// pusher-js speaks it): frames to send, the server's frames read, and the
// private/presence channel signature (HMAC-SHA256 with the app secret,
// OpenSSL's libcrypto).
#pragma once

#include <cstddef>
#include <string>

namespace load {

// A server frame {"event":E,"channel":C,"data":D,"user_id":U}. The server
// sends data as a JSON string: data is its value, unescaped (an object
// would be kept as its raw JSON text).
struct PusherFrame {
    std::string event;
    std::string channel;
    std::string data;
};

// False when p[0..n) is not a JSON object with a string "event".
bool parsePusherFrame(const char* p, size_t n, PusherFrame& out);

// The string value of "key" in a JSON object text (e.g. the socket_id in
// connection_established's data); "" when absent.
std::string pusherJsonString(const std::string& text, const char* key);

// "<key>:" + hex(HMAC-SHA256(secret, "<socket_id>:<channel>[:<channel_data>]"))
std::string pusherAuth(const std::string& key, const std::string& secret,
                       const std::string& socketId, const std::string& channel,
                       const std::string& channelData);

// {"user_id":"<user>"}: a presence channel's channel_data
std::string pusherChannelData(const std::string& userId);

// pusher:subscribe {channel, auth?, channel_data?} (auth and channel_data
// left out when empty)
std::string pusherSubscribeFrame(const std::string& channel, const std::string& auth,
                                 const std::string& channelData);
std::string pusherUnsubscribeFrame(const std::string& channel);
std::string pusherPongFrame();

// Channel names that need a signature: private-*, presence-*.
bool pusherNeedsAuth(const std::string& channel);
bool pusherIsPresence(const std::string& channel);

}  // namespace load
