#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pubsub/pusher/api.h"
#include "pubsub/pusher/auth.h"

using namespace pubsub::pusher;

TEST(PusherApiPath, Routes) {
    ApiPath p;
    ASSERT_TRUE(parseApiPath("/apps/123/events", p));
    EXPECT_EQ(p.appId, "123");
    EXPECT_EQ(p.route, ApiRoute::Events);
    EXPECT_EQ(p.signedPath, "/apps/123/events");

    ASSERT_TRUE(parseApiPath("/pusher/apps/app-1/batch_events", p));
    EXPECT_EQ(p.appId, "app-1");
    EXPECT_EQ(p.route, ApiRoute::BatchEvents);
    EXPECT_EQ(p.signedPath, "/apps/app-1/batch_events");

    ASSERT_TRUE(parseApiPath("/apps/1/channels", p));
    EXPECT_EQ(p.route, ApiRoute::Channels);
    ASSERT_TRUE(parseApiPath("/apps/1/channels/presence-room", p));
    EXPECT_EQ(p.route, ApiRoute::Channel);
    EXPECT_EQ(p.channel, "presence-room");
    ASSERT_TRUE(parseApiPath("/apps/1/channels/presence-r%40m/users", p));
    EXPECT_EQ(p.route, ApiRoute::ChannelUsers);
    EXPECT_EQ(p.channel, "presence-r@m");
    ASSERT_TRUE(parseApiPath("/apps/1/users/u%2B1/terminate_connections", p));
    EXPECT_EQ(p.route, ApiRoute::TerminateConnections);
    EXPECT_EQ(p.user, "u+1");

    ASSERT_TRUE(parseApiPath("/apps/1/nothing", p));
    EXPECT_EQ(p.route, ApiRoute::Unknown);
    ASSERT_TRUE(parseApiPath("/apps/1/channels/", p));
    EXPECT_EQ(p.route, ApiRoute::Unknown);
    ASSERT_TRUE(parseApiPath("/apps/1/channels/a/b", p));
    EXPECT_EQ(p.route, ApiRoute::Unknown);
    ASSERT_TRUE(parseApiPath("/apps/1/users//terminate_connections", p));
    EXPECT_EQ(p.route, ApiRoute::Unknown);
    EXPECT_FALSE(parseApiPath("/app/1/events", p));
    EXPECT_FALSE(parseApiPath("/apps//events", p));

    EXPECT_EQ(routeMethod(ApiRoute::Events), "POST");
    EXPECT_EQ(routeMethod(ApiRoute::ChannelUsers), "GET");
    EXPECT_EQ(routeMethod(ApiRoute::Unknown), "");
}

TEST(PusherApiEvent, Valid) {
    ApiEvent ev;
    ApiError e =
        parseEvent(R"({"name":"my-event","data":"{\"a\":1}","channels":["a","presence-b"],)"
                   R"("socket_id":"123.456","info":"user_count,subscription_count"})",
                   ev);
    ASSERT_FALSE(e) << e.message;
    EXPECT_EQ(ev.name, "my-event");
    EXPECT_EQ(ev.data, "{\"a\":1}");
    EXPECT_EQ(ev.channels, (std::vector<std::string>{"a", "presence-b"}));
    EXPECT_EQ(ev.socketId, "123.456");
    EXPECT_TRUE(ev.info.userCount);
    EXPECT_TRUE(ev.info.subscriptionCount);

    ASSERT_FALSE(parseEvent(R"({"name":"e","data":"x","channel":"#server-to-user-u1"})", ev));
    EXPECT_EQ(ev.channels, (std::vector<std::string>{"#server-to-user-u1"}));
    EXPECT_EQ(ev.socketId, "");
    EXPECT_FALSE(ev.info.any());
}

TEST(PusherApiEvent, Invalid) {
    ApiEvent ev;
    ApiError e = parseEvent("{\"name\":", ev);
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(e.message.find("malformed JSON body"), std::string::npos) << e.message;

    EXPECT_EQ(parseEvent("", ev).status, 400);
    EXPECT_EQ(parseEvent("[]", ev).status, 400);
    EXPECT_EQ(parseEvent(R"({"data":"x","channel":"a"})", ev).status, 400);
    EXPECT_EQ(parseEvent(R"({"name":"e","data":{},"channel":"a"})", ev).status, 400);
    EXPECT_EQ(parseEvent(R"({"name":"e","data":"x"})", ev).status, 400);
    EXPECT_EQ(parseEvent(R"({"name":"e","data":"x","channel":"a","channels":["b"]})", ev).status,
              400);
    e = parseEvent(R"({"name":"pusher:x","data":"x","channel":"a"})", ev);
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(e.message.find("reserved"), std::string::npos);
    EXPECT_EQ(
        parseEvent(R"({"name":"pusher_internal:terminate","data":"","channel":"a"})", ev).status,
        400);
    e = parseEvent(R"({"name":"e","data":"x","channel":"bad channel"})", ev);
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(e.message.find("invalid channel name"), std::string::npos);
    EXPECT_EQ(parseEvent(R"({"name":"e","data":"x","channel":"a","socket_id":"abc"})", ev).status,
              400);

    std::string big = R"({"name":"e","channel":"a","data":")" + std::string(10241, 'x') + "\"}";
    e = parseEvent(big, ev);
    EXPECT_EQ(e.status, 413);
    std::string fits = R"({"name":"e","channel":"a","data":")" + std::string(10240, 'x') + "\"}";
    EXPECT_FALSE(parseEvent(fits, ev));

    std::string many = R"({"name":"e","data":"x","channels":[)";
    for (int i = 0; i < 101; i++) {
        many += (i ? ",\"c" : "\"c") + std::to_string(i) + "\"";
    }
    many += "]}";
    e = parseEvent(many, ev);
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(e.message.find("too many channels"), std::string::npos);
}

