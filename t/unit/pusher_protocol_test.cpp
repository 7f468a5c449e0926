// Pusher protocol 7 frames: what clients send and what the server sends.
#include <gtest/gtest.h>

#include "pubsub/codec/json.h"
#include "pubsub/pusher/protocol.h"

using namespace pubsub::pusher;

TEST(PusherProtocol, SubscribeWithObjectData) {
    ClientMessage m;
    std::string err;
    ASSERT_TRUE(parseClientMessage(
        R"({"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:ab",)"
        R"("channel_data":"{\"user_id\":\"1\"}"}})",
        &m, &err))
        << err;
    EXPECT_EQ(m.event, "pusher:subscribe");
    EXPECT_EQ(m.channel, "presence-a");
    EXPECT_EQ(m.auth, "k:ab");
    EXPECT_EQ(m.channelData, R"({"user_id":"1"})");
}

TEST(PusherProtocol, DoubleEncodedDataAndClientEvents) {
    ClientMessage m;
    std::string err;
    ASSERT_TRUE(parseClientMessage(
        R"({"event":"pusher:signin","data":"{\"auth\":\"k:x\",\"user_data\":\"{}\"}"})", &m, &err));
    EXPECT_EQ(m.auth, "k:x");
    EXPECT_EQ(m.userData, "{}");
    // a client event's data is kept as sent: an object's JSON text
    ASSERT_TRUE(parseClientMessage(
        R"({"event":"client-x","channel":"private-a","data":{"a": [1, 2]}})", &m, &err));
    EXPECT_EQ(m.channel, "private-a");
    EXPECT_EQ(m.data, R"({"a": [1, 2]})");
    ASSERT_TRUE(
        parseClientMessage(R"({"event":"client-x","channel":"c","data":"text"})", &m, &err));
    EXPECT_EQ(m.data, "text");
}

TEST(PusherProtocol, MalformedFramesSayWhy) {
    ClientMessage m;
    std::string err;
    EXPECT_FALSE(parseClientMessage("{nope", &m, &err));
    EXPECT_EQ(err.rfind("Invalid JSON", 0), 0u);
    EXPECT_FALSE(parseClientMessage("[1]", &m, &err));
    EXPECT_EQ(err, "Invalid message: not a JSON object");
    EXPECT_FALSE(parseClientMessage(R"({"data":{}})", &m, &err));
    EXPECT_EQ(err, "Invalid message: no event name");
    EXPECT_FALSE(parseClientMessage(R"({"event":"e","channel":3})", &m, &err));
    EXPECT_FALSE(parseClientMessage(R"({"event":"pusher:subscribe","data":{"auth":1}})", &m, &err));
}

TEST(PusherProtocol, ServerFramesDoubleEncode) {
    EXPECT_EQ(serverFrame("pusher:pong", {}, "{}"), R"({"event":"pusher:pong","data":"{}"})");
    EXPECT_EQ(serverFrame("client-x", "presence-a", R"({"a":1})", "u1"),
              R"({"event":"client-x","channel":"presence-a","data":"{\"a\":1}","user_id":"u1"})");
    EXPECT_EQ(errorFrame(4001, "no"),
              R"({"event":"pusher:error","data":"{\"code\":4001,\"message\":\"no\"}"})");
    EXPECT_EQ(errorFrame(0, "x"),
              R"({"event":"pusher:error","data":"{\"code\":null,\"message\":\"x\"}"})");
    std::string f = subscriptionErrorFrame("private-a", "AuthError", "bad", 401);
    auto doc = pubsub::json::parse(f);
    ASSERT_TRUE(doc);
    auto data = pubsub::json::parse(doc.document->root().find("data")->asString());
    ASSERT_TRUE(data);
    EXPECT_EQ(data.document->root().find("type")->asString(), "AuthError");
    EXPECT_EQ(data.document->root().find("status")->asNumber(), 401);
}

TEST(PusherProtocol, ChannelDataAndLimits) {
    ChannelData cd;
    std::string err;
    ASSERT_TRUE(parseChannelData(R"({"user_id":"u","user_info":{"n":"A"}})", &cd, &err));
    EXPECT_EQ(cd.userId, "u");
    EXPECT_EQ(cd.userInfo, R"({"n":"A"})");
    ASSERT_TRUE(parseChannelData(R"({"user_id":42})", &cd, &err));
    EXPECT_EQ(cd.userId, "42");
    EXPECT_TRUE(cd.userInfo.empty());
    EXPECT_FALSE(parseChannelData(R"({"user_info":{}})", &cd, &err));
    EXPECT_FALSE(parseChannelData(R"({"user_id":""})", &cd, &err));
    EXPECT_FALSE(parseChannelData("{\"user_id\":\"" + std::string(129, 'a') + "\"}", &cd, &err));
    EXPECT_EQ(err, "user_id is longer than 128 characters");
    EXPECT_FALSE(parseChannelData(
        "{\"user_id\":\"a\",\"user_info\":\"" + std::string(1100, 'x') + "\"}", &cd, &err));
    EXPECT_EQ(err, "user_info is larger than 1 KB");
    std::string id;
    ASSERT_TRUE(parseUserData(R"({"id":"7","name":"x"})", &id, &err));
    EXPECT_EQ(id, "7");
    EXPECT_FALSE(parseUserData(R"({"name":"x"})", &id, &err));
}

TEST(PusherProtocol, PresenceData) {
    EXPECT_EQ(presenceData({{"a", R"({"n":1})"}, {"b", ""}}),
              R"({"presence":{"ids":["a","b"],"hash":{"a":{"n":1},"b":null},"count":2}})");
    EXPECT_EQ(memberAddedData("a", ""), R"({"user_id":"a","user_info":null})");
    EXPECT_EQ(memberRemovedData("a"), R"({"user_id":"a"})");
}
