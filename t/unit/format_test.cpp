#include "pubsub/codec/format.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using pubsub::appendSseComment;
using pubsub::appendSseEvent;
using pubsub::ChannelInfo;
using pubsub::formatChannelInfo;
using pubsub::headerHasToken;
using pubsub::InfoFormat;
using pubsub::infoFormatFromAccept;
using pubsub::MsgId;

ChannelInfo sampleInfo() {
    ChannelInfo info;
    info.found = true;
    info.messages = 2;
    info.subscribers = 3;
    info.lastSeen = 100;
    info.lastId = MsgId{1795678053, 1};
    info.presence = 4;
    return info;
}

TEST(FormatInfo, Json) {
    EXPECT_EQ(formatChannelInfo(sampleInfo(), InfoFormat::kJson, 110),
              "{\"messages\": 2, \"requested\": 10, \"subscribers\": 3, "
              "\"last_message_id\": \"1795678053:1\", \"presence\": 4}\n");
}

TEST(FormatInfo, Xml) {
    EXPECT_EQ(formatChannelInfo(sampleInfo(), InfoFormat::kXml, 110),
              "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n"
              "<channel>\n"
              "  <messages>2</messages>\n"
              "  <requested>10</requested>\n"
              "  <subscribers>3</subscribers>\n"
              "  <last_message_id>1795678053:1</last_message_id>\n"
              "  <presence>4</presence>\n"
              "</channel>\n");
}

TEST(FormatInfo, Yaml) {
    EXPECT_EQ(formatChannelInfo(sampleInfo(), InfoFormat::kYaml, 110),
              "---\n"
              "messages: 2\n"
              "requested: 10\n"
              "subscribers: 3\n"
              "last_message_id: 1795678053:1\n"
              "presence: 4\n");
}

TEST(FormatInfo, Text) {
    EXPECT_EQ(formatChannelInfo(sampleInfo(), InfoFormat::kText, 110),
              "queued messages: 2\r\n"
              "last requested: 10 sec. ago\r\n"
              "active subscribers: 3\r\n"
              "last message id: 1795678053:1");
}

TEST(FormatInfo, NeverRequestedIsMinusOne) {
    ChannelInfo info;
    info.found = true;
    EXPECT_EQ(formatChannelInfo(info, InfoFormat::kJson, 12345),
              "{\"messages\": 0, \"requested\": -1, \"subscribers\": 0, "
              "\"last_message_id\": \"0:0\", \"presence\": 0}\n");
    EXPECT_EQ(formatChannelInfo(info, InfoFormat::kText, 12345),
              "queued messages: 0\r\nlast requested: -1 sec. ago\r\n"
              "active subscribers: 0\r\nlast message id: 0:0");
    info.lastSeen = 12345;  // just now
    EXPECT_NE(formatChannelInfo(info, InfoFormat::kYaml, 12345).find("requested: 0\n"),
              std::string::npos);
}

TEST(FormatInfo, LargestNumbersFit) {
    ChannelInfo info;
    info.messages = ~0ULL;
    info.subscribers = ~0ULL;
    info.presence = ~0ULL;
    info.lastSeen = 0;
    info.lastId = MsgId{INT64_MAX, INT32_MAX};
    for (InfoFormat f : {InfoFormat::kText, InfoFormat::kJson, InfoFormat::kXml,
                         InfoFormat::kYaml}) {
        std::string s = formatChannelInfo(info, f, INT64_MAX);
        EXPECT_NE(s.find("18446744073709551615"), std::string::npos);
        EXPECT_NE(s.find("9223372036854775807:2147483647"), std::string::npos);
        // the text form ends on the id, as nchan's does
        EXPECT_EQ(s.back(), f == InfoFormat::kText ? '7' : '\n');
    }
}

TEST(FormatInfo, ContentTypes) {
    EXPECT_EQ(pubsub::infoContentType(InfoFormat::kText), "text/plain");
    EXPECT_EQ(pubsub::infoContentType(InfoFormat::kJson), "application/json");
    EXPECT_EQ(pubsub::infoContentType(InfoFormat::kXml), "text/xml");
    EXPECT_EQ(pubsub::infoContentType(InfoFormat::kYaml), "text/yaml");
}

