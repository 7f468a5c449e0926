// pubsub-load: WebSocket client framing (RFC 6455): the accept key check
// (own SHA-1), masked client frames, and the frame reader (7/16/64-bit
// lengths, fragmented messages, ping -> pong, close -> close).
#include <array>
#include <cstring>

#include "engine.h"

namespace load {

namespace {

uint32_t rol(uint32_t v, int s)
{
    return (v << s) | (v >> (32 - s));
}

// SHA-1 (FIPS 180-4), only to check Sec-WebSocket-Accept.
std::array<uint8_t, 20> sha1(const std::string& msg)
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    std::string m = msg;
    uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
    m.push_back(static_cast<char>(0x80));
    while (m.size() % 64 != 56) {
        m.push_back('\0');
    }
    for (int i = 7; i >= 0; i--) {
        m.push_back(static_cast<char>((bits >> (i * 8)) & 0xff));
    }
    for (size_t off = 0; off < m.size(); off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) {
            const auto* b = reinterpret_cast<const uint8_t*>(m.data() + off + i * 4);
            w[i] = (static_cast<uint32_t>(b[0]) << 24) | (static_cast<uint32_t>(b[1]) << 16) |
                   (static_cast<uint32_t>(b[2]) << 8) | b[3];
        }
        for (int i = 16; i < 80; i++) {
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f;
            uint32_t k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    std::array<uint8_t, 20> out{};
    for (int i = 0; i < 5; i++) {
        out[i * 4] = static_cast<uint8_t>(h[i] >> 24);
        out[i * 4 + 1] = static_cast<uint8_t>(h[i] >> 16);
        out[i * 4 + 2] = static_cast<uint8_t>(h[i] >> 8);
        out[i * 4 + 3] = static_cast<uint8_t>(h[i]);
    }
    return out;
}

}  // namespace

std::string wsAcceptFor(const std::string& key)
{
    auto d = sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    return base64(d.data(), d.size());
}

// Small JSON object writer (keys are trusted, string values escaped).
// WebSocket client frames are masked (RFC 6455 5.3).
void Engine::sendWsFrame(Conn& c, int opcode, const char* p, size_t n)
{
    std::string f;
    f += static_cast<char>(0x80 | opcode);
    if (n < 126) {
        f += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
        f += static_cast<char>(0x80 | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; i--) {
            f += static_cast<char>((static_cast<uint64_t>(n) >> (i * 8)) & 0xff);
        }
    }
    uint32_t mask = static_cast<uint32_t>(nextRand());
    char m[4] = {static_cast<char>(mask >> 24), static_cast<char>(mask >> 16),
                 static_cast<char>(mask >> 8), static_cast<char>(mask)};
    f.append(m, 4);
    for (size_t i = 0; i < n; i++) {
        f += static_cast<char>(p[i] ^ m[i % 4]);
    }
    send(c, f);
}

// Returns false when the connection was closed.
bool Engine::wsFrames(Conn& c)
{
    for (;;) {
        const auto* p = reinterpret_cast<const uint8_t*>(c.in.data() + c.inPos);
        size_t avail = c.in.size() - c.inPos;
        if (avail < 2) {
            return true;
        }
        bool fin = (p[0] & 0x80) != 0;
        int op = p[0] & 0x0f;
        bool masked = (p[1] & 0x80) != 0;
        uint64_t len = p[1] & 0x7f;
        size_t hdr = 2;
        if (len == 126) {
            if (avail < 4) {
                return true;
            }
            len = (static_cast<uint64_t>(p[2]) << 8) | p[3];
            hdr = 4;
        } else if (len == 127) {
            if (avail < 10) {
                return true;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | p[2 + i];
            }
            hdr = 10;
        }
        if (len > (64ull << 20)) {
            closeConn(c, "WebSocket frame too large");
            return false;
        }
        size_t maskAt = hdr;
        if (masked) {
            hdr += 4;
        }
        if (avail < hdr + len) {
            return true;
        }
        std::string unmasked;
        const char* payload = reinterpret_cast<const char*>(p + hdr);
        if (masked) {
            unmasked.assign(payload, static_cast<size_t>(len));
            for (size_t i = 0; i < len; i++) {
                unmasked[i] = static_cast<char>(unmasked[i] ^ p[maskAt + i % 4]);
            }
            payload = unmasked.data();
        }
        size_t n = static_cast<size_t>(len);
        // Copy before consuming: callbacks may send and reuse buffers.
        std::string msg;
        switch (op) {
        case 0x0:
            if (!c.wsFragging) {
                closeConn(c, "WebSocket continuation without start");
                return false;
            }
            c.wsFrag.append(payload, n);
            c.inPos += hdr + n;
            if (fin) {
                msg.swap(c.wsFrag);
                c.wsFragging = false;
                ev_.onMessage(c, msg.data(), msg.size());
            }
            break;
        case 0x1:
        case 0x2:
            if (c.wsFragging) {
                closeConn(c, "WebSocket data frame inside a fragmented message");
                return false;
            }
            if (fin) {
                msg.assign(payload, n);
                c.inPos += hdr + n;
                ev_.onMessage(c, msg.data(), msg.size());
            } else {
                c.wsFrag.assign(payload, n);
                c.wsFragging = true;
                c.inPos += hdr + n;
            }
            break;
        case 0x8: {
            int code = n >= 2 ? (static_cast<uint8_t>(payload[0]) << 8) |
                                    static_cast<uint8_t>(payload[1])
                              : 1005;
            std::string reason = n > 2 ? std::string(payload + 2, n - 2) : "";
            c.wsCloseCode = code;
            c.inPos += hdr + n;
            char cb[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
            sendWsFrame(c, 0x8, cb, code == 1005 ? 0 : 2);
            closeConn(c, "WebSocket close " + std::to_string(code) + " " + reason);
            return false;
        }
        case 0x9:
            msg.assign(payload, n);
            c.inPos += hdr + n;
            sendWsFrame(c, 0xA, msg.data(), msg.size());
            break;
        case 0xA:
            c.inPos += hdr + n;
            break;
        default:
            closeConn(c, "WebSocket unknown opcode " + std::to_string(op));
            return false;
        }
        if (c.fd < 0) {
            return false;
        }
    }
}

}  // namespace load
