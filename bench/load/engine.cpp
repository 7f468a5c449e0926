#include "engine.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace load {

Engine::~Engine()
{
    if (ep_ >= 0) {
        close(ep_);
    }
}

bool Engine::init(std::string& err)
{
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
        err = std::string("epoll_create1: ") + strerror(errno);
        return false;
    }
    return true;
}

// Source addresses for outgoing connections (empty: kernel's choice).
void Engine::setSources(int count, const sockaddr_in& dst)
{
    sources_.clear();
    uint32_t d = ntohl(dst.sin_addr.s_addr);
    if (count <= 1 || (d >> 24) != 127) {
        return;
    }
    for (int i = 0; i < count; i++) {
        sockaddr_in s{};
        s.sin_family = AF_INET;
        s.sin_addr.s_addr = htonl((127u << 24) | static_cast<uint32_t>(2 + i));
        sources_.push_back(s);
    }
}

// Starts a non-blocking connect; onConnected follows. False on an
// immediate failure (errno text in err).
bool Engine::connect(Conn& c, const Url& u, std::string& err)
{
    resetConn(c);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = std::string("socket: ") + strerror(errno);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!sources_.empty()) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const sockaddr_in& s = sources_[nextSource_++ % sources_.size()];
        if (bind(fd, reinterpret_cast<const sockaddr*>(&s), sizeof s) != 0) {
            err = std::string("bind: ") + strerror(errno);
            ::close(fd);
            return false;
        }
    }
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&u.addr), sizeof u.addr);
    if (rc != 0 && errno != EINPROGRESS) {
        err = std::string("connect: ") + strerror(errno);
        ::close(fd);
        return false;
    }
    c.fd = fd;
    c.connecting = true;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT;
    e.data.ptr = &c;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e) != 0) {
        err = std::string("epoll_ctl: ") + strerror(errno);
        ::close(fd);
        c.fd = -1;
        return false;
    }
    c.epollOut = true;
    return true;
}

