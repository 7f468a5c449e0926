#include "pubsub/codec/websocket.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

using namespace pubsub::ws;

namespace {

const uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) {
        s.push_back(static_cast<char>(c));
    }
    return s;
}

struct Ev {
    EventType type;
    Opcode opcode;
    bool compressed;
    std::string payload;
    uint16_t code;
    std::string reason;
    bool operator==(const Ev& o) const {
        return type == o.type && opcode == o.opcode && compressed == o.compressed &&
               payload == o.payload && code == o.code && reason == o.reason;
    }
};

// Feeds `wire` in pieces of `step` bytes; collects events until an error.
std::vector<Ev> parse(FrameParser& p, const std::string& wire, size_t step = SIZE_MAX) {
    std::vector<Ev> evs;
    Event ev;
    const uint8_t* d = reinterpret_cast<const uint8_t*>(wire.data());
    size_t left = wire.size();
    while (left > 0) {
        size_t n = std::min(step, left);
        size_t chunkLeft = n;
        while (chunkLeft > 0) {
            size_t used = p.feed(d, chunkLeft, ev);
            EXPECT_LE(used, chunkLeft);
            d += used;
            chunkLeft -= used;
            left -= used;
            if (ev.type == EventType::None) {
                EXPECT_EQ(chunkLeft, 0u);
                break;
            }
            evs.push_back(
                {ev.type, ev.opcode, ev.compressed, ev.payload, ev.code, std::string(ev.reason)});
            if (ev.type == EventType::Error) {
                return evs;
            }
        }
    }
    return evs;
}

std::vector<Ev> parseServer(const std::string& wire, size_t step = SIZE_MAX, size_t maxSize = 65536,
                            bool deflate = false) {
    ParserConfig cfg;
    cfg.maxMessageSize = maxSize;
    cfg.deflate = deflate;
    FrameParser p(cfg);
    return parse(p, wire, step);
}

std::vector<Ev> parseClientSide(const std::string& wire, size_t step = SIZE_MAX,
                                bool deflate = false) {
    ParserConfig cfg;
    cfg.expectMasked = false;
    cfg.deflate = deflate;
    FrameParser p(cfg);
    return parse(p, wire, step);
}

std::string masked(Opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
    std::string out;
    EXPECT_TRUE(appendMaskedFrame(out, op, payload, kMask, rsv1, fin));
    return out;
}

// Raw masked frame with arbitrary first byte (for bad RSV / opcode bits).
std::string rawMasked(uint8_t b0, std::string_view payload) {
    std::string out;
    EXPECT_TRUE(appendMaskedFrame(out, Opcode::Text, payload, kMask));
    out[0] = static_cast<char>(b0);
    return out;
}

Ev errorOf(const std::vector<Ev>& evs) {
    if (evs.empty() || evs.back().type != EventType::Error) {
        ADD_FAILURE() << "no error";
        return Ev{EventType::None, Opcode::Continuation, false, "", 0, ""};
    }
    return evs.back();
}

uint16_t errorCode(const std::string& wire, size_t maxSize = 65536, bool deflate = false) {
    Ev err = errorOf(parseServer(wire, SIZE_MAX, maxSize, deflate));
    EXPECT_FALSE(err.reason.empty());
    uint16_t whole = err.code;
    uint16_t bytewise = errorOf(parseServer(wire, 1, maxSize, deflate)).code;
    EXPECT_EQ(whole, bytewise);
    return whole;
}

std::string closePayload(uint16_t code, std::string_view reason) {
    std::string s = bytes({code >> 8, code & 0xFF});
    s += reason;
    return s;
}

}  // namespace

// ------------------------------------------------------------ RFC 6455 5.7

TEST(WsParser, RfcSingleFrameUnmaskedText) {
    std::string wire = bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
    auto evs = parseClientSide(wire);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Message);
    EXPECT_EQ(evs[0].opcode, Opcode::Text);
    EXPECT_EQ(evs[0].payload, "Hello");
    std::string enc;
    ASSERT_TRUE(appendFrame(enc, Opcode::Text, "Hello"));
    EXPECT_EQ(enc, wire);
    // A server rejects it: client frames must be masked.
    EXPECT_EQ(errorCode(wire), close_code::kProtocolError);
}

