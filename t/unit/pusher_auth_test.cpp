// Pusher signatures: the expected values were made by npm `pusher` 5.3.4
// (authorizeChannel, authenticateUser, createSignedQueryString, Token.sign).
#include <gtest/gtest.h>

#include "pubsub/pusher/auth.h"

using namespace pubsub::pusher;

namespace {
constexpr const char* kKey = "app-key";
constexpr const char* kSecret = "app-secret-0123456789abcdef0123456789";
}  // namespace

TEST(PusherAuth, PrivateChannel) {
    const char* auth = "app-key:2de1ea5d4e61086356696296aae02df25fc3ae3222762828c06e7b96d9e45590";
    EXPECT_TRUE(checkChannelAuth(kKey, kSecret, "123.456", "private-foo", "", auth));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.457", "private-foo", "", auth));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.456", "private-bar", "", auth));
    EXPECT_FALSE(checkChannelAuth("other", kSecret, "123.456", "private-foo", "", auth));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.456", "private-foo", "", "app-key:"));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.456", "private-foo", "", ""));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.456", "private-foo", "",
                                  "app-key2de1ea5d4e61086356696296aae02df25fc3ae3222762828c06e"));
}

TEST(PusherAuth, PresenceChannelCoversChannelData) {
    const char* data = "{\"user_id\":\"u1\",\"user_info\":{\"name\":\"A\"}}";
    const char* auth = "app-key:a2e3ef5c2e14acded89e1398f038f385bef06f93cff461ab02065a5e36e21e0c";
    EXPECT_TRUE(checkChannelAuth(kKey, kSecret, "123.456", "presence-room", data, auth));
    EXPECT_FALSE(checkChannelAuth(kKey, kSecret, "123.456", "presence-room",
                                  "{\"user_id\":\"u2\",\"user_info\":{\"name\":\"A\"}}", auth));
}

TEST(PusherAuth, Signin) {
    const char* data = "{\"id\":\"u1\",\"name\":\"A\"}";
    const char* auth = "app-key:9182e9b93b2b1eea75eb8261332c473884043e6dba2fb73823170fb5dabee95b";
    EXPECT_TRUE(checkSigninAuth(kKey, kSecret, "123.456", data, auth));
    EXPECT_FALSE(checkSigninAuth(kKey, kSecret, "123.456", "{\"id\":\"u2\"}", auth));
}

TEST(PusherAuth, WebhookSignature) {
    EXPECT_EQ(hmacSha256Hex(kSecret, "{\"name\":\"e\",\"data\":\"d\",\"channel\":\"c\"}"),
              "b401f358322943933aa24bf7a72ff53420bbde63b34f78a8c128e5a6b717cec1");
}

TEST(PusherAuth, ApiRequest) {
    ApiRequest req;
    req.method = "POST";
    req.path = "/apps/1/events";
    req.body = "{\"name\":\"e\",\"data\":\"d\",\"channel\":\"c\"}";
    req.query =
        "auth_key=app-key&auth_timestamp=1796682520&auth_version=1.0&body_md5="
        "298d3917ae1a339689d466aa18fa419b&auth_signature="
        "61f240409eb4ae812bc3298678811fd0bf38a4868cdc41f3ac74c58e4a831979";
    req.now = 1796682520 + 30;
    EXPECT_EQ(verifyApiRequest(req, kKey, kSecret), "");
    EXPECT_EQ(md5Hex(req.body), "298d3917ae1a339689d466aa18fa419b");

    ApiRequest late = req;
    late.now = 1796682520 + 601;
    EXPECT_EQ(verifyApiRequest(late, kKey, kSecret),
              "auth_timestamp not within 600 s of the server's time");
    ApiRequest early = req;
    early.now = 1796682520 - 601;
    EXPECT_NE(verifyApiRequest(early, kKey, kSecret), "");

    ApiRequest body = req;
    body.body = "{\"name\":\"f\",\"data\":\"d\",\"channel\":\"c\"}";
    EXPECT_EQ(verifyApiRequest(body, kKey, kSecret), "body_md5 does not match the body");

    ApiRequest path = req;
    path.path = "/apps/2/events";
    EXPECT_EQ(verifyApiRequest(path, kKey, kSecret), "invalid signature");

    EXPECT_EQ(verifyApiRequest(req, "other-key", kSecret), "unknown auth_key");
    EXPECT_EQ(verifyApiRequest(req, kKey, "other-secret"), "invalid signature");

    ApiRequest nosig = req;
    nosig.query =
        "auth_key=app-key&auth_timestamp=1796682520&auth_version=1.0&body_md5="
        "298d3917ae1a339689d466aa18fa419b";
    EXPECT_EQ(verifyApiRequest(nosig, kKey, kSecret), "auth_signature missing");
}

TEST(PusherAuth, StringToSignSortsLowercasedKeys) {
    EXPECT_EQ(apiStringToSign("GET", "/apps/1/channels",
                              "info=user_count,subscription_count&AUTH_KEY=k&auth_signature=x"
                              "&filter_by_prefix=presence-"),
              "GET\n/apps/1/channels\nauth_key=k&filter_by_prefix=presence-"
              "&info=user_count,subscription_count");
}

TEST(PusherAuth, ChannelKinds) {
    EXPECT_EQ(channelKind("news"), ChannelKind::Public);
    EXPECT_EQ(channelKind("private-a"), ChannelKind::Private);
    EXPECT_EQ(channelKind("private-encrypted-a"), ChannelKind::PrivateEncrypted);
    EXPECT_EQ(channelKind("presence-room.1"), ChannelKind::Presence);
    EXPECT_EQ(channelKind("#server-to-user-42"), ChannelKind::ServerToUser);
    EXPECT_EQ(channelKind("#server-to-user-"), ChannelKind::Invalid);
    EXPECT_EQ(channelKind(""), ChannelKind::Invalid);
    EXPECT_EQ(channelKind("a b"), ChannelKind::Invalid);
    EXPECT_EQ(channelKind("a/b"), ChannelKind::Invalid);
    EXPECT_EQ(channelKind("#other"), ChannelKind::Invalid);
    EXPECT_EQ(channelKind(std::string(164, 'a')), ChannelKind::Public);
    EXPECT_EQ(channelKind(std::string(165, 'a')), ChannelKind::Invalid);
    EXPECT_TRUE(allowsClientEvents(ChannelKind::Presence));
    EXPECT_FALSE(allowsClientEvents(ChannelKind::PrivateEncrypted));
    EXPECT_FALSE(allowsClientEvents(ChannelKind::Public));
}

TEST(PusherAuth, SocketIds) {
    EXPECT_TRUE(validSocketId("123.456"));
    EXPECT_FALSE(validSocketId("123."));
    EXPECT_FALSE(validSocketId(".456"));
    EXPECT_FALSE(validSocketId("12a.456"));
    EXPECT_FALSE(validSocketId("123456"));
    EXPECT_FALSE(validSocketId("1.2.3"));
}

TEST(PusherAuth, QueryParam) {
    std::string_view v;
    EXPECT_TRUE(queryParam("a=1&bb=2&b=3", "b", v));
    EXPECT_EQ(v, "3");
    EXPECT_TRUE(queryParam("a", "a", v));
    EXPECT_EQ(v, "");
    EXPECT_FALSE(queryParam("a=1", "b", v));
}
