#include "scenario.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "pusher.h"
#include "util.h"

namespace load {

std::string messageBody(int channel, uint64_t seq, uint64_t ts, int size)
{
    char b[96];
    int n = snprintf(b, sizeof b, "m %d %" PRIu64 " %" PRIu64 " ", channel, seq, ts);
    std::string s(b, static_cast<size_t>(n));
    if (static_cast<int>(s.size()) < size) {
        s.append(static_cast<size_t>(size) - s.size(), 'x');
    }
    return s;
}

ParsedMsg parseMessage(const char* p, size_t n, bool wsMeta)
{
    ParsedMsg m;
    if (wsMeta) {
        // ws+meta.nchan: header lines, a blank line, then the payload.
        for (size_t i = 0; i + 1 < n; i++) {
            if (p[i] == '\n' && p[i + 1] == '\n') {
                p += i + 2;
                n -= i + 2;
                break;
            }
        }
    }
    std::string s(p, std::min<size_t>(n, 80));
    unsigned long long a = 0;
    unsigned long long b = 0;
    int ch = 0;
    if (s.size() > 2 && s[0] == 'w' && sscanf(s.c_str(), "w %d %llu", &ch, &a) == 2) {
        m.warm = true;
        m.ok = true;
        m.channel = ch;
        return m;
    }
    if (s.size() > 2 && s[0] == 'm' && sscanf(s.c_str(), "m %d %llu %llu", &ch, &a, &b) == 3) {
        m.ok = true;
        m.channel = ch;
        m.seq = a;
        m.ts = b;
    }
    return m;
}

std::string expandSub(std::string target, int index)
{
    std::string id = std::to_string(index);
    size_t pos = 0;
    while ((pos = target.find("{sub}", pos)) != std::string::npos) {
        target.replace(pos, 5, id);
        pos += id.size();
    }
    return target;
}

std::string subscribeRequest(const Options& o, const Url& u, Conn& c, Proto proto)
{
    std::string target = expandSub(expandTarget(u.target, o.runId, c.channel), c.index);
    std::string r = "GET " + target + " HTTP/1.1\r\nHost: " + u.host + "\r\n";
    if (proto == Proto::Ws) {
        uint8_t key[16];
        for (auto& k : key) {
            k = static_cast<uint8_t>(nextRand());
        }
        c.wsKey = base64(key, sizeof key);
        r += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: " +
             c.wsKey + "\r\n";
        if (o.wsMeta) {
            r += "Sec-WebSocket-Protocol: ws+meta.nchan\r\n";
        }
    } else if (proto == Proto::Sse) {
        r += "Accept: text/event-stream\r\n";
    } else if (proto == Proto::Stream) {
        // raw stream: a plain GET where the location enables it
        if (o.transport == "chunked") {
            r += "TE: chunked\r\n";
        } else if (o.transport == "multipart") {
            r += "Accept: multipart/mixed\r\n";
        }
    } else {
        if (!c.lastModified.empty()) {
            r += "If-Modified-Since: " + c.lastModified + "\r\n";
        }
        if (!c.etag.empty()) {
            r += "If-None-Match: " + c.etag + "\r\n";
        }
    }
    return r + "\r\n";
}

Proto protoFor(const std::string& t)
{
    if (t == "ws" || t == "pusher") {
        return Proto::Ws;
    }
    if (t == "sse") {
        return Proto::Sse;
    }
    if (t == "chunked" || t == "multipart" || t == "raw") {
        return Proto::Stream;
    }
    return Proto::Http;
}

std::string pusherChannelFor(const Options& o, int channel, int index)
{
    return expandSub(expandTarget(o.pusherChannel, o.runId, channel), index);
}

std::string pusherSubscribeFor(const Options& o, const std::string& socketId,
                               const std::string& channel, int index)
{
    return pusherSubscribeAs(o, socketId, channel, expandSub(o.pusherUser, index));
}

std::string pusherSubscribeAs(const Options& o, const std::string& socketId,
                              const std::string& channel, const std::string& userId)
{
    std::string data;
    std::string auth;
    if (pusherIsPresence(channel)) {
        data = pusherChannelData(userId);
    }
    if (pusherNeedsAuth(channel)) {
        auth = pusherAuth(o.pusherKey, o.pusherSecret, socketId, channel, data);
    }
    return pusherSubscribeFrame(channel, auth, data);
}

}  // namespace load
