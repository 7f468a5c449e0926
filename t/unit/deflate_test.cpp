#include "pubsub/codec/deflate.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

using namespace pubsub::ws;

namespace {

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) {
        s.push_back(static_cast<char>(c));
    }
    return s;
}

std::string randomBytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s) {
        c = static_cast<char>(rng() & 0xFF);
    }
    return s;
}

std::string textish(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "channel ", "msg "};
    std::string s;
    while (s.size() < n) {
        s += words[rng() % 6];
    }
    s.resize(n);
    return s;
}

}  // namespace

// RFC 7692 7.2.3.1 and 7.2.3.2.
TEST(Deflate, RfcHelloExamples) {
    Deflater d(DeflateOptions{}, false);
    std::string out;
    ASSERT_TRUE(d.deflateMessage("Hello", out));
    EXPECT_EQ(out, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
    out.clear();
    ASSERT_TRUE(d.deflateMessage("Hello", out));  // context takeover
    EXPECT_EQ(out, bytes({0xf2, 0x00, 0x11, 0x00, 0x00}));

    Inflater inf(15, false);
    std::string plain;
    ASSERT_EQ(inf.inflateMessage(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), plain, 0),
              InflateStatus::Ok);
    EXPECT_EQ(plain, "Hello");
    plain.clear();
    ASSERT_EQ(inf.inflateMessage(bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), plain, 0),
              InflateStatus::Ok);
    EXPECT_EQ(plain, "Hello");
}

TEST(Deflate, RfcOtherExamples) {
    struct Case {
        std::string in;
        std::string want;
    } cases[] = {
        // 7.2.3.3 stored block
        {bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}), "Hello"},
        // 7.2.3.4 BFINAL=1
        {bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}), "Hello"},
        // 7.2.3.5 two blocks
        {bytes({0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}),
         "Hello"},
        // 7.2.3.6 empty
        {bytes({0x00}), ""},
    };
    for (const Case& c : cases) {
        for (bool noCtx : {false, true}) {
            Inflater inf(15, noCtx);
            for (int round = 0; round < 2; ++round) {  // the inflater stays usable
                std::string out;
                ASSERT_EQ(inf.inflateMessage(c.in, out, 0), InflateStatus::Ok);
                EXPECT_EQ(out, c.want);
            }
        }
    }
}

TEST(Deflate, BfinalKeepsContext) {
    // After a BFINAL block the window survives for the next message.
    Inflater inf(15, false);
    std::string out;
    ASSERT_EQ(inf.inflateMessage(bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}), out, 0),
              InflateStatus::Ok);
    out.clear();
    ASSERT_EQ(inf.inflateMessage(bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), out, 0), InflateStatus::Ok);
    EXPECT_EQ(out, "Hello");
}

TEST(Deflate, EmptyMessage) {
    for (bool noCtx : {false, true}) {
        Deflater d(DeflateOptions{}, noCtx);
        Inflater inf(15, noCtx);
        for (const char* m : {"", "abc", "", "", "abcabc", ""}) {
            std::string c;
            ASSERT_TRUE(d.deflateMessage(m, c));
            if (*m == '\0') {
                EXPECT_EQ(c, std::string(1, '\0'));
            }
            std::string p;
            ASSERT_EQ(inf.inflateMessage(c, p, 0), InflateStatus::Ok);
            EXPECT_EQ(p, m);
        }
    }
}

TEST(Deflate, RoundTripsAllModes) {
    for (int bits : {9, 10, 12, 15}) {
        for (bool noCtx : {false, true}) {
            DeflateOptions o;
            o.windowBits = bits;
            Deflater d(o, noCtx);
            Inflater inf(bits, noCtx);
            for (uint32_t i = 0; i < 8; ++i) {
                std::string m = (i % 2) ? randomBytes(1000 + i * 3000, i) : textish(70000, i);
                std::string c;
                ASSERT_TRUE(d.deflateMessage(m, c));
                if (i % 2 == 0) {
                    EXPECT_LT(c.size(), m.size() / 3);
                }
                std::string p;
                ASSERT_EQ(inf.inflateMessage(c, p, 0), InflateStatus::Ok) << bits << noCtx << i;
                EXPECT_EQ(p, m);
            }
        }
    }
}

TEST(Deflate, ContextTakeoverCompressesRepeatsBetter) {
    std::string m = textish(2000, 7);
    Deflater ctx(DeflateOptions{}, false);
    Deflater fresh(DeflateOptions{}, true);
    std::string a, b;
    ASSERT_TRUE(ctx.deflateMessage(m, a));
    a.clear();
    ASSERT_TRUE(ctx.deflateMessage(m, a));
    ASSERT_TRUE(fresh.deflateMessage(m, b));
    b.clear();
    ASSERT_TRUE(fresh.deflateMessage(m, b));
    EXPECT_LT(a.size() * 4, b.size());
}

TEST(Deflate, InflateFedInPieces) {
    std::string m = textish(50000, 3);
    Deflater d(DeflateOptions{}, false);
    std::string c;
    ASSERT_TRUE(d.deflateMessage(m, c));
    for (size_t step : {1u, 7u, 4096u}) {
        Inflater inf(15, true);
        std::string p;
        for (size_t i = 0; i < c.size(); i += step) {
            size_t n = std::min(step, c.size() - i);
            ASSERT_EQ(inf.feed(reinterpret_cast<const uint8_t*>(c.data()) + i, n, p, 0),
                      InflateStatus::Ok);
        }
        ASSERT_EQ(inf.finish(p, 0), InflateStatus::Ok);
        EXPECT_EQ(p, m);
    }
}