TEST(WsParser, RfcSingleFrameMaskedText) {
    std::string wire = bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
    EXPECT_EQ(masked(Opcode::Text, "Hello"), wire);
    for (size_t step : {1u, 2u, 3u, 100u}) {
        auto evs = parseServer(wire, step);
        ASSERT_EQ(evs.size(), 1u);
        EXPECT_EQ(evs[0].payload, "Hello");
        EXPECT_EQ(evs[0].opcode, Opcode::Text);
        EXPECT_FALSE(evs[0].compressed);
    }
    // A client rejects masked server frames.
    auto evs = parseClientSide(wire);
    EXPECT_EQ(errorOf(evs).code, close_code::kProtocolError);
}

TEST(WsParser, RfcFragmentedUnmaskedText) {
    std::string wire = bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f});
    auto evs = parseClientSide(wire);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].payload, "Hello");
    std::string enc;
    ASSERT_TRUE(appendFrame(enc, Opcode::Text, "Hel", false, false));
    ASSERT_TRUE(appendFrame(enc, Opcode::Continuation, "lo"));
    EXPECT_EQ(enc, wire);
}

TEST(WsParser, RfcPingPong) {
    std::string ping = bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
    uint8_t buf[kMaxControlFrameSize];
    size_t n = writeControlFrame(buf, Opcode::Ping, "Hello");
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), n), ping);
    auto evs = parseClientSide(ping);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Ping);
    EXPECT_EQ(evs[0].payload, "Hello");

    std::string pong = bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
    EXPECT_EQ(masked(Opcode::Pong, "Hello"), pong);
    evs = parseServer(pong, 1);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Pong);
    EXPECT_EQ(evs[0].payload, "Hello");
}

TEST(WsParser, Rfc256ByteAnd64KiBBinary) {
    std::string p256(256, '\0');
    for (size_t i = 0; i < p256.size(); ++i) {
        p256[i] = static_cast<char>(i);
    }
    uint8_t hdr[kMaxServerHeaderSize];
    size_t n = writeFrameHeader(hdr, Opcode::Binary, 256);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(hdr), n), bytes({0x82, 0x7E, 0x01, 0x00}));
    n = writeFrameHeader(hdr, Opcode::Binary, 65536);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(hdr), n),
              bytes({0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));

    std::string p64k(65536, 'z');
    for (const std::string* p : {&p256, &p64k}) {
        std::string wire = masked(Opcode::Binary, *p);
        auto evs = parseServer(wire, 1000, 65536);
        ASSERT_EQ(evs.size(), 1u);
        EXPECT_EQ(evs[0].opcode, Opcode::Binary);
        EXPECT_EQ(evs[0].payload, *p);
        std::string server;
        ASSERT_TRUE(appendFrame(server, Opcode::Binary, *p));
        evs = parseClientSide(server, 777);
        ASSERT_EQ(evs.size(), 1u);
        EXPECT_EQ(evs[0].payload, *p);
    }
}

TEST(WsEncoder, HeaderLengthBoundaries) {
    uint8_t hdr[kMaxServerHeaderSize];
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Text, 0), 2u);
    EXPECT_EQ(hdr[0], 0x81);
    EXPECT_EQ(hdr[1], 0x00);
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Text, 125), 2u);
    EXPECT_EQ(hdr[1], 125);
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Text, 126), 4u);
    EXPECT_EQ(hdr[1], 126);
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Text, 65535), 4u);
    EXPECT_EQ(hdr[2], 0xFF);
    EXPECT_EQ(hdr[3], 0xFF);
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Binary, 65536, false, true), 10u);
    EXPECT_EQ(hdr[0], 0x42);  // no FIN, RSV1, binary
    EXPECT_EQ(hdr[1], 127);
    EXPECT_EQ(writeFrameHeader(hdr, Opcode::Text, 0x123456789ULL), 10u);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(hdr + 2), 8),
              bytes({0, 0, 0, 0x01, 0x23, 0x45, 0x67, 0x89}));
    uint8_t mhdr[kMaxClientHeaderSize];
    EXPECT_EQ(writeMaskedFrameHeader(mhdr, Opcode::Text, 70000, kMask), 14u);
    uint8_t ctrl[kMaxControlFrameSize];
    EXPECT_EQ(writeControlFrame(ctrl, Opcode::Ping, std::string(126, 'x')), 0u);
    EXPECT_EQ(writeControlFrame(ctrl, Opcode::Ping, std::string(125, 'x')), 127u);
    EXPECT_EQ(writeControlFrame(ctrl, Opcode::Pong, ""), 2u);
}

