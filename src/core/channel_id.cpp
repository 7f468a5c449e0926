#include "pubsub/channel_id.h"

#include <cstdint>

namespace pubsub {

namespace {

bool hasControlChar(std::string_view id) {
    for (char ch : id) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

}  // namespace

std::string_view channelIdErrorText(ChannelIdError err) {
    switch (err) {
        case ChannelIdError::kNone:
            return "";
        case ChannelIdError::kEmpty:
            return "No channel id provided.\n";
        case ChannelIdError::kTooLong:
            return "Channel id too long.\n";
        case ChannelIdError::kControlChar:
            return "Channel id contains a control character.\n";
        case ChannelIdError::kTooMany:
            return "Too many channel ids (at most 255).\n";
        case ChannelIdError::kBadGroup:
            return "Channel group must not contain '/'.\n";
        case ChannelIdError::kGroupControlChar:
            return "Channel group contains a control character.\n";
    }
    return "Bad channel id.\n";
}

ChannelIdError splitChannelIds(std::string_view value, std::string_view delim, size_t maxIdLength,
                               std::string_view* out, size_t* n, size_t max) {
    // A cheap bound before looking at the pieces.
    if (maxIdLength <= SIZE_MAX / kMaxChannelIds && value.size() > maxIdLength * kMaxChannelIds) {
        return ChannelIdError::kTooLong;
    }

    size_t pos = 0;
    for (;;) {
        size_t end = delim.empty() ? std::string_view::npos : value.find(delim, pos);
        std::string_view id =
            value.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        if (id.empty()) {
            if (delim.empty() || *n == 0) {
                return ChannelIdError::kEmpty;
            }
        } else {
            if (id.size() > maxIdLength) {
                return ChannelIdError::kTooLong;
            }
            if (hasControlChar(id)) {
                return ChannelIdError::kControlChar;
            }
            if (*n >= max) {
                return ChannelIdError::kTooMany;
            }
            out[(*n)++] = id;
        }
        if (end == std::string_view::npos) {
            return ChannelIdError::kNone;
        }
        pos = end + delim.size();
    }
}

ChannelIdError checkChannelGroup(std::string_view group) {
    if (group.find('/') != std::string_view::npos) {
        return ChannelIdError::kBadGroup;
    }
    return hasControlChar(group) ? ChannelIdError::kGroupControlChar : ChannelIdError::kNone;
}

}  // namespace pubsub