TEST(PusherApiBatch, ValidAndInvalid) {
    std::vector<ApiEvent> evs;
    ASSERT_FALSE(
        parseBatch(R"({"batch":[{"name":"a","data":"1","channel":"x"},)"
                   R"({"name":"b","data":"2","channel":"presence-y","info":"user_count"}]})",
                   evs));
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_EQ(evs[1].channels[0], "presence-y");
    EXPECT_TRUE(evs[1].info.userCount);

    ApiError e = parseBatch(R"({"batch":[{"name":"a","data":"1","channel":"x"},)"
                            R"({"name":"pusher:b","data":"2","channel":"y"}]})",
                            evs);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.message.rfind("batch[1]: ", 0), 0u) << e.message;

    std::string eleven = R"({"batch":[)";
    for (int i = 0; i < 11; i++) {
        eleven += std::string(i ? "," : "") + R"({"name":"a","data":"1","channel":"x"})";
    }
    eleven += "]}";
    EXPECT_EQ(parseBatch(eleven, evs).status, 400);
    EXPECT_EQ(parseBatch(R"({"events":[]})", evs).status, 400);
    EXPECT_EQ(parseBatch("{", evs).status, 400);
}

TEST(PusherApiQuery, ArgsAndDecoding) {
    std::string v;
    EXPECT_TRUE(queryArg("a=1&info=user_count%2Csubscription_count", "info", v));
    EXPECT_EQ(v, "user_count,subscription_count");
    EXPECT_FALSE(queryArg("a=1", "info", v));
    EXPECT_EQ(decodedQuery("auth_key=k&info=user_count%2Csubscription_count&x=%zz"),
              "auth_key=k&info=user_count,subscription_count&x=%zz");

    InfoFields f = parseInfoFields("subscription_count, other");
    EXPECT_FALSE(f.userCount);
    EXPECT_TRUE(f.subscriptionCount);
}

// pusher-php-server (Guzzle) signs the plain values and sends them encoded.
TEST(PusherApiQuery, EncodedQueryVerifiesOnceDecoded) {
    const std::string secret = "0123456789abcdef0123";
    std::string plain =
        "auth_key=key&auth_timestamp=1000&auth_version=1.0&"
        "filter_by_prefix=presence-&info=user_count";
    std::string sig = hmacSha256Hex(secret, "GET\n/apps/1/channels\n" + plain);
    std::string sent =
        "auth_key=key&auth_timestamp=1000&auth_version=1.0&"
        "filter_by_prefix=presence-&info=user_count&auth_signature=" +
        sig;
    std::string encoded =
        "auth_key=key&auth_timestamp=1000&auth_version=1.0&"
        "filter_by_prefix=presence-&info=user%5Fcount&auth_signature=" +
        sig;
    ApiRequest req;
    req.method = "GET";
    req.path = "/apps/1/channels";
    req.now = 1000;
    req.query = sent;
    EXPECT_EQ(verifyApiRequest(req, "key", secret), "");
    req.query = encoded;
    EXPECT_EQ(verifyApiRequest(req, "key", secret), "invalid signature");
    std::string decoded = decodedQuery(encoded);
    req.query = decoded;
    EXPECT_EQ(verifyApiRequest(req, "key", secret), "");
}

TEST(PusherApiAnswer, Json) {
    std::vector<ChannelCounts> cs(2);
    cs[0].name = "presence-a";
    cs[0].presence = true;
    cs[0].userCount = 2;
    cs[0].subscriptionCount = 3;
    cs[1].name = "b";
    cs[1].subscriptionCount = 1;

    InfoFields none;
    InfoFields both;
    both.userCount = both.subscriptionCount = true;
    InfoFields users;
    users.userCount = true;

    EXPECT_EQ(eventsAnswer(cs, none), "{}");
    EXPECT_EQ(eventsAnswer(cs, both),
              R"({"channels":{"presence-a":{"user_count":2,"subscription_count":3},)"
              R"("b":{"subscription_count":1}}})");
    EXPECT_EQ(channelsAnswer(cs, none), R"({"channels":{"presence-a":{},"b":{}}})");
    EXPECT_EQ(channelsAnswer(cs, users), R"({"channels":{"presence-a":{"user_count":2},"b":{}}})");
    EXPECT_EQ(channelsAnswer({}, none), R"({"channels":{}})");
    EXPECT_EQ(batchAnswer(cs, {none, none}), "{}");
    EXPECT_EQ(batchAnswer(cs, {users, none}), R"({"batch":[{"user_count":2},{}]})");
    EXPECT_EQ(channelAnswer(true, cs[0], none), R"({"occupied":true,"user_count":2})");
    EXPECT_EQ(channelAnswer(false, cs[1], both), R"({"occupied":false,"subscription_count":1})");
    EXPECT_EQ(usersAnswer({"1", "u\"2"}), R"({"users":[{"id":"1"},{"id":"u\"2"}]})");
    EXPECT_EQ(usersAnswer({}), R"({"users":[]})");
    EXPECT_EQ(serverToUserChannel("42"), "#server-to-user-42");
}