TEST(FormatAccept, Negotiation) {
    EXPECT_EQ(infoFormatFromAccept("application/json"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("text/json"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("application/x-json"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("text/x-yaml"), InfoFormat::kYaml);
    EXPECT_EQ(infoFormatFromAccept("application/yaml"), InfoFormat::kYaml);
    EXPECT_EQ(infoFormatFromAccept("text/xml"), InfoFormat::kXml);
    EXPECT_EQ(infoFormatFromAccept("application/xml"), InfoFormat::kXml);
    EXPECT_EQ(infoFormatFromAccept("text/plain"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("*/*"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept(""), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("text/html"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("garbage"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept(",,,"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("/"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("image/json"), InfoFormat::kText);
}

TEST(FormatAccept, FirstKnownTypeWins) {
    EXPECT_EQ(infoFormatFromAccept("text/html, application/json"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;"
                                   "q=0.8"),
              InfoFormat::kXml);
    EXPECT_EQ(infoFormatFromAccept("text/plain, application/json"), InfoFormat::kText);
    EXPECT_EQ(infoFormatFromAccept("application/json, text/plain"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("text/x-yaml,text/xml"), InfoFormat::kYaml);
}

TEST(FormatAccept, CaseParametersAndSpaces) {
    EXPECT_EQ(infoFormatFromAccept("APPLICATION/JSON"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("Text/X-Yaml"), InfoFormat::kYaml);
    EXPECT_EQ(infoFormatFromAccept("application/json; charset=utf-8"), InfoFormat::kJson);
    EXPECT_EQ(infoFormatFromAccept("  \ttext/xml  ;q=1"), InfoFormat::kXml);
}

std::string sse(std::string_view event, std::string_view mid, std::string_view data) {
    std::string out;
    appendSseEvent(out, event, mid, data);
    return out;
}

TEST(FormatSse, SimpleEvent) {
    EXPECT_EQ(sse("", "1795678066:0", "hello"), "id: 1795678066:0\ndata: hello\n\n");
}

TEST(FormatSse, EventLineComesBeforeId) {
    // nchan's example, byte for byte.
    EXPECT_EQ(sse("evtA", "1795678066:0", "line1\nline2"),
              "event: evtA\nid: 1795678066:0\ndata: line1\ndata: line2\n\n");
}

TEST(FormatSse, NoIdLineWhenIdIsEmpty) {
    EXPECT_EQ(sse("", "", "x"), "data: x\n\n");
    EXPECT_EQ(sse("ping", "", "pingdata"), "event: ping\ndata: pingdata\n\n");
}

TEST(FormatSse, EveryLineEndingSplitsData) {
    EXPECT_EQ(sse("", "1:0", "a\nb"), "id: 1:0\ndata: a\ndata: b\n\n");
    EXPECT_EQ(sse("", "1:0", "a\r\nb"), "id: 1:0\ndata: a\ndata: b\n\n");
    EXPECT_EQ(sse("", "1:0", "a\rb"), "id: 1:0\ndata: a\ndata: b\n\n");
    EXPECT_EQ(sse("", "1:0", "a\n\nb"), "id: 1:0\ndata: a\ndata: \ndata: b\n\n");
    EXPECT_EQ(sse("", "1:0", "a\r\n\r\nb"), "id: 1:0\ndata: a\ndata: \ndata: b\n\n");
    // LF then CR is two line endings.
    EXPECT_EQ(sse("", "1:0", "a\n\rb"), "id: 1:0\ndata: a\ndata: \ndata: b\n\n");
    EXPECT_EQ(sse("", "1:0", "a\r\rb"), "id: 1:0\ndata: a\ndata: \ndata: b\n\n");
    // A trailing line ending leaves an empty last line.
    EXPECT_EQ(sse("", "1:0", "a\n"), "id: 1:0\ndata: a\ndata: \n\n");
    EXPECT_EQ(sse("", "1:0", "a\r\n"), "id: 1:0\ndata: a\ndata: \n\n");
    EXPECT_EQ(sse("", "1:0", "\n"), "id: 1:0\ndata: \ndata: \n\n");
}

TEST(FormatSse, EmptyData) {
    EXPECT_EQ(sse("", "1:0", ""), "id: 1:0\ndata: \n\n");
    EXPECT_EQ(sse("", "", ""), "data: \n\n");
}

TEST(FormatSse, DataIsBinarySafe) {
    std::string data("a\0b", 3);
    EXPECT_EQ(sse("", "", data), std::string("data: a\0b\n\n", 11));
}

TEST(FormatSse, EventNameCannotInjectLines) {
    EXPECT_EQ(sse("ev\nil", "", "x"), "event: evil\ndata: x\n\n");
    EXPECT_EQ(sse("a\r\nb\rc", "", "x"), "event: abc\ndata: x\n\n");
}

TEST(FormatSse, AppendsToWhatIsThere) {
    std::string out = ": hi\n\n";
    appendSseEvent(out, "", "1:0", "a");
    appendSseEvent(out, "", "1:1", "b");
    EXPECT_EQ(out, ": hi\n\nid: 1:0\ndata: a\n\nid: 1:1\ndata: b\n\n");
}

TEST(FormatSse, Comments) {
    std::string out;
    appendSseComment(out, "hi");
    EXPECT_EQ(out, ": hi\n\n");
    out.clear();
    appendSseComment(out, "");
    EXPECT_EQ(out, ":\n\n");
    out.clear();
    appendSseComment(out, "two\nlines");
    EXPECT_EQ(out, ": two\n: lines\n\n");
    out.clear();
    appendSseComment(out, "a\r\nb\rc");
    EXPECT_EQ(out, ": a\n: b\n: c\n\n");
    out.clear();
    appendSseComment(out, "410: 410 Gone");
    EXPECT_EQ(out, ": 410: 410 Gone\n\n");
}

TEST(FormatHeader, TokenMatching) {
    EXPECT_TRUE(headerHasToken("Upgrade", "upgrade"));
    EXPECT_TRUE(headerHasToken("keep-alive, Upgrade", "upgrade"));
    EXPECT_TRUE(headerHasToken("keep-alive,Upgrade", "UPGRADE"));
    EXPECT_TRUE(headerHasToken("  upgrade  ,keep-alive", "upgrade"));
    EXPECT_TRUE(headerHasToken("\tupgrade\t", "upgrade"));
    EXPECT_TRUE(headerHasToken("text/event-stream", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/html, TEXT/Event-Stream", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("", "upgrade"));
    EXPECT_FALSE(headerHasToken(",,", "upgrade"));
    EXPECT_FALSE(headerHasToken("keep-alive", "upgrade"));
    EXPECT_FALSE(headerHasToken("x-upgrade", "upgrade"));
    EXPECT_FALSE(headerHasToken("upgrades", "upgrade"));
    EXPECT_FALSE(headerHasToken("text/event-streamx", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("up grade", "upgrade"));
}

TEST(FormatHeader, ParametersAreIgnored) {
    EXPECT_TRUE(headerHasToken("text/event-stream; charset=utf-8", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;q=0.5", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;q=1", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;q=1.0", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream ; level=1 ; q=0.001", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("multipart/mixed; boundary=x", "multipart/mixed"));
}

TEST(FormatHeader, QZeroCountsAsAbsent) {
    EXPECT_FALSE(headerHasToken("text/event-stream;q=0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream; q=0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;q=0.0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;q=0.000", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;level=1;q=0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/html, text/event-stream;q=0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;q=0;level=1", "text/event-stream"));
    // Listed again without q=0: present.
    EXPECT_TRUE(headerHasToken("text/event-stream;q=0, text/event-stream", "text/event-stream"));
    // Only the named item's q matters.
    EXPECT_TRUE(headerHasToken("text/html;q=0, text/event-stream", "text/event-stream"));
}

TEST(FormatHeader, OnlyAParameterNamedQIsTheWeight) {
    // Regression: any parameter ending in "q=" ("xq=0") was taken for the
    // weight, and "Q=0" (parameter names are case-insensitive) was not.
    EXPECT_TRUE(headerHasToken("text/event-stream;xq=0", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;seq=0", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;foo=\"q=0\"", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;Q=0", "text/event-stream"));
    EXPECT_FALSE(headerHasToken("text/event-stream;xq=1;q=0", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;q", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;q=", "text/event-stream"));
    EXPECT_TRUE(headerHasToken("text/event-stream;;", "text/event-stream"));
}

}  // namespace
