// WebSocket handshake helpers, permessage-deflate negotiation, frame encoder
// and the ws+meta.nchan prefix. The frame parser is in websocket_parser.cpp.
#include "pubsub/codec/websocket.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

namespace pubsub::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool isOws(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && isOws(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && isOws(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

bool isBase64Char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

// Canonical base64 of exactly 16 bytes: 22 symbols, the last one carrying
// only 2 data bits (A, Q, g or w), then "==".
bool isValidKey(std::string_view key) {
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; ++i) {
        if (!isBase64Char(key[i])) {
            return false;
        }
    }
    char last = key[21];
    return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

bool isTchar(char c) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

// ---- Sec-WebSocket-Extensions syntax (RFC 6455 9.1)

struct ExtParam {
    std::string_view name;
    bool hasValue = false;
    std::string value;  // unquoted
};

struct ExtOffer {
    std::string_view name;
    std::vector<ExtParam> params;
};

class ExtParser {
public:
    explicit ExtParser(std::string_view s) : s_(s) {}

    bool parse(std::vector<ExtOffer>& offers) {
        for (;;) {
            skipOws();
            if (pos_ == s_.size()) {
                return true;
            }
            if (s_[pos_] == ',') {  // empty list element
                ++pos_;
                continue;
            }
            ExtOffer offer;
            if (!token(offer.name)) {
                return false;
            }
            for (;;) {
                skipOws();
                if (pos_ == s_.size() || s_[pos_] != ';') {
                    break;
                }
                ++pos_;
                skipOws();
                ExtParam param;
                if (!token(param.name)) {
                    return false;
                }
                skipOws();
                if (pos_ < s_.size() && s_[pos_] == '=') {
                    ++pos_;
                    skipOws();
                    param.hasValue = true;
                    if (!value(param.value)) {
                        return false;
                    }
                }
                offer.params.push_back(std::move(param));
            }
            offers.push_back(std::move(offer));
            skipOws();
            if (pos_ == s_.size()) {
                return true;
            }
            if (s_[pos_] != ',') {
                return false;
            }
            ++pos_;
        }
    }

private:
    void skipOws() {
        while (pos_ < s_.size() && isOws(s_[pos_])) {
            ++pos_;
        }
    }

    bool token(std::string_view& out) {
        size_t start = pos_;
        while (pos_ < s_.size() && isTchar(s_[pos_])) {
            ++pos_;
        }
        out = s_.substr(start, pos_ - start);
        return !out.empty();
    }

    bool value(std::string& out) {
        if (pos_ < s_.size() && s_[pos_] == '"') {
            ++pos_;
            while (pos_ < s_.size() && s_[pos_] != '"') {
                if (s_[pos_] == '\\') {
                    ++pos_;
                    if (pos_ == s_.size()) {
                        return false;
                    }
                }
                out.push_back(s_[pos_++]);
            }
            if (pos_ == s_.size()) {
                return false;  // unterminated quoted-string
            }
            ++pos_;
            return true;
        }
        std::string_view t;
        if (!token(t)) {
            return false;
        }
        out.assign(t);
        return true;
    }

    std::string_view s_;
    size_t pos_ = 0;
};

// 8..15, decimal, no leading zero (RFC 7692 7.1.2).
bool parseWindowBits(const std::string& v, int& bits) {
    if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') {
        bits = v[0] - '0';
        return true;
    }
    if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        bits = 10 + (v[1] - '0');
        return true;
    }
    return false;
}

struct OfferParams {
    bool serverNoContextTakeover = false;
    bool clientNoContextTakeover = false;
    bool hasServerBits = false;
    int serverBits = 15;
    bool hasClientBits = false;
    bool clientBitsValue = false;
    int clientBits = 15;
};

bool parseDeflateOffer(const ExtOffer& offer, OfferParams& p) {
    for (const ExtParam& param : offer.params) {
        if (iequals(param.name, "server_no_context_takeover")) {
            if (param.hasValue || p.serverNoContextTakeover) {
                return false;
            }
            p.serverNoContextTakeover = true;
        } else if (iequals(param.name, "client_no_context_takeover")) {
            if (param.hasValue || p.clientNoContextTakeover) {
                return false;
            }
            p.clientNoContextTakeover = true;
        } else if (iequals(param.name, "server_max_window_bits")) {
            if (!param.hasValue || p.hasServerBits || !parseWindowBits(param.value, p.serverBits)) {
                return false;
            }
            p.hasServerBits = true;
        } else if (iequals(param.name, "client_max_window_bits")) {
            if (p.hasClientBits) {
                return false;
            }
            p.hasClientBits = true;
            if (param.hasValue) {
                if (!parseWindowBits(param.value, p.clientBits)) {
                    return false;
                }
                p.clientBitsValue = true;
            }
        } else {
            return false;  // unknown parameter
        }
    }
    return true;
}

int clampInt(int v, int lo, int hi) {
    return std::min(hi, std::max(lo, v));
}

void putBe16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

}  // namespace

