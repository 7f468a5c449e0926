#include "pusher.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace load {

namespace {

void appendJsonString(std::string& out, const std::string& s)
{
    out += '"';
    for (char ch : s) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (static_cast<unsigned char>(ch) < 0x20) {
            char b[8];
            snprintf(b, sizeof b, "\\u%04x", ch);
            out += b;
        } else {
            out += ch;
        }
    }
    out += '"';
}

void skipWs(const char* p, size_t n, size_t& i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) {
        i++;
    }
}

void appendUtf8(std::string& out, uint32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

int hexVal(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// A JSON string at p[i] (the opening quote); its value unescaped into out.
bool readString(const char* p, size_t n, size_t& i, std::string* out)
{
    if (i >= n || p[i] != '"') {
        return false;
    }
    i++;
    // the common case: no escapes
    const char* q = static_cast<const char*>(memchr(p + i, '"', n - i));
    if (q != nullptr && memchr(p + i, '\\', static_cast<size_t>(q - (p + i))) == nullptr) {
        if (out != nullptr) {
            out->assign(p + i, static_cast<size_t>(q - (p + i)));
        }
        i = static_cast<size_t>(q - p) + 1;
        return true;
    }
    std::string v;
    while (i < n) {
        char c = p[i++];
        if (c == '"') {
            if (out != nullptr) {
                out->swap(v);
            }
            return true;
        }
        if (c != '\\') {
            v += c;
            continue;
        }
        if (i >= n) {
            return false;
        }
        char e = p[i++];
        switch (e) {
        case 'n': v += '\n'; break;
        case 't': v += '\t'; break;
        case 'r': v += '\r'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'u': {
            if (i + 4 > n) {
                return false;
            }
            uint32_t cp = 0;
            for (int k = 0; k < 4; k++) {
                int d = hexVal(p[i + static_cast<size_t>(k)]);
                if (d < 0) {
                    return false;
                }
                cp = cp * 16 + static_cast<uint32_t>(d);
            }
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= n && p[i] == '\\' && p[i + 1] == 'u') {
                uint32_t lo = 0;
                for (int k = 0; k < 4; k++) {
                    int d = hexVal(p[i + 2 + static_cast<size_t>(k)]);
                    lo = lo * 16 + static_cast<uint32_t>(d < 0 ? 0 : d);
                }
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }
            appendUtf8(v, cp);
            break;
        }
        default: v += e; break;
        }
    }
    return false;
}

// Skips any JSON value at p[i] (strings, numbers, literals, nesting).
bool skipValue(const char* p, size_t n, size_t& i)
{
    skipWs(p, n, i);
    if (i >= n) {
        return false;
    }
    if (p[i] == '"') {
        return readString(p, n, i, nullptr);
    }
    if (p[i] == '{' || p[i] == '[') {
        int depth = 0;
        while (i < n) {
            char c = p[i];
            if (c == '"') {
                if (!readString(p, n, i, nullptr)) {
                    return false;
                }
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                depth--;
            }
            i++;
            if (depth == 0) {
                return true;
            }
        }
        return false;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']') {
        i++;
    }
    return true;
}

}  // namespace

bool parsePusherFrame(const char* p, size_t n, PusherFrame& out)
{
    out.event.clear();
    out.channel.clear();
    out.data.clear();
    size_t i = 0;
    skipWs(p, n, i);
    if (i >= n || p[i] != '{') {
        return false;
    }
    i++;
    bool haveEvent = false;
    for (;;) {
        skipWs(p, n, i);
        if (i < n && p[i] == '}') {
            return haveEvent;
        }
        std::string key;
        if (!readString(p, n, i, &key)) {
            return false;
        }
        skipWs(p, n, i);
        if (i >= n || p[i] != ':') {
            return false;
        }
        i++;
        skipWs(p, n, i);
        std::string* dst = key == "event"     ? &out.event
                           : key == "channel" ? &out.channel
                           : key == "data"    ? &out.data
                                              : nullptr;
        if (dst != nullptr && i < n && p[i] == '"') {
            if (!readString(p, n, i, dst)) {
                return false;
            }
            haveEvent = haveEvent || dst == &out.event;
        } else {
            size_t start = i;
            if (!skipValue(p, n, i)) {
                return false;
            }
            if (dst == &out.data) {
                out.data.assign(p + start, i - start);
            }
        }
        skipWs(p, n, i);
        if (i < n && p[i] == ',') {
            i++;
            continue;
        }
        if (i < n && p[i] == '}') {
            return haveEvent;
        }
        return false;
    }
}

std::string pusherJsonString(const std::string& text, const char* key)
{
    std::string k = std::string("\"") + key + "\"";
    size_t pos = text.find(k);
    if (pos == std::string::npos) {
        return "";
    }
    size_t i = pos + k.size();
    skipWs(text.data(), text.size(), i);
    if (i >= text.size() || text[i] != ':') {
        return "";
    }
    i++;
    skipWs(text.data(), text.size(), i);
    std::string v;
    if (!readString(text.data(), text.size(), i, &v)) {
        return "";
    }
    return v;
}

std::string pusherAuth(const std::string& key, const std::string& secret,
                       const std::string& socketId, const std::string& channel,
                       const std::string& channelData)
{
    std::string msg = socketId + ":" + channel;
    if (!channelData.empty()) {
        msg += ":" + channelData;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &len) ==
        nullptr) {
        return "";
    }
    static const char* hex = "0123456789abcdef";
    std::string out = key + ":";
    for (unsigned int i = 0; i < len; i++) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

std::string pusherChannelData(const std::string& userId)
{
    std::string s = "{\"user_id\":";
    appendJsonString(s, userId);
    return s + "}";
}

std::string pusherSubscribeFrame(const std::string& channel, const std::string& auth,
                                 const std::string& channelData)
{
    std::string s = "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":";
    appendJsonString(s, channel);
    if (!auth.empty()) {
        s += ",\"auth\":";
        appendJsonString(s, auth);
    }
    if (!channelData.empty()) {
        s += ",\"channel_data\":";
        appendJsonString(s, channelData);
    }
    return s + "}}";
}

std::string pusherUnsubscribeFrame(const std::string& channel)
{
    std::string s = "{\"event\":\"pusher:unsubscribe\",\"data\":{\"channel\":";
    appendJsonString(s, channel);
    return s + "}}";
}

std::string pusherPongFrame()
{
    return "{\"event\":\"pusher:pong\",\"data\":{}}";
}

bool pusherNeedsAuth(const std::string& channel)
{
    return channel.compare(0, 8, "private-") == 0 || pusherIsPresence(channel);
}

bool pusherIsPresence(const std::string& channel)
{
    return channel.compare(0, 9, "presence-") == 0;
}

}  // namespace load
