#include "http.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace load {

long parseHead(const char* p, size_t n, Head& h)
{
    const size_t maxHead = 64 * 1024;
    const char* end = nullptr;
    for (size_t i = 3; i < n; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') {
            end = p + i + 1;
            break;
        }
    }
    if (end == nullptr) {
        return n > maxHead ? -1 : 0;
    }
    h = Head{};
    const char* line = p;
    bool first = true;
    while (line < end) {
        const char* eol =
            static_cast<const char*>(memchr(line, '\r', static_cast<size_t>(end - line)));
        if (eol == nullptr || eol + 1 >= end || eol[1] != '\n') {
            return -1;
        }
        size_t len = static_cast<size_t>(eol - line);
        if (first) {
            if (len < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ') {
                return -1;
            }
            int st = 0;
            for (int i = 9; i < 12; i++) {
                if (line[i] < '0' || line[i] > '9') {
                    return -1;
                }
                st = st * 10 + (line[i] - '0');
            }
            h.status = st;
            if (line[7] == '0') {
                h.connClose = true;
            }
            first = false;
        } else if (len > 0) {
            const char* colon = static_cast<const char*>(memchr(line, ':', len));
            if (colon == nullptr) {
                return -1;
            }
            size_t nameLen = static_cast<size_t>(colon - line);
            const char* v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            const char* ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }
            std::string value(v, static_cast<size_t>(ve - v));
            if (iequals(line, nameLen, "content-length")) {
                char* e = nullptr;
                long long cl = strtoll(value.c_str(), &e, 10);
                if (*e != '\0' || cl < 0) {
                    return -1;
                }
                h.contentLength = cl;
            } else if (iequals(line, nameLen, "transfer-encoding")) {
                h.chunked = icontains(value, "chunked");
            } else if (iequals(line, nameLen, "connection")) {
                if (icontains(value, "close")) {
                    h.connClose = true;
                }
            } else if (iequals(line, nameLen, "etag")) {
                h.etag = value;
            } else if (iequals(line, nameLen, "last-modified")) {
                h.lastModified = value;
            } else if (iequals(line, nameLen, "sec-websocket-accept")) {
                h.wsAccept = value;
            } else if (iequals(line, nameLen, "content-type")) {
                h.contentType = value;
            }
        }
        line = eol + 2;
    }
    return static_cast<long>(end - p);
}

size_t Chunked::feed(const char* p, size_t n, std::string& out, bool& err)
{
    size_t i = 0;
    while (i < n && st != St::Done) {
        if (st == St::Data) {
            size_t take = static_cast<size_t>(std::min<uint64_t>(left, n - i));
            out.append(p + i, take);
            i += take;
            left -= take;
            if (left == 0) {
                st = St::DataEnd;
                if (markEnds) {
                    out.push_back('\n');
                }
            }
            continue;
        }
        const char* nl = static_cast<const char*>(memchr(p + i, '\n', n - i));
        if (nl == nullptr) {
            if (n - i > 4096) {
                err = true;
            }
            return i;
        }
        size_t lineLen = static_cast<size_t>(nl - (p + i));
        const char* line = p + i;
        if (lineLen > 0 && line[lineLen - 1] == '\r') {
            lineLen--;
        }
        i = static_cast<size_t>(nl - p) + 1;
        if (st == St::DataEnd) {
            if (lineLen != 0) {
                err = true;
                return i;
            }
            st = St::Size;
        } else if (st == St::Size) {
            uint64_t v = 0;
            size_t k = 0;
            for (; k < lineLen && isxdigit(static_cast<unsigned char>(line[k])); k++) {
                char c = line[k];
                int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
                v = v * 16 + static_cast<uint64_t>(d);
                if (v > (1ull << 40)) {
                    err = true;
                    return i;
                }
            }
            if (k == 0) {
                err = true;
                return i;
            }
            left = v;
            st = v == 0 ? St::Trailer : St::Data;
        } else if (st == St::Trailer) {
            if (lineLen == 0) {
                st = St::Done;
            }
        }
    }
    return i;
}

std::string publishRequest(const Url& u, const std::string& target, const std::string& body)
{
    return "POST " + target + " HTTP/1.1\r\nHost: " + u.host +
           "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

std::string blockingGet(const std::string& url)
{
    std::string err;
    auto u = parseUrl(url, err);
    if (!u) {
        fprintf(stderr, "pubsub-load: %s\n", err.c_str());
        return "";
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return "";
    }
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string out;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&u->addr), sizeof u->addr) == 0) {
        std::string req = "GET " + u->target + " HTTP/1.1\r\nHost: " + u->host +
                          "\r\nConnection: close\r\n\r\n";
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
            char buf[16384];
            ssize_t r;
            while ((r = ::read(fd, buf, sizeof buf)) > 0 && out.size() < (1u << 24)) {
                out.append(buf, static_cast<size_t>(r));
            }
        }
    }
    close(fd);
    return out;
}

long long jsonInt(const std::string& text, const char* key)
{
    std::string k = std::string("\"") + key + "\":";
    size_t pos = text.find(k);
    if (pos == std::string::npos) {
        return -1;
    }
    return strtoll(text.c_str() + pos + k.size(), nullptr, 10);
}

}  // namespace load