// ------------------------------------------------------------ handshake

bool isValidCloseCode(uint16_t code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

bool headerHasToken(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = trim(value.substr(0, comma));
        if (iequals(item, token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

HandshakeError validateUpgrade(const UpgradeRequest& req) {
    if (req.method != "GET") {
        return HandshakeError::NotGet;
    }
    if (req.httpVersion < 1001 || req.httpVersion >= 2000) {
        return HandshakeError::BadHttpVersion;
    }
    if (!headerHasToken(req.upgrade, "websocket")) {
        return HandshakeError::NoUpgradeWebsocket;
    }
    if (!headerHasToken(req.connection, "upgrade")) {
        return HandshakeError::NoConnectionUpgrade;
    }
    std::string_view version = trim(req.version);
    if (version.empty()) {
        return HandshakeError::MissingVersion;
    }
    if (version != "13") {
        return HandshakeError::UnsupportedVersion;
    }
    std::string_view key = trim(req.key);
    if (key.empty()) {
        return HandshakeError::MissingKey;
    }
    if (!isValidKey(key)) {
        return HandshakeError::InvalidKey;
    }
    return HandshakeError::None;
}

std::string_view handshakeErrorText(HandshakeError err) {
    switch (err) {
        case HandshakeError::None:
            return "";
        case HandshakeError::NotGet:
            return "WebSocket upgrade requires the GET method";
        case HandshakeError::BadHttpVersion:
            return "WebSocket upgrade requires HTTP/1.1";
        case HandshakeError::NoUpgradeWebsocket:
            return "Upgrade header must contain \"websocket\"";
        case HandshakeError::NoConnectionUpgrade:
            return "Connection header must contain \"upgrade\"";
        case HandshakeError::MissingVersion:
            return "Missing Sec-WebSocket-Version header";
        case HandshakeError::UnsupportedVersion:
            return "Unsupported Sec-WebSocket-Version (only 13 is supported)";
        case HandshakeError::MissingKey:
            return "Missing Sec-WebSocket-Key header";
        case HandshakeError::InvalidKey:
            return "Invalid Sec-WebSocket-Key (must be base64 of 16 bytes)";
    }
    return "Invalid WebSocket upgrade request";
}

bool computeAcceptKey(std::string_view key, char out[kAcceptKeySize]) {
    key = trim(key);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdLen = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) {
        return false;
    }
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
              EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
              EVP_DigestUpdate(ctx, kGuid.data(), kGuid.size()) == 1 &&
              EVP_DigestFinal_ex(ctx, md, &mdLen) == 1 && mdLen == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        return false;
    }
    unsigned char b64[kAcceptKeySize + 1];
    if (EVP_EncodeBlock(b64, md, 20) != static_cast<int>(kAcceptKeySize)) {
        return false;
    }
    std::memcpy(out, b64, kAcceptKeySize);
    return true;
}

std::string computeAcceptKey(std::string_view key) {
    char buf[kAcceptKeySize];
    if (!computeAcceptKey(key, buf)) {
        return std::string();
    }
    try {
        return std::string(buf, kAcceptKeySize);
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::optional<std::string_view> chooseSubprotocol(std::string_view offered) {
    while (!offered.empty()) {
        size_t comma = offered.find(',');
        std::string_view item = trim(offered.substr(0, comma));
        if (item.substr(0, kMetaSubprotocol.size()) == kMetaSubprotocol) {
            return item;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        offered.remove_prefix(comma + 1);
    }
    return std::nullopt;
}

// ------------------------------------------------------------ permessage-deflate

DeflateNegotiation negotiateDeflate(std::string_view extensions, const DeflateConfig& cfg) {
    DeflateNegotiation result;
    if (!cfg.enabled) {
        return result;
    }
    try {
        std::vector<ExtOffer> offers;
        if (!ExtParser(extensions).parse(offers)) {
            return result;
        }
        int serverCap = clampInt(cfg.deflate.windowBits, 9, 15);
        int clientCap = clampInt(cfg.clientMaxWindowBits, 8, 15);
        for (const ExtOffer& offer : offers) {
            if (!iequals(offer.name, "permessage-deflate")) {
                continue;
            }
            OfferParams op;
            if (!parseDeflateOffer(offer, op)) {
                continue;  // decline this offer, try the next
            }
            DeflateParams p;
            p.serverNoContextTakeover = op.serverNoContextTakeover || cfg.serverNoContextTakeover;
            p.clientNoContextTakeover = op.clientNoContextTakeover || cfg.clientNoContextTakeover;
            p.serverMaxWindowBits =
                op.hasServerBits ? std::min(op.serverBits, serverCap) : serverCap;
            if (p.serverMaxWindowBits < 9) {
                continue;  // server_max_window_bits=8: zlib cannot produce it
            }
            if (op.hasClientBits) {
                p.clientMaxWindowBits = std::min(op.clientBits, clientCap);
            }
            std::string& h = result.responseHeader;
            h = "permessage-deflate";
            if (p.serverNoContextTakeover) {
                h += "; server_no_context_takeover";
            }
            if (p.clientNoContextTakeover) {
                h += "; client_no_context_takeover";
            }
            if (op.hasServerBits || p.serverMaxWindowBits < 15) {
                h += "; server_max_window_bits=" + std::to_string(p.serverMaxWindowBits);
            }
            if (op.hasClientBits) {
                // Only allowed in the response when the client offered it.
                h += "; client_max_window_bits=" + std::to_string(p.clientMaxWindowBits);
            }
            result.params = p;
            result.accepted = true;
            return result;
        }
    } catch (const std::bad_alloc&) {
        result = DeflateNegotiation();
    }
    return result;
}

bool canSharePredeflated(const DeflateParams& p, int predeflateWindowBits) {
    // The Deflater never uses fewer than 9 bits.
    return std::max(9, predeflateWindowBits) <= p.serverMaxWindowBits;
}

std::unique_ptr<Inflater> makeServerInflater(const DeflateParams& p) {
    return std::unique_ptr<Inflater>(
        new (std::nothrow) Inflater(p.clientMaxWindowBits, p.clientNoContextTakeover));
}

std::unique_ptr<Deflater> makeServerDeflater(const DeflateParams& p, const DeflateOptions& opts) {
    DeflateOptions o = opts;
    o.windowBits = std::min(clampInt(o.windowBits, 9, 15), p.serverMaxWindowBits);
    return std::unique_ptr<Deflater>(new (std::nothrow) Deflater(o, p.serverNoContextTakeover));
}

ParserConfig ParserConfig::forServer(size_t maxMessageSize, const DeflateParams* negotiated) {
    ParserConfig c;
    c.maxMessageSize = maxMessageSize;
    c.expectMasked = true;
    if (negotiated != nullptr) {
        c.deflate = true;
        c.inflateWindowBits = negotiated->clientMaxWindowBits;
        c.inflateNoContextTakeover = negotiated->clientNoContextTakeover;
    }
    return c;
}

// ------------------------------------------------------------ encoder

namespace {

size_t writeHeader(uint8_t* out, Opcode op, uint64_t len, bool fin, bool rsv1,
                   const uint8_t* mask) {
    out[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) |
                                  (static_cast<uint8_t>(op) & 0x0F));
    uint8_t maskBit = mask != nullptr ? 0x80 : 0;
    size_t n;
    if (len < 126) {
        out[1] = static_cast<uint8_t>(maskBit | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        out[1] = static_cast<uint8_t>(maskBit | 126);
        putBe16(out + 2, static_cast<uint16_t>(len));
        n = 4;
    } else {
        out[1] = static_cast<uint8_t>(maskBit | 127);
        for (int i = 0; i < 8; ++i) {
            out[2 + i] = static_cast<uint8_t>(len >> (56 - 8 * i));
        }
        n = 10;
    }
    if (mask != nullptr) {
        std::memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

// Header and payload appended to out, the payload masked when mask is not
// null; false (out as it was) when memory runs out.
bool appendWholeFrame(std::string& out, Opcode op, std::string_view payload, bool fin, bool rsv1,
                      const uint8_t* mask) {
    uint8_t hdr[kMaxClientHeaderSize];
    size_t n = writeHeader(hdr, op, payload.size(), fin, rsv1, mask);
    size_t start = out.size();
    try {
        out.reserve(start + n + payload.size());
        out.append(reinterpret_cast<const char*>(hdr), n);
        out.append(payload);
    } catch (const std::bad_alloc&) {
        out.resize(std::min(out.size(), start));
        return false;
    }
    if (mask != nullptr) {
        maskPayload(reinterpret_cast<uint8_t*>(&out[start + n]), payload.size(), mask);
    }
    return true;
}

}  // namespace

size_t writeFrameHeader(uint8_t* out, Opcode op, uint64_t payloadLen, bool fin, bool rsv1) {
    return writeHeader(out, op, payloadLen, fin, rsv1, nullptr);
}

size_t writeMaskedFrameHeader(uint8_t* out, Opcode op, uint64_t payloadLen, const uint8_t mask[4],
                              bool fin, bool rsv1) {
    return writeHeader(out, op, payloadLen, fin, rsv1, mask);
}

void maskPayload(uint8_t* data, size_t len, const uint8_t mask[4], size_t offset) {
    for (size_t i = 0; i < len; ++i) {
        data[i] ^= mask[(offset + i) & 3];
    }
}

size_t writeControlFrame(uint8_t* out, Opcode op, std::string_view payload) {
    if (payload.size() > kMaxControlPayload) {
        return 0;
    }
    size_t n = writeHeader(out, op, payload.size(), true, false, nullptr);
    if (!payload.empty()) {
        std::memcpy(out + n, payload.data(), payload.size());
    }
    return n + payload.size();
}

size_t writeCloseFrame(uint8_t* out, uint16_t code, std::string_view reason) {
    if (code == 0) {
        return writeHeader(out, Opcode::Close, 0, true, false, nullptr);
    }
    size_t r = utf8PrefixLength(reason, kMaxCloseReason);
    size_t n = writeHeader(out, Opcode::Close, 2 + r, true, false, nullptr);
    putBe16(out + n, code);
    if (r > 0) {
        std::memcpy(out + n + 2, reason.data(), r);
    }
    return n + 2 + r;
}

bool appendFrame(std::string& out, Opcode op, std::string_view payload, bool rsv1, bool fin) {
    return appendWholeFrame(out, op, payload, fin, rsv1, nullptr);
}

bool appendMaskedFrame(std::string& out, Opcode op, std::string_view payload, const uint8_t mask[4],
                       bool rsv1, bool fin) {
    return appendWholeFrame(out, op, payload, fin, rsv1, mask);
}

bool appendCloseFrame(std::string& out, uint16_t code, std::string_view reason) {
    uint8_t buf[kMaxControlFrameSize];
    size_t n = writeCloseFrame(buf, code, reason);
    try {
        out.append(reinterpret_cast<const char*>(buf), n);
    } catch (const std::bad_alloc&) {
        return false;
    }
    return true;
}

// ------------------------------------------------------------ ws+meta.nchan

size_t metaPrefixSize(std::string_view msgId, std::string_view contentType) {
    size_t n = 4 + msgId.size() + 1 + 1;  // "id: " id "\n" ... "\n"
    if (!contentType.empty()) {
        n += 14 + contentType.size() + 1;  // "content-type: " ct "\n"
    }
    return n;
}

size_t writeMetaPrefix(char* out, std::string_view msgId, std::string_view contentType) {
    char* p = out;
    auto put = [&p](std::string_view s) {
        if (!s.empty()) {
            std::memcpy(p, s.data(), s.size());
            p += s.size();
        }
    };
    put("id: ");
    put(msgId);
    put("\n");
    if (!contentType.empty()) {
        put("content-type: ");
        put(contentType);
        put("\n");
    }
    put("\n");
    return static_cast<size_t>(p - out);
}

bool appendMetaPrefix(std::string& out, std::string_view msgId, std::string_view contentType) {
    size_t start = out.size();
    try {
        out.resize(start + metaPrefixSize(msgId, contentType));
    } catch (const std::bad_alloc&) {
        return false;
    }
    writeMetaPrefix(&out[start], msgId, contentType);
    return true;
}

}  // namespace pubsub::ws
