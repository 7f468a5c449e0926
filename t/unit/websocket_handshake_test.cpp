#include <gtest/gtest.h>

#include <set>
#include <string>

#include "pubsub/codec/websocket.h"

using namespace pubsub::ws;

namespace {

UpgradeRequest goodRequest() {
    UpgradeRequest r;
    r.method = "GET";
    r.httpVersion = 1001;
    r.upgrade = "websocket";
    r.connection = "Upgrade";
    r.version = "13";
    r.key = "dGhlIHNhbXBsZSBub25jZQ==";
    return r;
}

}  // namespace

TEST(WsHandshake, AcceptsValidRequest) {
    EXPECT_EQ(validateUpgrade(goodRequest()), HandshakeError::None);
    UpgradeRequest r = goodRequest();
    r.upgrade = "WebSocket";
    r.connection = "keep-alive, UPGRADE";
    r.version = " 13 ";
    r.key = " dGhlIHNhbXBsZSBub25jZQ== ";
    EXPECT_EQ(validateUpgrade(r), HandshakeError::None);
    r.upgrade = "h2c, websocket";
    EXPECT_EQ(validateUpgrade(r), HandshakeError::None);
    EXPECT_EQ(handshakeErrorText(HandshakeError::None), "");
}

TEST(WsHandshake, EachFailureHasItsReason) {
    struct Case {
        void (*mutate)(UpgradeRequest&);
        HandshakeError want;
    } cases[] = {
        {[](UpgradeRequest& r) { r.method = "POST"; }, HandshakeError::NotGet},
        {[](UpgradeRequest& r) { r.method = "get"; }, HandshakeError::NotGet},
        {[](UpgradeRequest& r) { r.httpVersion = 1000; }, HandshakeError::BadHttpVersion},
        {[](UpgradeRequest& r) { r.httpVersion = 2000; }, HandshakeError::BadHttpVersion},
        {[](UpgradeRequest& r) { r.upgrade = ""; }, HandshakeError::NoUpgradeWebsocket},
        {[](UpgradeRequest& r) { r.upgrade = "websockets"; }, HandshakeError::NoUpgradeWebsocket},
        {[](UpgradeRequest& r) { r.connection = ""; }, HandshakeError::NoConnectionUpgrade},
        {[](UpgradeRequest& r) { r.connection = "keep-alive"; },
         HandshakeError::NoConnectionUpgrade},
        {[](UpgradeRequest& r) { r.connection = "upgraded"; }, HandshakeError::NoConnectionUpgrade},
        {[](UpgradeRequest& r) { r.version = ""; }, HandshakeError::MissingVersion},
        {[](UpgradeRequest& r) { r.version = "8"; }, HandshakeError::UnsupportedVersion},
        {[](UpgradeRequest& r) { r.version = "13, 8"; }, HandshakeError::UnsupportedVersion},
        {[](UpgradeRequest& r) { r.key = ""; }, HandshakeError::MissingKey},
        {[](UpgradeRequest& r) { r.key = "   "; }, HandshakeError::MissingKey},
        {[](UpgradeRequest& r) { r.key = "dGhlIHNhbXBsZSBub25jZQ"; }, HandshakeError::InvalidKey},
        {[](UpgradeRequest& r) { r.key = "dGhlIHNhbXBsZSBub25jZQ=!"; }, HandshakeError::InvalidKey},
        {[](UpgradeRequest& r) { r.key = "dGhlIHNhbXBsZSBub25jZR=="; }, HandshakeError::InvalidKey},
        {[](UpgradeRequest& r) { r.key = "dGhlIHNhbXBsZSBub25j*Q=="; }, HandshakeError::InvalidKey},
        {[](UpgradeRequest& r) { r.key = "aGVsbG8="; }, HandshakeError::InvalidKey},
        {[](UpgradeRequest& r) { r.key = "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="; },
         HandshakeError::InvalidKey},
    };
    std::set<std::string_view> texts;
    for (const Case& c : cases) {
        UpgradeRequest r = goodRequest();
        c.mutate(r);
        HandshakeError e = validateUpgrade(r);
        EXPECT_EQ(static_cast<int>(e), static_cast<int>(c.want));
        EXPECT_FALSE(handshakeErrorText(e).empty());
        texts.insert(handshakeErrorText(e));
    }
    EXPECT_EQ(texts.size(), 8u);  // one distinct text per error
}

