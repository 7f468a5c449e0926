// Header values the subscriber and info paths read from clients: the token
// search used for resume and content negotiation (headerHasToken), the
// info format from Accept, and the EventSource framing of published data
// (a publisher's bytes must never break out of their event).
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/format.h"
#include "pubsub/codec/websocket.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

std::string normalizeLines(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\r') {
            out.push_back('\n');
            if (i + 1 < s.size() && s[i + 1] == '\n') {
                i++;
            }
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::string stripLineBreaks(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c != '\r' && c != '\n') {
            out.push_back(c);
        }
    }
    return out;
}

// Parses one event back as a browser would and compares.
void checkSse(std::string_view event, std::string_view data) {
    std::string out;
    appendSseEvent(out, event, "1:0", data);
    check(out.size() >= 2 && out.compare(out.size() - 2, 2, "\n\n") == 0, "event end");
    check(out.find('\r') == std::string::npos, "CR in the event stream");
    std::string_view body(out.data(), out.size() - 1);  // without the final blank line
    std::string gotData, gotEvent;
    bool anyData = false;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t nl = body.find('\n', pos);
        check(nl != std::string_view::npos, "line without LF");
        std::string_view line = body.substr(pos, nl - pos);
        pos = nl + 1;
        check(!line.empty(), "blank line inside one event");
        if (line.substr(0, 6) == "data: ") {
            if (anyData) {
                gotData += '\n';
            }
            gotData.append(line.substr(6));
            anyData = true;
        } else if (line.substr(0, 7) == "event: ") {
            gotEvent.assign(line.substr(7));
        } else {
            check(line == "id: 1:0", "unexpected field");
        }
    }
    check(gotData == normalizeLines(data), "data changed by framing");
    check(gotEvent == stripLineBreaks(event), "event name changed by framing");

    std::string comment;
    appendSseComment(comment, data);
    check(comment.find('\r') == std::string::npos, "CR in a comment");
    check(comment.find("\n\n") == comment.size() - 2, "comment ends early");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    std::string_view token = in.until('\n');
    std::string_view value = in.rest();

    (void)headerHasToken(value, token);
    (void)ws::headerHasToken(value, token);
    (void)headerHasToken(value, "text/event-stream");
    (void)headerHasToken(value, "multipart/mixed");

    InfoFormat f = infoFormatFromAccept(value);
    check(!infoContentType(f).empty(), "content type");

    checkSse(token, value);
    return 0;
}