TEST(WsEncoder, CloseFrames) {
    uint8_t buf[kMaxControlFrameSize];
    size_t n = writeCloseFrame(buf, 1000, "410 Gone");
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), n),
              bytes({0x88, 0x0A, 0x03, 0xE8}) + "410 Gone");
    n = writeCloseFrame(buf, 0, "ignored");
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), n), bytes({0x88, 0x00}));

    // Long reason: cut to 123 bytes at a character boundary (2-byte chars).
    std::string reason;
    for (int i = 0; i < 100; ++i) {
        reason += "\xc3\xa9";  // é
    }
    n = writeCloseFrame(buf, 1008, reason);
    EXPECT_EQ(n, 2u + 2u + 122u);
    auto evs = parseClientSide(std::string(reinterpret_cast<char*>(buf), n));
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Close);
    EXPECT_EQ(evs[0].code, 1008);
    EXPECT_EQ(evs[0].payload, reason.substr(0, 122));

    std::string s;
    ASSERT_TRUE(appendCloseFrame(s, 1009, std::string(123, 'a')));
    EXPECT_EQ(s.size(), 127u);
    s.clear();
    ASSERT_TRUE(appendCloseFrame(s, 1009, std::string(200, 'a')));
    EXPECT_EQ(s.size(), 127u);
}

// ------------------------------------------------------------ events

TEST(WsParser, ControlFramesBetweenFragments) {
    std::string wire = masked(Opcode::Text, "Hel", false) + masked(Opcode::Ping, "p1") +
                       masked(Opcode::Continuation, "l", false) + masked(Opcode::Pong, "") +
                       masked(Opcode::Continuation, "o") + masked(Opcode::Binary, "\x01\x02") +
                       masked(Opcode::Close, closePayload(1000, "bye"));
    std::vector<Ev> want = {
        {EventType::Ping, Opcode::Ping, false, "p1", 0, ""},
        {EventType::Pong, Opcode::Pong, false, "", 0, ""},
        {EventType::Message, Opcode::Text, false, "Hello", 0, ""},
        {EventType::Message, Opcode::Binary, false, "\x01\x02", 0, ""},
        {EventType::Close, Opcode::Close, false, "bye", 1000, ""},
    };
    for (size_t step = 1; step <= wire.size(); ++step) {
        auto evs = parseServer(wire, step);
        ASSERT_EQ(evs.size(), want.size()) << "step " << step;
        for (size_t i = 0; i < want.size(); ++i) {
            EXPECT_TRUE(evs[i] == want[i]) << "step " << step << " event " << i;
        }
    }
}

TEST(WsParser, EmptyMessagesAndFragments) {
    std::string wire = masked(Opcode::Text, "") + masked(Opcode::Binary, "", false) +
                       masked(Opcode::Continuation, "", false) + masked(Opcode::Continuation, "");
    auto evs = parseServer(wire, 1);
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_EQ(evs[0].opcode, Opcode::Text);
    EXPECT_EQ(evs[0].payload, "");
    EXPECT_EQ(evs[1].opcode, Opcode::Binary);
    EXPECT_EQ(evs[1].payload, "");
}

TEST(WsParser, CloseVariants) {
    auto evs = parseServer(masked(Opcode::Close, ""));
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Close);
    EXPECT_EQ(evs[0].code, close_code::kNoStatus);
    for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                          3000, 3999, 4000, 4999}) {
        evs = parseServer(masked(Opcode::Close, closePayload(code, "")));
        ASSERT_EQ(evs.size(), 1u) << code;
        EXPECT_EQ(evs[0].type, EventType::Close) << code;
        EXPECT_EQ(evs[0].code, code);
    }
    // Reason with multibyte UTF-8 split over the wire.
    evs = parseServer(masked(Opcode::Close, closePayload(1000, "\xe2\x82\xac ok")), 1);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].payload, "\xe2\x82\xac ok");
}

