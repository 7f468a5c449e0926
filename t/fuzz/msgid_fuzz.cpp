// Resume ids as clients send them (Last-Event-ID, ?last_event_id=, the
// Etag/If-None-Match tag list): parseMsgId() and parseMsgTags(), single and
// multiplexed. What parses must format back to something that parses to the
// same value.
#include <string>

#include "fuzz_util.h"
#include "pubsub/msgid.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

void checkParsed(const ParsedMsgId& id, size_t maxTags) {
    check(!id.tags.empty() && id.tags.size() <= maxTags, "tag count");
    check(id.active >= -1 && id.active < static_cast<int>(id.tags.size()), "active index");
}

// The multiplexed text form, as the module would write it.
std::string format(const ParsedMsgId& id) {
    std::string s = std::to_string(id.time) + ":";
    for (size_t i = 0; i < id.tags.size(); i++) {
        if (i > 0) {
            s += ',';
        }
        std::string t = id.tags[i] == -1 ? "-" : std::to_string(id.tags[i]);
        s += static_cast<int>(i) == id.active ? "[" + t + "]" : t;
    }
    return s;
}

bool same(const ParsedMsgId& a, const ParsedMsgId& b) {
    return a.time == b.time && a.tags == b.tags && a.active == b.active;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    size_t maxTags = 1 + in.byte();
    std::string_view text = in.rest();
    std::string reason;

    ParsedMsgId id;
    if (parseMsgId(text, &id, &reason, maxTags)) {
        checkParsed(id, maxTags);
        ParsedMsgId back;
        std::string why;
        check(parseMsgId(format(id), &back, &why, maxTags), "formatted id does not parse");
        check(same(id, back), "formatted id parses differently");
        if (id.tags.size() == 1 && id.active == -1 && id.tags[0] >= 0) {
            MsgId single = id.single();
            char buf[kMaxMsgIdText];
            size_t n = writeMsgId(buf, single);
            check(std::string_view(buf, n) == formatMsgId(single), "writeMsgId");
            check(parseMsgId(std::string_view(buf, n), &back, &why) && back.single() == single,
                  "single id round trip");
        }
    } else {
        check(!reason.empty(), "no reason for a bad id");
    }

    ParsedMsgId tags;
    reason.clear();
    if (parseMsgTags(text, &tags, &reason, maxTags)) {
        checkParsed(tags, maxTags);
    } else {
        check(!reason.empty(), "no reason for bad tags");
    }
    return 0;
}
