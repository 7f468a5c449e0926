#pragma once
// Message ids in nchan's "time:tag" form.
//
// A channel's ids strictly increase: `time` is the publish time in unix
// seconds (never going back, even if the clock does) and `tag` counts the
// messages published within that second, from 0.  Clients treat ids as
// opaque strings and hand them back to resume.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pubsub {

struct MsgId {
    int64_t time = 0;
    int32_t tag = 0;

    bool isNull() const { return time == 0 && tag == 0; }
    friend bool operator==(const MsgId& a, const MsgId& b) {
        return a.time == b.time && a.tag == b.tag;
    }
    friend bool operator!=(const MsgId& a, const MsgId& b) { return !(a == b); }
    friend bool operator<(const MsgId& a, const MsgId& b) {
        return a.time < b.time || (a.time == b.time && a.tag < b.tag);
    }
    friend bool operator<=(const MsgId& a, const MsgId& b) { return !(b < a); }
    friend bool operator>(const MsgId& a, const MsgId& b) { return b < a; }
    friend bool operator>=(const MsgId& a, const MsgId& b) { return !(a < b); }
};

// The id that follows `last` when a message is published at `now`.
MsgId nextMsgId(const MsgId& last, int64_t now);

// "time:tag".
std::string formatMsgId(const MsgId& id);
// Appends "time:tag" to `out`; returns the number of bytes appended.
size_t appendMsgId(std::string& out, const MsgId& id);
// Writes v in decimal into buf (at least 21 bytes); returns the length.
size_t writeDecimal(char* buf, int64_t v);
// Writes "time:tag" and a NUL into buf (at least kMaxMsgIdText bytes);
// returns the length without the NUL.
// The widest id, "-9223372036854775808:-2147483648", is 32 characters.
constexpr size_t kMaxMsgIdText = 40;
size_t writeMsgId(char* buf, const MsgId& id);

// A parsed resume id.  A single-channel id has one tag; nchan's multiplexed
// form "time:t1,t2,..." has one tag per channel, where "[n]" marks the tag of
// the channel that produced the message and "-" stands for -1 (nothing seen).
struct ParsedMsgId {
    int64_t time = 0;
    std::vector<int32_t> tags;
    int active = -1;  // index of the bracketed tag, -1 when none

    MsgId single() const { return MsgId{time, tags.empty() ? 0 : tags[0]}; }
};

// Parses "time:tag" (or the multiplexed form).  Returns false, with a short
// reason, for anything else: empty parts, non-digits, overflow, more than
// `maxTags` tags, unbalanced brackets.
bool parseMsgId(std::string_view text, ParsedMsgId* out, std::string* reason, size_t maxTags = 255);

// Parses only a tag list ("3", "[2],-,5"), as found in an Etag/If-None-Match
// header next to a Last-Modified time.
bool parseMsgTags(std::string_view text, ParsedMsgId* out, std::string* reason,
                  size_t maxTags = 255);

}  // namespace pubsub