TEST(WsParser, NothingAfterClose) {
    ParserConfig cfg;
    FrameParser p(cfg);
    std::string wire = masked(Opcode::Close, closePayload(1000, "")) + masked(Opcode::Text, "x");
    Event ev;
    size_t n = p.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), ev);
    EXPECT_EQ(ev.type, EventType::Close);
    EXPECT_LT(n, wire.size());
    size_t m = p.feed(reinterpret_cast<const uint8_t*>(wire.data()) + n, wire.size() - n, ev);
    EXPECT_EQ(m, wire.size() - n);
    EXPECT_EQ(ev.type, EventType::None);
    EXPECT_TRUE(p.closed());
}

// ------------------------------------------------------------ errors

TEST(WsParserErrors, Masking) {
    std::string unmasked;
    ASSERT_TRUE(appendFrame(unmasked, Opcode::Binary, "abc"));
    EXPECT_EQ(errorCode(unmasked), close_code::kProtocolError);
}

TEST(WsParserErrors, ReservedBits) {
    EXPECT_EQ(errorCode(rawMasked(0x81 | 0x20, "a")), close_code::kProtocolError);  // RSV2
    EXPECT_EQ(errorCode(rawMasked(0x81 | 0x10, "a")), close_code::kProtocolError);  // RSV3
    // RSV1 without deflate.
    EXPECT_EQ(errorCode(rawMasked(0x81 | 0x40, "a")), close_code::kProtocolError);
    // RSV1 with deflate but on a continuation frame.
    std::string c;
    ASSERT_TRUE(deflateNoContext("Hello", c));
    std::string wire = masked(Opcode::Text, c.substr(0, 2), false, true) +
                       masked(Opcode::Continuation, c.substr(2), true, true);
    EXPECT_EQ(errorCode(wire, 65536, true), close_code::kProtocolError);
    // RSV1 on a control frame.
    EXPECT_EQ(errorCode(masked(Opcode::Ping, "x", true, true), 65536, true),
              close_code::kProtocolError);
}

TEST(WsParserErrors, UnknownOpcodes) {
    for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
        EXPECT_EQ(errorCode(rawMasked(0x80 | op, "")), close_code::kProtocolError) << int(op);
    }
}

TEST(WsParserErrors, BadControlFrames) {
    // 126-byte ping (16-bit length form).
    EXPECT_EQ(errorCode(masked(Opcode::Ping, std::string(126, 'x'))), close_code::kProtocolError);
    EXPECT_EQ(errorCode(masked(Opcode::Close, closePayload(1000, std::string(124, 'x')))),
              close_code::kProtocolError);
    // Fragmented ping.
    EXPECT_EQ(errorCode(masked(Opcode::Ping, "x", false)), close_code::kProtocolError);
    // Close of 1 byte.
    EXPECT_EQ(errorCode(masked(Opcode::Close, "\x03")), close_code::kProtocolError);
    // Invalid close codes.
    for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
        EXPECT_EQ(errorCode(masked(Opcode::Close, closePayload(code, ""))),
                  close_code::kProtocolError)
            << code;
    }
    // Close reason not UTF-8.
    EXPECT_EQ(errorCode(masked(Opcode::Close, closePayload(1000, "\xce\xba\xff"))),
              close_code::kInvalidPayload);
    EXPECT_EQ(errorCode(masked(Opcode::Close, closePayload(1000, "\xce"))),
              close_code::kInvalidPayload);
}

TEST(WsParserErrors, FragmentationOrder) {
    EXPECT_EQ(errorCode(masked(Opcode::Continuation, "x")), close_code::kProtocolError);
    EXPECT_EQ(errorCode(masked(Opcode::Text, "a", false) + masked(Opcode::Text, "b")),
              close_code::kProtocolError);
    EXPECT_EQ(errorCode(masked(Opcode::Binary, "a", false) + masked(Opcode::Ping, "") +
                        masked(Opcode::Binary, "b")),
              close_code::kProtocolError);
    // Continuation after a finished message.
    EXPECT_EQ(errorCode(masked(Opcode::Text, "a") + masked(Opcode::Continuation, "b")),
              close_code::kProtocolError);
}