TEST(WsHandshake, AcceptKeyRfcExample) {
    EXPECT_EQ(computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    EXPECT_EQ(computeAcceptKey(" dGhlIHNhbXBsZSBub25jZQ==\t"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char buf[kAcceptKeySize];
    ASSERT_TRUE(computeAcceptKey("x3JJHMbDL1EzLkh9GBhXDw==", buf));
    EXPECT_EQ(std::string(buf, kAcceptKeySize), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST(WsHandshake, HeaderTokens) {
    EXPECT_TRUE(headerHasToken("Upgrade", "upgrade"));
    EXPECT_TRUE(headerHasToken("keep-alive,upgrade", "upgrade"));
    EXPECT_TRUE(headerHasToken(" keep-alive ,\tUpgrade\t", "upgrade"));
    EXPECT_FALSE(headerHasToken("keep-alive", "upgrade"));
    EXPECT_FALSE(headerHasToken("", "upgrade"));
    EXPECT_FALSE(headerHasToken("up grade", "upgrade"));
}

TEST(WsHandshake, Subprotocol) {
    EXPECT_EQ(chooseSubprotocol("ws+meta.nchan"), std::optional<std::string_view>("ws+meta.nchan"));
    EXPECT_EQ(chooseSubprotocol("chat, ws+meta.nchan.v2 , other"),
              std::optional<std::string_view>("ws+meta.nchan.v2"));
    EXPECT_EQ(chooseSubprotocol("chat, superchat"), std::nullopt);
    EXPECT_EQ(chooseSubprotocol(""), std::nullopt);
    EXPECT_EQ(chooseSubprotocol("x-ws+meta.nchan"), std::nullopt);
}

TEST(WsDeflateNegotiation, Basic) {
    DeflateConfig cfg;
    DeflateNegotiation n = negotiateDeflate("permessage-deflate", cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.responseHeader, "permessage-deflate");
    EXPECT_FALSE(n.params.serverNoContextTakeover);
    EXPECT_EQ(n.params.serverMaxWindowBits, 15);
    EXPECT_EQ(n.params.clientMaxWindowBits, 15);

    // What browsers send.
    n = negotiateDeflate("permessage-deflate; client_max_window_bits", cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.responseHeader, "permessage-deflate; client_max_window_bits=15");

    n = negotiateDeflate("", cfg);
    EXPECT_FALSE(n.accepted);
    EXPECT_TRUE(n.responseHeader.empty());
    n = negotiateDeflate("x-webkit-deflate-frame, foo; bar=1", cfg);
    EXPECT_FALSE(n.accepted);

    cfg.enabled = false;
    EXPECT_FALSE(negotiateDeflate("permessage-deflate", cfg).accepted);
}

TEST(WsDeflateNegotiation, AllParameters) {
    DeflateConfig cfg;
    DeflateNegotiation n = negotiateDeflate(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=9",
        cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_TRUE(n.params.serverNoContextTakeover);
    EXPECT_TRUE(n.params.clientNoContextTakeover);
    EXPECT_EQ(n.params.serverMaxWindowBits, 10);
    EXPECT_EQ(n.params.clientMaxWindowBits, 9);
    EXPECT_EQ(n.responseHeader,
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=10; client_max_window_bits=9");

    // Quoted values and odd spacing/case are accepted.
    n = negotiateDeflate("PerMessage-Deflate ;Server_Max_Window_Bits=\"12\"", cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.params.serverMaxWindowBits, 12);
}

TEST(WsDeflateNegotiation, ServerPolicy) {
    DeflateConfig cfg;
    cfg.deflate.windowBits = 10;
    cfg.clientMaxWindowBits = 11;
    cfg.serverNoContextTakeover = true;
    DeflateNegotiation n = negotiateDeflate(
        "permessage-deflate; client_max_window_bits; server_max_window_bits=12", cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.params.serverMaxWindowBits, 10);
    EXPECT_EQ(n.params.clientMaxWindowBits, 11);
    EXPECT_EQ(n.responseHeader,
              "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
              "client_max_window_bits=11");
    // Without client_max_window_bits in the offer we must not send it.
    n = negotiateDeflate("permessage-deflate", cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.params.clientMaxWindowBits, 15);
    EXPECT_EQ(n.responseHeader,
              "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
}

TEST(WsDeflateNegotiation, InvalidOffersAreDeclined) {
    DeflateConfig cfg;
    const char* bad[] = {
        "permessage-deflate; server_max_window_bits",  // value required
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",  // leading zero
        "permessage-deflate; client_max_window_bits=foo",
        "permessage-deflate; client_max_window_bits=1",
        "permessage-deflate; server_no_context_takeover=1",  // no value allowed
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9; server_max_window_bits=10",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=8",     // zlib cannot do 8
        "permessage-deflate; server_max_window_bits=\"10",  // syntax error
        "permessage-deflate;; x",                           // syntax error
        "permessage-deflate server_no_context_takeover",    // syntax error
    };
    for (const char* h : bad) {
        EXPECT_FALSE(negotiateDeflate(h, cfg).accepted) << h;
    }
    // The next acceptable offer wins.
    DeflateNegotiation n = negotiateDeflate(
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus, "
        "permessage-deflate; client_max_window_bits=8",
        cfg);
    ASSERT_TRUE(n.accepted);
    EXPECT_EQ(n.responseHeader, "permessage-deflate; client_max_window_bits=8");
    EXPECT_EQ(n.params.clientMaxWindowBits, 8);
}

TEST(WsDeflateNegotiation, MakesCoders) {
    DeflateConfig cfg;
    DeflateNegotiation n = negotiateDeflate("permessage-deflate; server_max_window_bits=9", cfg);
    ASSERT_TRUE(n.accepted);
    auto d = makeServerDeflater(n.params, cfg.deflate);
    auto i = makeServerInflater(n.params);
    ASSERT_TRUE(d && i);
    std::string c;
    ASSERT_TRUE(d->deflateMessage(std::string(5000, 'q') + "tail", c));
    Inflater client(9, false);  // the client's view: server window 9
    std::string p;
    ASSERT_EQ(client.inflateMessage(c, p, 0), InflateStatus::Ok);
    EXPECT_EQ(p, std::string(5000, 'q') + "tail");
}

TEST(WsMeta, Prefix) {
    std::string out;
    ASSERT_TRUE(appendMetaPrefix(out, "1795678078:0", "text/plain"));
    EXPECT_EQ(out, "id: 1795678078:0\ncontent-type: text/plain\n\n");
    EXPECT_EQ(metaPrefixSize("1795678078:0", "text/plain"), out.size());
    out.clear();
    ASSERT_TRUE(appendMetaPrefix(out, "1:[0],-", ""));
    EXPECT_EQ(out, "id: 1:[0],-\n\n");
    EXPECT_EQ(metaPrefixSize("1:[0],-", ""), out.size());
    char buf[64];
    size_t n = writeMetaPrefix(buf, "", "");
    EXPECT_EQ(std::string(buf, n), "id: \n\n");
}
