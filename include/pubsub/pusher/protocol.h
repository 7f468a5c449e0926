// Pusher Channels protocol 7 over WebSocket (SPEC §12): what a client sends
// and the frames the server sends, without nginx.
//
// Every frame is one JSON object {event, channel?, data?, user_id?}.  The
// server sends `data` as a JSON string, always: pusher:* and
// pusher_internal:* events carry JSON encoded in it ("double encoding");
// other events carry exactly the string the publisher sent (clients try
// JSON.parse on it).  A client sends `data` as an object or as a string.
//
// Nothing here throws except std::bad_alloc.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pubsub {
namespace pusher {

// Pusher's limits.
constexpr size_t kMaxEventSize = 10 * 1024;  // a client event's data
constexpr size_t kMaxUserIdLength = 128;
constexpr size_t kMaxUserInfoSize = 1024;
constexpr size_t kMaxMessageSize = 64 * 1024;  // a whole client frame

// A frame a client sent.
struct ClientMessage {
    std::string event;
    std::string channel;  // the frame's channel, else data's (subscribe)
    std::string data;     // a string's value, else data's JSON text
    bool hasData = false;
    // pusher:subscribe and pusher:signin: members of data (object, or a
    // string holding one)
    std::string auth;
    std::string channelData;  // presence: the exact string signed
    std::string userData;     // sign-in: the exact string signed
};

// False with the reason (for pusher:error) when `text` is not a frame.
bool parseClientMessage(std::string_view text, ClientMessage* out, std::string* error);

// {"event":E[,"channel":C],"data":"<D as a JSON string>"[,"user_id":U]};
// channel and userId are left out when empty.
std::string serverFrame(std::string_view event, std::string_view channel, std::string_view data,
                        std::string_view userId = {});
// pusher:error {"code":N (null when 0),"message":M}
std::string errorFrame(int code, std::string_view message);
// pusher:subscription_error {"type":T,"error":M,"status":S}
std::string subscriptionErrorFrame(std::string_view channel, std::string_view type,
                                   std::string_view message, int status);

// A presence channel's channel_data: {"user_id": string or number,
// "user_info": any JSON (optional)}.  user_id at most 128 characters,
// user_info at most 1 KB of JSON text.
struct ChannelData {
    std::string userId;
    std::string userInfo;  // raw JSON text; empty: none
};
bool parseChannelData(std::string_view channelData, ChannelData* out, std::string* error);

// A sign-in's user_data: a JSON object with a non-empty "id" (string or
// number).
bool parseUserData(std::string_view userData, std::string* id, std::string* error);

// pusher_internal:subscription_succeeded's data for a presence channel:
// {"presence":{"ids":[…],"hash":{id:info|null},"count":n}}, members as
// (id, raw JSON info or empty).
std::string presenceData(const std::vector<std::pair<std::string, std::string>>& members);
// member_added {"user_id":…,"user_info":…} / member_removed {"user_id":…}
std::string memberAddedData(std::string_view userId, std::string_view userInfo);
std::string memberRemovedData(std::string_view userId);

}  // namespace pusher
}  // namespace pubsub