TEST(WsParserErrors, LengthWithTopBitSet) {
    std::string wire = bytes({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4});
    auto evs = parseServer(wire, SIZE_MAX, 0);  // even with no size limit
    EXPECT_EQ(errorOf(evs).code, close_code::kProtocolError);
    EXPECT_EQ(errorOf(evs).reason, "64-bit payload length with top bit set");
}

TEST(WsParserErrors, InvalidUtf8Text) {
    EXPECT_EQ(errorCode(masked(Opcode::Text, "\xc0\xaf")), close_code::kInvalidPayload);
    EXPECT_EQ(errorCode(masked(Opcode::Text, "ab\xed\xa0\x80")), close_code::kInvalidPayload);
    EXPECT_EQ(errorCode(masked(Opcode::Text, "\xf4\x90\x80\x80")), close_code::kInvalidPayload);
    // Truncated at the end of the message.
    EXPECT_EQ(errorCode(masked(Opcode::Text, "ab\xe2\x82")), close_code::kInvalidPayload);
    EXPECT_EQ(errorCode(masked(Opcode::Text, "ab\xe2", false) + masked(Opcode::Continuation, "")),
              close_code::kInvalidPayload);
    // Binary messages are not checked.
    auto evs = parseServer(masked(Opcode::Binary, "\xff\xfe"));
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Message);
}

TEST(WsParserErrors, Utf8SplitAcrossFragmentsIsValid) {
    std::string wire = masked(Opcode::Text, "\xf0\x9f", false) +
                       masked(Opcode::Continuation, "\x98", false) +
                       masked(Opcode::Continuation, "\x80!");
    auto evs = parseServer(wire, 1);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].payload, "\xf0\x9f\x98\x80!");
}

TEST(WsParserErrors, Utf8FailsFast) {
    // The error comes with the first fragment, before the message is over.
    ParserConfig cfg;
    FrameParser p(cfg);
    std::string wire = masked(Opcode::Text, "ok\xf4\x90", false);
    Event ev;
    p.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), ev);
    EXPECT_EQ(ev.type, EventType::Error);
    EXPECT_EQ(ev.code, close_code::kInvalidPayload);
    // Sticky: nothing consumed, same error again.
    EXPECT_EQ(p.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), ev), 0u);
    EXPECT_EQ(ev.type, EventType::Error);
    EXPECT_EQ(ev.code, close_code::kInvalidPayload);
    EXPECT_TRUE(p.failed());
}

TEST(WsParserErrors, MessageTooBig) {
    // Single frame over the limit: rejected on the header alone.
    EXPECT_EQ(errorCode(masked(Opcode::Binary, std::string(1001, 'x')), 1000),
              close_code::kMessageTooBig);
    // Exactly at the limit is fine.
    auto evs = parseServer(masked(Opcode::Binary, std::string(1000, 'x')), 1, 1000);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].type, EventType::Message);
    // Over the limit across fragments.
    std::string wire = masked(Opcode::Text, std::string(600, 'a'), false) +
                       masked(Opcode::Continuation, std::string(401, 'b'));
    EXPECT_EQ(errorCode(wire, 1000), close_code::kMessageTooBig);
}

TEST(WsParserErrors, OversizeNeverBuffered) {
    // A header announcing 1 GiB: refused after the header bytes, nothing allocated.
    ParserConfig cfg;
    cfg.maxMessageSize = 65536;
    FrameParser p(cfg);
    uint8_t hdr[kMaxClientHeaderSize];
    size_t n = writeMaskedFrameHeader(hdr, Opcode::Binary, 1ULL << 30, kMask);
    Event ev;
    p.feed(hdr, n, ev);
    EXPECT_EQ(ev.type, EventType::Error);
    EXPECT_EQ(ev.code, close_code::kMessageTooBig);
    EXPECT_LE(p.bufferedBytes(), 64u);  // small-string storage only

    // Fragments streaming towards the limit never grow the buffer past it.
    FrameParser q(cfg);
    std::string frag = masked(Opcode::Continuation, std::string(4000, 'y'), false);
    std::string first = masked(Opcode::Binary, std::string(4000, 'y'), false);
    q.feed(reinterpret_cast<const uint8_t*>(first.data()), first.size(), ev);
    ASSERT_EQ(ev.type, EventType::None);
    for (int i = 0; i < 100 && !q.failed(); ++i) {
        q.feed(reinterpret_cast<const uint8_t*>(frag.data()), frag.size(), ev);
        EXPECT_LE(q.bufferedBytes(), cfg.maxMessageSize + 32);
    }
    EXPECT_TRUE(q.failed());
    EXPECT_EQ(ev.code, close_code::kMessageTooBig);
    EXPECT_LE(q.bufferedBytes(), 64u);  // released on failure
}