TEST(Deflate, PartsEqualConcatenation) {
    Deflater d1(DeflateOptions{}, false);
    Deflater d2(DeflateOptions{}, false);
    std::string_view parts[] = {"id: 1:0\ncontent-type: text/plain\n\n", "", "payload payload"};
    std::string a, b;
    ASSERT_TRUE(d1.deflateMessage(parts, 3, a));
    ASSERT_TRUE(d2.deflateMessage(std::string(parts[0]) + std::string(parts[2]), b));
    EXPECT_EQ(a, b);
}

TEST(Deflate, CapacityStaysWithinALimitThatIsNotAPowerOfTwo) {
    // Found by t/fuzz/inflate_fuzz: std::string::reserve() may round a request
    // up to twice the old capacity, past maxOut.
    std::string c;
    ASSERT_TRUE(deflateNoContext(std::string(200000, 'x'), c));
    Inflater inf(15, false);
    std::string out;
    EXPECT_EQ(inf.inflateMessage(c, out, 100000), InflateStatus::TooBig);
    EXPECT_LE(out.size(), 100000u);
    EXPECT_LE(out.capacity(), 100000u);
    Inflater inf2(15, false);
    std::string out2;
    std::string c2;
    ASSERT_TRUE(deflateNoContext(std::string(99999, 'z'), c2));
    EXPECT_EQ(inf2.inflateMessage(c2, out2, 100000), InflateStatus::Ok);
    EXPECT_EQ(out2.size(), 99999u);
    EXPECT_LE(out2.capacity(), 100000u);
}

TEST(Deflate, OutputBoundedByMax) {
    std::string zeros(1 << 20, '\0');  // 1 MiB of zeros deflates to ~1 KiB
    std::string c;
    ASSERT_TRUE(deflateNoContext(zeros, c));
    EXPECT_LT(c.size(), 2048u);
    Inflater inf(15, false);
    std::string out;
    EXPECT_EQ(inf.inflateMessage(c, out, 65536), InflateStatus::TooBig);
    EXPECT_LE(out.size(), 65536u);
    EXPECT_LE(out.capacity(), 65536u + 64);
    // Exactly at the limit is fine.
    Inflater inf2(15, false);
    std::string out2;
    std::string c2;
    ASSERT_TRUE(deflateNoContext(std::string(65536, 'x'), c2));
    EXPECT_EQ(inf2.inflateMessage(c2, out2, 65536), InflateStatus::Ok);
    EXPECT_EQ(out2.size(), 65536u);
}

TEST(Deflate, CorruptInput) {
    Inflater inf(15, false);
    std::string out;
    // BTYPE=11 is reserved.
    EXPECT_EQ(inf.inflateMessage(bytes({0x07, 0x00}), out, 0), InflateStatus::Corrupt);
    EXPECT_EQ(inf.inflateMessage("x", out, 0), InflateStatus::Corrupt);  // sticky
    Inflater inf2(15, false);
    // Stored block whose NLEN does not match LEN.
    EXPECT_EQ(inf2.inflateMessage(bytes({0x00, 0x05, 0x00, 0x00, 0x00}), out, 0),
              InflateStatus::Corrupt);
    // A distance reaching before the start of the (empty) window.
    Inflater inf3(15, true);
    std::string ref;
    Deflater ctx(DeflateOptions{}, false);
    ASSERT_TRUE(ctx.deflateMessage("Hello", ref));
    ref.clear();
    ASSERT_TRUE(ctx.deflateMessage("Hello", ref));  // refers to the first message
    EXPECT_EQ(inf3.inflateMessage(ref, out, 0), InflateStatus::Corrupt);
}

// The publish-time shared copy works on a connection that already used
// context takeover, provided the connection's deflater resets afterwards.
TEST(Deflate, SharedPredeflatedCopy) {
    DeflateOptions shared;
    shared.windowBits = 10;
    std::string pre;
    ASSERT_TRUE(deflateNoContext("shared message shared message", pre, shared));

    DeflateOptions connOpts;
    connOpts.windowBits = 12;
    Deflater conn(connOpts, false);  // context takeover
    Inflater client(12, false);      // client's inflater, window = server_max_window_bits
    std::string c, p;
    ASSERT_TRUE(conn.deflateMessage("private one", c));
    ASSERT_EQ(client.inflateMessage(c, p, 0), InflateStatus::Ok);
    EXPECT_EQ(p, "private one");

    p.clear();
    ASSERT_EQ(client.inflateMessage(pre, p, 0), InflateStatus::Ok);
    EXPECT_EQ(p, "shared message shared message");
    conn.resetContext();

    c.clear();
    p.clear();
    ASSERT_TRUE(conn.deflateMessage("private one again", c));
    ASSERT_EQ(client.inflateMessage(c, p, 0), InflateStatus::Ok);
    EXPECT_EQ(p, "private one again");

    // ws+meta prefix deflated separately, then the shared payload.
    std::string framed;
    ASSERT_TRUE(deflateNoContext("id: 5:0\n\n", framed, shared, true));
    framed += pre;
    p.clear();
    ASSERT_EQ(client.inflateMessage(framed, p, 0), InflateStatus::Ok);
    EXPECT_EQ(p, "id: 5:0\n\nshared message shared message");
}
