// Channel ids from the request (pubsub_channel_id with variables, split by
// pubsub_channel_id_split_delimiter): splitChannelIds() with a fuzzed
// delimiter and limits. Every id taken must be a non-empty view into the
// value, within the limit, without control characters or the delimiter.
#include <string>

#include "fuzz_util.h"
#include "pubsub/channel_id.h"

using namespace pubsub;
using pubsub::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    size_t maxLen = 1 + in.byte();
    size_t max = 1 + in.byte() % kMaxChannelIds;
    std::string_view delim = in.until('\n');
    if (delim.size() > 4) {
        delim = delim.substr(0, 4);
    }
    std::string_view value = in.rest();

    std::string_view out[kMaxChannelIds];
    size_t n = 0;
    ChannelIdError err = splitChannelIds(value, delim, maxLen, out, &n, max);
    check(n <= max, "more ids than room");
    check((err == ChannelIdError::kNone) == channelIdErrorText(err).empty(), "error text");
    for (size_t i = 0; i < n; i++) {
        std::string_view id = out[i];
        check(!id.empty() && id.size() <= maxLen, "id length");
        check(id.data() >= value.data() && id.data() + id.size() <= value.data() + value.size(),
              "id is not a view of the value");
        check(delim.empty() || id.find(delim) == std::string_view::npos, "id holds the delimiter");
        for (char c : id) {
            auto u = static_cast<unsigned char>(c);
            check(u >= 0x20 && u != 0x7f, "control character in an id");
        }
        if (i > 0) {
            check(out[i - 1].data() + out[i - 1].size() <= id.data(), "ids out of order");
        }
    }
    if (err == ChannelIdError::kNone) {
        check(n > 0, "success without an id");
        if (delim.empty()) {
            check(n == 1 && out[0] == value, "unsplit value changed");
        }
    }
    (void)checkChannelGroup(value);
    return 0;
}