TEST(FrameParser, BufferStaysWithinALimitThatIsNotAPowerOfTwo) {
    // Found by t/fuzz/ws_frame_fuzz: std::string::reserve() rounds a request
    // below twice the old capacity up to twice it, so a 100000-byte limit let
    // the buffer reach 131072 bytes.
    ParserConfig cfg;
    cfg.maxMessageSize = 100000;
    FrameParser p(cfg);
    Event ev;
    std::string first = masked(Opcode::Binary, std::string(3000, 'y'), false);
    p.feed(reinterpret_cast<const uint8_t*>(first.data()), first.size(), ev);
    std::string frag = masked(Opcode::Continuation, std::string(3000, 'y'), false);
    for (int i = 0; i < 32; ++i) {
        p.feed(reinterpret_cast<const uint8_t*>(frag.data()), frag.size(), ev);
        ASSERT_NE(ev.type, EventType::Error);
        EXPECT_LE(p.bufferedBytes(), cfg.maxMessageSize + 32);
    }
    std::string last = masked(Opcode::Continuation, std::string(1000, 'y'), true);
    p.feed(reinterpret_cast<const uint8_t*>(last.data()), last.size(), ev);
    ASSERT_EQ(ev.type, EventType::Message);
    EXPECT_EQ(ev.payload.size(), 100000u);
    EXPECT_LE(ev.payload.capacity(), 100000u + 32);
}

// ------------------------------------------------------------ permessage-deflate

