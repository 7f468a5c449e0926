#include "pubsub/pusher/origin.h"

#include "pubsub/pusher/auth.h"

namespace pubsub {
namespace pusher {

std::string encodeOrigin(std::string_view socketId, std::string_view userId) {
    std::string out;
    if (socketId.empty()) {
        return out;
    }
    out.reserve(socketId.size() + 1 + userId.size());
    out.append(socketId);
    if (!userId.empty()) {
        out.push_back(' ');
        out.append(userId);
    }
    return out;
}

bool decodeOrigin(std::string_view origin, Origin* out) {
    *out = Origin();
    size_t sp = origin.find(' ');
    std::string_view socketId = origin.substr(0, sp);
    if (!validSocketId(socketId)) {
        return false;
    }
    out->socketId = socketId;
    if (sp != std::string_view::npos) {
        out->userId = origin.substr(sp + 1);
    }
    return true;
}

}  // namespace pusher
}  // namespace pubsub
