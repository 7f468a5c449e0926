// Who published a message (pubsub::Message::origin(), carried by every
// engine), as the Pusher protocol uses it: the socket id a delivery skips
// (the sender of a client event; the HTTP API's `socket_id`) and, for a
// client event on a presence channel, the sender's user id (Pusher adds
// `user_id` to the frame).
//
// Encoded as "<socket id>" or "<socket id> <user id>": a socket id is
// "<digits>.<digits>", so the first space ends it and the user id is
// every byte after it (any bytes, possibly empty).
//
// Nothing here throws except std::bad_alloc from encodeOrigin().
#pragma once
#include <string>
#include <string_view>

namespace pubsub {
namespace pusher {

struct Origin {
    std::string_view socketId;  // empty: none
    std::string_view userId;    // empty: none
};

// "" when socketId is empty (a message without an origin).
std::string encodeOrigin(std::string_view socketId, std::string_view userId = {});
// False (and *out empty) when `origin` is not a Pusher origin: empty, or
// not starting with a valid socket id.  The views point into `origin`.
bool decodeOrigin(std::string_view origin, Origin* out);

}  // namespace pusher
}  // namespace pubsub