TEST(WsDeflateFrames, Rfc7692Examples) {
    struct Case {
        std::string wire;
        std::vector<std::string> messages;
    } cases[] = {
        {bytes({0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), {"Hello"}},
        {bytes({0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00}), {"Hello"}},
        {bytes({0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
                0x00, 0x00}),
         {"Hello", "Hello"}},
        {bytes({0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}),
         {"Hello"}},
        {bytes({0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}), {"Hello"}},
        {bytes({0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
                0x00}),
         {"Hello"}},
        {bytes({0xc1, 0x01, 0x00}), {""}},
    };
    for (const Case& c : cases) {
        for (size_t step : {1u, 2u, 5u, 1000u}) {
            auto evs = parseClientSide(c.wire, step, true);
            ASSERT_EQ(evs.size(), c.messages.size());
            for (size_t i = 0; i < evs.size(); ++i) {
                EXPECT_EQ(evs[i].type, EventType::Message);
                EXPECT_TRUE(evs[i].compressed);
                EXPECT_EQ(evs[i].payload, c.messages[i]);
            }
        }
    }
}

TEST(WsDeflateFrames, ClientToServerRoundTrip) {
    // A client compressing with context takeover; the server inflating.
    Deflater client(DeflateOptions{}, false);
    std::string wire;
    std::vector<std::string> msgs = {"first message", "first message again", "",
                                     std::string(20000, 'r') + "\xc3\xa9"};
    for (const std::string& m : msgs) {
        std::string c;
        ASSERT_TRUE(client.deflateMessage(m, c));
        // Fragment the compressed payload in two.
        size_t half = c.size() / 2;
        wire += masked(Opcode::Text, c.substr(0, half), false, true);
        wire += masked(Opcode::Ping, "mid");
        wire += masked(Opcode::Continuation, c.substr(half));
    }
    wire += masked(Opcode::Binary, "plain");  // uncompressed message in between is fine
    DeflateParams params;
    for (size_t step : {1u, 3u, 64u, 100000u}) {
        FrameParser p(ParserConfig::forServer(65536, &params));
        auto evs = parse(p, wire, step);
        ASSERT_EQ(evs.size(), msgs.size() * 2 + 1) << step;
        for (size_t i = 0; i < msgs.size(); ++i) {
            EXPECT_EQ(evs[2 * i].type, EventType::Ping);
            EXPECT_EQ(evs[2 * i + 1].type, EventType::Message);
            EXPECT_TRUE(evs[2 * i + 1].compressed);
            EXPECT_EQ(evs[2 * i + 1].payload, msgs[i]);
        }
        EXPECT_FALSE(evs.back().compressed);
        EXPECT_EQ(evs.back().payload, "plain");
    }
}

TEST(WsDeflateFrames, ServerToClientEncoding) {
    DeflateParams params;
    params.serverNoContextTakeover = true;
    auto d = makeServerDeflater(params, DeflateOptions{});
    ASSERT_TRUE(d);
    std::string wire;
    for (int i = 0; i < 3; ++i) {
        std::string c;
        ASSERT_TRUE(d->deflateMessage("Hello", c));
        EXPECT_EQ(c, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
        ASSERT_TRUE(appendFrame(wire, Opcode::Text, c, true));
    }
    auto evs = parseClientSide(wire, 1, true);
    ASSERT_EQ(evs.size(), 3u);
    for (const Ev& e : evs) {
        EXPECT_EQ(e.payload, "Hello");
    }
}

TEST(WsDeflateFrames, Errors) {
    // Compressed bomb: tiny on the wire, over the limit once inflated.
    std::string c;
    ASSERT_TRUE(deflateNoContext(std::string(1 << 20, 'a'), c));
    ASSERT_LT(c.size(), 4096u);
    std::string wire = masked(Opcode::Binary, c, true, true);
    EXPECT_EQ(errorCode(wire, 65536, true), close_code::kMessageTooBig);
    {
        DeflateParams params;
        FrameParser p(ParserConfig::forServer(65536, &params));
        Event ev;
        size_t off = 0;
        while (off < wire.size() && ev.type != EventType::Error) {
            off += p.feed(reinterpret_cast<const uint8_t*>(wire.data()) + off,
                          std::min<size_t>(100, wire.size() - off), ev);
            EXPECT_LE(p.bufferedBytes(), 65536u + 32);
        }
        EXPECT_EQ(ev.code, close_code::kMessageTooBig);
    }
    // Wire size over the limit even if compressed.
    std::string rnd;
    for (int i = 0; i < 3000; ++i) {
        rnd.push_back(static_cast<char>((i * 7919) ^ (i >> 3)));
    }
    std::string cr;
    ASSERT_TRUE(deflateNoContext(rnd, cr));
    EXPECT_EQ(errorCode(masked(Opcode::Binary, cr, true, true), 1000, true),
              close_code::kMessageTooBig);
    // Corrupt compressed data.
    EXPECT_EQ(errorCode(masked(Opcode::Text, bytes({0x07, 0x01, 0x02}), true, true), 65536, true),
              close_code::kInvalidPayload);
    // Inflated text that is not UTF-8.
    std::string bad;
    ASSERT_TRUE(deflateNoContext("abc\xff", bad));
    EXPECT_EQ(errorCode(masked(Opcode::Text, bad, true, true), 65536, true),
              close_code::kInvalidPayload);
    std::string trunc;
    ASSERT_TRUE(deflateNoContext("abc\xe2\x82", trunc));
    EXPECT_EQ(errorCode(masked(Opcode::Text, trunc, true, true), 65536, true),
              close_code::kInvalidPayload);
}

TEST(WsParser, RandomStreamSplitAnywhere) {
    // A long mixed stream, fed at many chunk sizes, gives identical events.
    std::mt19937 rng(42);
    Deflater client(DeflateOptions{}, false);
    std::string wire;
    size_t expected = 0;
    for (int i = 0; i < 60; ++i) {
        size_t len = rng() % 300;
        std::string m;
        for (size_t k = 0; k < len; ++k) {
            m.push_back(static_cast<char>('a' + rng() % 26));
        }
        if (i % 7 == 0) {
            m += "\xe2\x82\xac";
        }
        bool compress = (i % 3 == 0);
        std::string payload = m;
        if (compress) {
            payload.clear();
            ASSERT_TRUE(client.deflateMessage(m, payload));
        }
        size_t cut = payload.empty() ? 0 : rng() % payload.size();
        wire += masked(Opcode::Text, payload.substr(0, cut), false, compress);
        if (i % 5 == 0) {
            wire += masked(Opcode::Ping, "k");
            ++expected;
        }
        wire += masked(Opcode::Continuation, payload.substr(cut));
        ++expected;
    }
    DeflateParams params;
    FrameParser ref(ParserConfig::forServer(65536, &params));
    auto want = parse(ref, wire);
    ASSERT_EQ(want.size(), expected);
    for (size_t step : {1u, 2u, 3u, 5u, 8u, 13u, 127u, 4096u}) {
        FrameParser p(ParserConfig::forServer(65536, &params));
        auto got = parse(p, wire, step);
        ASSERT_EQ(got.size(), want.size()) << step;
        for (size_t i = 0; i < got.size(); ++i) {
            EXPECT_TRUE(got[i] == want[i]) << "step " << step << " event " << i;
        }
    }
}

TEST(WsParser, IdleParserHoldsNoMessageBuffer) {
    ParserConfig cfg;
    FrameParser p(cfg);
    std::string wire = masked(Opcode::Binary, std::string(50000, 'm'));
    Event ev;
    size_t n = p.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), ev);
    EXPECT_EQ(n, wire.size());
    ASSERT_EQ(ev.type, EventType::Message);
    EXPECT_EQ(ev.payload.size(), 50000u);
    EXPECT_LE(p.bufferedBytes(), 64u);
    // The next message does not reuse the caller's event buffer either.
    n = p.feed(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), ev);
    EXPECT_LE(p.bufferedBytes(), 64u);
    EXPECT_EQ(ev.payload.size(), 50000u);
}

