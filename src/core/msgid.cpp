#include "pubsub/msgid.h"

#include <cstdio>
#include <cstring>
#include <limits>

namespace pubsub {

MsgId nextMsgId(const MsgId& last, int64_t now) {
    if (now > last.time) {
        return MsgId{now, 0};
    }
    if (last.tag == std::numeric_limits<int32_t>::max()) {
        return MsgId{last.time + 1, 0};
    }
    return MsgId{last.time, last.tag + 1};
}

size_t writeDecimal(char* buf, int64_t v) {
    // Hand-rolled: this runs for every message delivered and every publish,
    // where snprintf's format parsing showed up as the largest cost.
    // Two digits per division, from a table, right to left.
    static const char kPairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char tmp[24];
    size_t n = sizeof(tmp);
    uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    while (u >= 100) {
        const char* d = &kPairs[(u % 100) * 2];
        u /= 100;
        tmp[--n] = d[1];
        tmp[--n] = d[0];
    }
    if (u >= 10) {
        tmp[--n] = kPairs[u * 2 + 1];
        tmp[--n] = kPairs[u * 2];
    } else {
        tmp[--n] = static_cast<char>('0' + u);
    }
    size_t len = 0;
    if (v < 0) {
        buf[len++] = '-';
    }
    std::memcpy(buf + len, tmp + n, sizeof(tmp) - n);
    return len + (sizeof(tmp) - n);
}

size_t writeMsgId(char* buf, const MsgId& id) {
    size_t n = writeDecimal(buf, id.time);
    buf[n++] = ':';
    n += writeDecimal(buf + n, id.tag);
    buf[n] = '\0';
    return n;
}

size_t appendMsgId(std::string& out, const MsgId& id) {
    char buf[kMaxMsgIdText];
    size_t n = writeMsgId(buf, id);
    out.append(buf, n);
    return n;
}

std::string formatMsgId(const MsgId& id) {
    std::string s;
    appendMsgId(s, id);
    return s;
}

namespace {

bool parseInt(std::string_view s, int64_t lo, int64_t hi, int64_t* out) {
    if (s.empty() || s.size() > 20) {
        return false;
    }
    bool neg = false;
    size_t i = 0;
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (s.size() == 1) {
            return false;
        }
    }
    uint64_t v = 0;
    for (; i < s.size(); i++) {
        char c = s[i];
        if (c < '0' || c > '9') {
            return false;
        }
        if (v > (std::numeric_limits<uint64_t>::max() - 9) / 10) {
            return false;
        }
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return false;
    }
    int64_t r = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    if (r < lo || r > hi) {
        return false;
    }
    *out = r;
    return true;
}

}  // namespace

bool parseMsgTags(std::string_view text, ParsedMsgId* out, std::string* reason, size_t maxTags) {
    out->tags.clear();
    out->active = -1;
    if (text.empty()) {
        *reason = "empty message tag";
        return false;
    }
    size_t pos = 0;
    while (true) {
        size_t comma = text.find(',', pos);
        std::string_view part = text.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (out->tags.size() >= maxTags) {
            *reason = "too many message tags";
            return false;
        }
        bool active = false;
        if (!part.empty() && part.front() == '[') {
            if (part.size() < 3 || part.back() != ']') {
                *reason = "unbalanced brackets in message tag";
                return false;
            }
            if (out->active >= 0) {
                *reason = "more than one active message tag";
                return false;
            }
            active = true;
            part = part.substr(1, part.size() - 2);
        }
        int64_t v = 0;
        if (part == "-") {
            v = -1;
        } else if (!parseInt(part, -1, std::numeric_limits<int32_t>::max(), &v)) {
            *reason = "message tag is not a number";
            return false;
        }
        if (active) {
            out->active = static_cast<int>(out->tags.size());
        }
        out->tags.push_back(static_cast<int32_t>(v));
        if (comma == std::string_view::npos) {
            break;
        }
        pos = comma + 1;
    }
    return true;
}

bool parseMsgId(std::string_view text, ParsedMsgId* out, std::string* reason, size_t maxTags) {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
        *reason = "message id has no ':'";
        return false;
    }
    int64_t t = 0;
    if (!parseInt(text.substr(0, colon), 0, std::numeric_limits<int64_t>::max() / 2, &t)) {
        *reason = "message id time is not a number";
        return false;
    }
    if (!parseMsgTags(text.substr(colon + 1), out, reason, maxTags)) {
        return false;
    }
    out->time = t;
    return true;
}

}  // namespace pubsub
