#pragma once
// Text the module sends: channel info in four formats and EventSource
// framing.  Pure functions of their inputs.

#include <cstdint>
#include <string>
#include <string_view>

#include "pubsub/msgid.h"
#include "pubsub/store.h"

namespace pubsub {

enum class InfoFormat { kText, kJson, kXml, kYaml };

// Chooses the format from an Accept header as nchan does: the first media
// range whose subtype is json/x-json, yaml/x-yaml, xml or plain; text
// otherwise.
InfoFormat infoFormatFromAccept(std::string_view accept);
std::string_view infoContentType(InfoFormat f);
// `now` turns lastSeen into "seconds ago" (-1 when never).  The text form
// is nchan's byte for byte (CRLF between lines, none after the last id, no
// presence count); JSON, XML and YAML add the presence count.
std::string formatChannelInfo(const ChannelInfo& info, InfoFormat f, int64_t now);
// The same into buf (at least kMaxChannelInfoText bytes); returns the length.
constexpr size_t kMaxChannelInfoText = 512;
size_t writeChannelInfo(char* buf, const ChannelInfo& info, InfoFormat f, int64_t now);

// A channel group's counts and stored limits (pubsub_group_location).  The
// text form is nchan's group info byte for byte (CRLF after every line;
// nchan's disk and message-count figures are there, always 0); JSON, XML
// and YAML carry nchan's keys in the publisher's style.
std::string formatGroupInfo(const GroupInfo& info, InfoFormat f);

// One EventSource event: "event: E\n" (when E is not empty), "id: ID\n",
// one "data: " line per payload line, then a blank line.  CR, LF and CRLF
// all end a payload line (EventSource cannot carry a bare CR).
void appendSseEvent(std::string& out, std::string_view event, std::string_view id,
                    std::string_view data);
// ": text\n\n" (text may be empty), one comment line per text line.
void appendSseComment(std::string& out, std::string_view text);

// Case-insensitive search of `token` in a comma-separated header value
// (";" parameters ignored; "q=0" counts as absent).
bool headerHasToken(std::string_view value, std::string_view token);

}  // namespace pubsub