TEST(WsDeflateFrames, EmptyCompressedPayloadKeepsStreamUsable) {
    // RSV1 frames with no payload bytes at all (also fragmented) are empty
    // messages and leave the context-takeover stream intact.
    Deflater client(DeflateOptions{}, false);
    std::string c1, c2;
    ASSERT_TRUE(client.deflateMessage("Hello", c1));
    ASSERT_TRUE(client.deflateMessage("Hello", c2));
    std::string wire = masked(Opcode::Text, c1, true, true) + masked(Opcode::Text, "", true, true) +
                       masked(Opcode::Binary, "", false, true) + masked(Opcode::Continuation, "") +
                       masked(Opcode::Text, c2, true, true);
    DeflateParams params;
    FrameParser p(ParserConfig::forServer(65536, &params));
    auto evs = parse(p, wire, 1);
    ASSERT_EQ(evs.size(), 4u);
    EXPECT_EQ(evs[0].payload, "Hello");
    EXPECT_EQ(evs[1].payload, "");
    EXPECT_EQ(evs[2].payload, "");
    EXPECT_EQ(evs[2].opcode, Opcode::Binary);
    EXPECT_EQ(evs[3].payload, "Hello");
}

TEST(WsDeflateFrames, SharePredeflatedRule) {
    DeflateParams p;
    p.serverMaxWindowBits = 10;
    EXPECT_TRUE(canSharePredeflated(p, 10));
    EXPECT_TRUE(canSharePredeflated(p, 9));
    EXPECT_FALSE(canSharePredeflated(p, 11));
    p.serverMaxWindowBits = 15;
    EXPECT_TRUE(canSharePredeflated(p, 15));
}

TEST(WsParser, RandomGarbageNeverCrashes) {
    // Random bytes (often starting with a plausible header) under ASan/UBSan:
    // the parser must end in an event, an error or waiting, never crash.
    std::mt19937 rng(7);
    for (int round = 0; round < 3000; ++round) {
        std::string wire;
        size_t len = rng() % 300;
        for (size_t i = 0; i < len; ++i) {
            wire.push_back(static_cast<char>(rng() & 0xFF));
        }
        if (round % 2 == 0 && wire.size() > 2) {
            wire[0] = static_cast<char>((wire[0] & 0xCF) | 0x80);
            wire[1] = static_cast<char>(wire[1] | 0x80);
        }
        DeflateParams params;
        FrameParser p(ParserConfig::forServer(1024, round % 3 == 0 ? &params : nullptr));
        auto evs = parse(p, wire, 1 + rng() % 16);
        for (const Ev& e : evs) {
            if (e.type == EventType::Error) {
                EXPECT_TRUE(e.code == 1002 || e.code == 1007 || e.code == 1009) << e.code;
            }
        }
        EXPECT_LE(p.bufferedBytes(), 1024u + 64);
    }
}