void Engine::send(Conn& c, const char* p, size_t n)
{
    if (c.fd < 0) {
        return;
    }
    if (c.outPos == c.out.size() && !c.connecting) {
        c.out.clear();
        c.outPos = 0;
        ssize_t w = ::send(c.fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                closeConn(c, std::string("send: ") + strerror(errno));
                return;
            }
            w = 0;
        }
        if (static_cast<size_t>(w) == n) {
            return;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    c.out.append(p, n);
    wantWrite(c, true);
}

void Engine::closeConn(Conn& c, const std::string& why)
{
    if (c.fd < 0) {
        return;
    }
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    c.connecting = false;
    ev_.onClosed(c, why);
}

// Closes without a callback (end of run).
void Engine::shutdownConn(Conn& c)
{
    if (c.fd < 0) {
        return;
    }
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
}

void Engine::poll(int timeoutMs)
{
    epoll_event evs[1024];
    int n = epoll_wait(ep_, evs, 1024, timeoutMs);
    for (int i = 0; i < n; i++) {
        Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
        if (c.fd < 0) {
            continue;
        }
        uint32_t e = evs[i].events;
        if (c.connecting) {
            if ((e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) {
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr != 0) {
                closeConn(c, std::string("connect: ") + strerror(soerr));
                continue;
            }
            // A stale event for an earlier socket of this Conn (closed and
            // reconnected in this batch) must not complete the new connect.
            sockaddr_in peer{};
            socklen_t pl = sizeof peer;
            if (getpeername(c.fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) {
                continue;
            }
            c.connecting = false;
            wantWrite(c, false);
            ev_.onConnected(c);
            continue;
        }
        if ((e & EPOLLOUT) != 0) {
            flush(c);
        }
        if (c.fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
            readable(c);
        }
    }
}

void Engine::resetConn(Conn& c)
{
    c.connecting = false;
    c.open = false;
    c.headDone = false;
    c.head = Head{};
    c.bodyMode = BodyMode::None;
    c.body.clear();
    c.in.clear();
    c.inPos = 0;
    c.out.clear();
    c.outPos = 0;
    c.wsFrag.clear();
    c.wsFragging = false;
    c.sseHasData = false;
    c.sseData.clear();
    c.chunk = Chunked{};
}

void Engine::wantWrite(Conn& c, bool on)
{
    if (c.fd < 0 || c.epollOut == on) {
        return;
    }
    epoll_event e{};
    e.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    e.data.ptr = &c;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &e);
    c.epollOut = on;
}

void Engine::flush(Conn& c)
{
    while (c.outPos < c.out.size()) {
        ssize_t w = ::send(c.fd, c.out.data() + c.outPos, c.out.size() - c.outPos,
                           MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            closeConn(c, std::string("send: ") + strerror(errno));
            return;
        }
        c.outPos += static_cast<size_t>(w);
    }
    c.out.clear();
    c.outPos = 0;
    wantWrite(c, false);
}

void Engine::readable(Conn& c)
{
    static char buf[256 * 1024];
    for (;;) {
        ssize_t r = ::read(c.fd, buf, sizeof buf);
        if (r > 0) {
            bytesRead_ += static_cast<uint64_t>(r);
            c.in.append(buf, static_cast<size_t>(r));
            process(c);
            if (c.fd < 0) {
                return;
            }
            if (static_cast<size_t>(r) < sizeof buf) {
                return;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        // EOF or error
        if (r == 0 && !c.open && c.headDone && c.bodyMode == BodyMode::UntilClose) {
            c.headDone = false;
            ev_.onResponse(c);
        }
        closeConn(c, r == 0 ? "closed by server" : std::string("read: ") + strerror(errno));
        return;
    }
}

void Engine::completeResponse(Conn& c)
{
    c.headDone = false;
    ev_.onResponse(c);
}

void Engine::process(Conn& c)
{
    while (c.fd >= 0) {
        const char* p = c.in.data() + c.inPos;
        size_t avail = c.in.size() - c.inPos;
        if (!c.headDone) {
            if (avail == 0) {
                break;
            }
            long n = parseHead(p, avail, c.head);
            if (n < 0) {
                closeConn(c, "malformed response head");
                return;
            }
            if (n == 0) {
                break;
            }
            c.inPos += static_cast<size_t>(n);
            c.headDone = true;
            c.body.clear();
            int st = c.head.status;
            if (c.proto == Proto::Ws && st == 101) {
                if (c.head.wsAccept != wsAcceptFor(c.wsKey)) {
                    closeConn(c, "bad Sec-WebSocket-Accept");
                    return;
                }
                c.open = true;
                ev_.onOpen(c);
                continue;
            }
            if ((st >= 100 && st < 200) || st == 204 || st == 304) {
                c.bodyMode = BodyMode::None;
            } else if (c.head.chunked) {
                c.bodyMode = BodyMode::Chunked;
                c.chunk = Chunked{};
            } else if (c.head.contentLength >= 0) {
                c.bodyMode = BodyMode::Length;
                c.bodyLeft = static_cast<uint64_t>(c.head.contentLength);
            } else {
                c.bodyMode = BodyMode::UntilClose;
            }
            if ((c.proto == Proto::Sse || c.proto == Proto::Stream) && st == 200) {
                c.open = true;
                c.chunk.markEnds = c.proto == Proto::Stream;
                ev_.onOpen(c);
            }
            continue;
        }
        if (c.open && c.proto == Proto::Ws) {
            if (!wsFrames(c)) {
                return;
            }
            break;
        }
        if (c.open && (c.proto == Proto::Sse || c.proto == Proto::Stream)) {
            bool err = false;
            size_t used = avail;
            if (c.bodyMode == BodyMode::Chunked) {
                used = c.chunk.feed(p, avail, c.body, err);
            } else {
                c.body.append(p, avail);
            }
            c.inPos += used;
            if (err) {
                closeConn(c, "bad chunked encoding");
                return;
            }
            if (c.proto == Proto::Sse) {
                sseLines(c);
            } else {
                streamLines(c);
            }
            if (c.fd >= 0 && c.bodyMode == BodyMode::Chunked &&
                c.chunk.st == Chunked::St::Done) {
                closeConn(c, "event stream ended");
                return;
            }
            break;
        }
        if (c.bodyMode == BodyMode::None) {
            completeResponse(c);
            continue;
        }
        if (c.bodyMode == BodyMode::Length) {
            size_t take = static_cast<size_t>(std::min<uint64_t>(c.bodyLeft, avail));
            c.body.append(p, take);
            c.inPos += take;
            c.bodyLeft -= take;
            if (c.bodyLeft == 0) {
                completeResponse(c);
                continue;
            }
            break;
        }
        if (c.bodyMode == BodyMode::Chunked) {
            bool err = false;
            size_t used = c.chunk.feed(p, avail, c.body, err);
            c.inPos += used;
            if (err) {
                closeConn(c, "bad chunked encoding");
                return;
            }
            if (c.chunk.st == Chunked::St::Done) {
                completeResponse(c);
                continue;
            }
            break;
        }
        // until close
        c.body.append(p, avail);
        c.inPos += avail;
        break;
    }
    if (c.fd >= 0) {
        if (c.inPos == c.in.size()) {
            c.in.clear();
            c.inPos = 0;
        } else if (c.inPos > 65536) {
            c.in.erase(0, c.inPos);
            c.inPos = 0;
        }
    }
}

// Chunked, multipart, raw stream: every line of the body (chunks end with
// one) that starts like a bench payload is a message; boundaries and part
// headers are not.
void Engine::streamLines(Conn& c)
{
    size_t start = 0;
    std::string& b = c.body;
    for (;;) {
        size_t nl = b.find('\n', start);
        if (nl == std::string::npos) {
            break;
        }
        size_t end = nl;
        if (end > start && b[end - 1] == '\r') {
            end--;
        }
        size_t len = end - start;
        const char* line = b.data() + start;
        start = nl + 1;
        if (len > 2 && (line[0] == 'w' || line[0] == 'm') && line[1] == ' ') {
            std::string msg(line, len);
            ev_.onMessage(c, msg.data(), msg.size());
            if (c.fd < 0) {
                return;
            }
        }
    }
    b.erase(0, start);
}

void Engine::sseLines(Conn& c)
{
    size_t start = 0;
    std::string& b = c.body;
    for (;;) {
        size_t nl = b.find('\n', start);
        if (nl == std::string::npos) {
            break;
        }
        size_t end = nl;
        if (end > start && b[end - 1] == '\r') {
            end--;
        }
        const char* line = b.data() + start;
        size_t len = end - start;
        start = nl + 1;
        if (len == 0) {
            if (c.sseHasData) {
                std::string msg;
                msg.swap(c.sseData);
                c.sseHasData = false;
                ev_.onMessage(c, msg.data(), msg.size());
                if (c.fd < 0) {
                    return;
                }
            }
            continue;
        }
        if (line[0] == ':') {
            continue;
        }
        const char* colon = static_cast<const char*>(memchr(line, ':', len));
        size_t nameLen = colon != nullptr ? static_cast<size_t>(colon - line) : len;
        if (nameLen == 4 && memcmp(line, "data", 4) == 0) {
            const char* v = colon != nullptr ? colon + 1 : line + len;
            if (v < line + len && *v == ' ') {
                v++;
            }
            if (c.sseHasData) {
                c.sseData += '\n';
            }
            c.sseData.append(v, static_cast<size_t>(line + len - v));
            c.sseHasData = true;
        }
    }
    b.erase(0, start);
}

}  // namespace load
