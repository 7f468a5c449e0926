// Channel ids as a request gives them: splitting one value into several ids
// (pubsub_channel_id_split_delimiter) and checking each (SPEC sections 3
// and 10). Pure functions over the client's bytes; nothing allocates.
#pragma once

#include <cstddef>
#include <string_view>

namespace pubsub {

// Most ids one request may name (a multiplexed subscription).
constexpr size_t kMaxChannelIds = 255;

enum class ChannelIdError {
    kNone,
    kEmpty,             // no id, or an empty first id
    kTooLong,           // an id over the limit (or a value over limit * kMaxChannelIds)
    kControlChar,       // a byte below 0x20, or 0x7f
    kTooMany,           // more ids than `max`
    kBadGroup,          // a channel group containing '/'
    kGroupControlChar,  // a channel group with a byte below 0x20, or 0x7f
};

// The 400 response body for an error, with its trailing newline; "" for kNone.
std::string_view channelIdErrorText(ChannelIdError err);

// Splits `value` at every `delim` (an empty delim: no splitting) and appends
// the ids, as views into `value`, to out[*n] ..., incrementing *n; `max` is the
// capacity of `out`. Call once per configured value with the same out/n, so
// that the count spans all of them. Rules: with a delimiter, empty pieces are
// skipped except when no id has been taken yet (",a" fails, "a,,b" and "a,"
// give a and b / a); without one, an empty value fails. Each id must be at
// most maxIdLength bytes and free of control characters. On error *n and
// out[] hold what was taken before the failing id.
ChannelIdError splitChannelIds(std::string_view value, std::string_view delim, size_t maxIdLength,
                               std::string_view* out, size_t* n, size_t max);

// A channel group ("default" when empty) may be anything but must not
// contain '/', which separates it from the id in a channel key, nor a
// control character (as a channel id).
ChannelIdError checkChannelGroup(std::string_view group);

}  // namespace pubsub
