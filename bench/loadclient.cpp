// pubsub-load: a single-threaded epoll load client for nchan-compatible
// pub/sub servers (ngx_pubsub, nchan) and plain HTTP endpoints.
//
// It depends on libc only: the HTTP/1.1 response parser, the WebSocket
// client (handshake with Sec-WebSocket-Accept check, frame reader), the SSE
// parser and the long-poll loop are all here.
//
// Modes (see --help): publish, fanout, idle, longpoll-rtt. Each run prints
// one JSON line on stdout and a human summary on stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------- utilities

uint64_t nowNs()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t secToNs(double s)
{
    return static_cast<uint64_t>(s * 1e9);
}

double nsToSec(uint64_t ns)
{
    return static_cast<double>(ns) / 1e9;
}

uint64_t g_rand = 0x9e3779b97f4a7c15ull;

uint64_t nextRand()
{
    g_rand ^= g_rand << 13;
    g_rand ^= g_rand >> 7;
    g_rand ^= g_rand << 17;
    return g_rand;
}

bool iequals(const char* a, size_t an, const char* b)
{
    size_t bn = strlen(b);
    if (an != bn) {
        return false;
    }
    for (size_t i = 0; i < an; i++) {
        char x = a[i];
        char y = b[i];
        if (x >= 'A' && x <= 'Z') {
            x = static_cast<char>(x - 'A' + 'a');
        }
        if (y >= 'A' && y <= 'Z') {
            y = static_cast<char>(y - 'A' + 'a');
        }
        if (x != y) {
            return false;
        }
    }
    return true;
}

bool icontains(const std::string& hay, const char* needle)
{
    std::string h = hay;
    std::string n = needle;
    for (auto& ch : h) {
        ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    }
    for (auto& ch : n) {
        ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    }
    return h.find(n) != std::string::npos;
}

std::string base64(const uint8_t* p, size_t n)
{
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = static_cast<uint32_t>(p[i]) << 16;
        if (i + 1 < n) {
            v |= static_cast<uint32_t>(p[i + 1]) << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out += i + 2 < n ? tbl[v & 63] : '=';
    }
    return out;
}

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

std::string wsAcceptFor(const std::string& key)
{
    auto d = sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    return base64(d.data(), d.size());
}

// Small JSON object writer (keys are trusted, string values escaped).
class Json {
public:
    Json& str(const char* k, const std::string& v)
    {
        key(k);
        out_ += '"';
        for (char ch : v) {
            if (ch == '"' || ch == '\\') {
                out_ += '\\';
                out_ += ch;
            } else if (static_cast<unsigned char>(ch) < 0x20) {
                char b[8];
                snprintf(b, sizeof b, "\\u%04x", ch);
                out_ += b;
            } else {
                out_ += ch;
            }
        }
        out_ += '"';
        return *this;
    }
    Json& num(const char* k, double v)
    {
        key(k);
        char b[64];
        if (std::isfinite(v)) {
            snprintf(b, sizeof b, "%.6g", v);
        } else {
            snprintf(b, sizeof b, "null");
        }
        out_ += b;
        return *this;
    }
    Json& integer(const char* k, int64_t v)
    {
        key(k);
        out_ += std::to_string(v);
        return *this;
    }
    Json& raw(const char* k, const std::string& v)
    {
        key(k);
        out_ += v;
        return *this;
    }
    std::string done() const { return out_ + "}"; }

private:
    void key(const char* k)
    {
        out_ += out_.size() > 1 ? "," : "";
        out_ += '"';
        out_ += k;
        out_ += "\":";
    }
    std::string out_ = "{";
};

std::string histJson(const std::map<int, uint64_t>& h)
{
    std::string s = "{";
    for (auto& [k, v] : h) {
        if (s.size() > 1) {
            s += ",";
        }
        s += "\"" + std::to_string(k) + "\":" + std::to_string(v);
    }
    return s + "}";
}

std::string histText(const std::map<int, uint64_t>& h)
{
    std::string s;
    for (auto& [k, v] : h) {
        s += (s.empty() ? "" : " ") + std::to_string(k) + ":" + std::to_string(v);
    }
    return s.empty() ? "-" : s;
}

struct Percentiles {
    double p50 = 0, p90 = 0, p99 = 0, max = 0;
    size_t n = 0;
};

// Latencies in ns -> percentiles in microseconds.
Percentiles percentiles(std::vector<uint64_t>& v)
{
    Percentiles p;
    p.n = v.size();
    if (v.empty()) {
        return p;
    }
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
        size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
        return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1000.0;
    };
    p.p50 = at(0.50);
    p.p90 = at(0.90);
    p.p99 = at(0.99);
    p.max = static_cast<double>(v.back()) / 1000.0;
    return p;
}

std::string latJson(const Percentiles& p)
{
    return Json()
        .num("p50", p.p50)
        .num("p90", p.p90)
        .num("p99", p.p99)
        .num("max", p.max)
        .integer("n", static_cast<int64_t>(p.n))
        .done();
}

std::string latText(const Percentiles& p)
{
    char b[160];
    snprintf(b, sizeof b, "p50 %.0fus p90 %.0fus p99 %.0fus max %.0fus (n=%zu)", p.p50, p.p90,
             p.p99, p.max, p.n);
    return b;
}

struct Mem {
    long rssKb = -1;
    long pssKb = -1;
    long privateDirtyKb = -1;
};

Mem readMem(int pid)
{
    Mem m;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) {
        return m;
    }
    char line[256];
    while (fgets(line, sizeof line, f) != nullptr) {
        long v = 0;
        if (sscanf(line, "Rss: %ld kB", &v) == 1) {
            m.rssKb = v;
        } else if (sscanf(line, "Pss: %ld kB", &v) == 1) {
            m.pssKb = v;
        } else if (sscanf(line, "Private_Dirty: %ld kB", &v) == 1) {
            m.privateDirtyKb = v;
        }
    }
    fclose(f);
    return m;
}

// ---------------------------------------------------------------- URLs

struct Url {
    sockaddr_in addr{};
    std::string host;    // Host header value
    std::string target;  // path and query, may contain {ch}
};

std::optional<Url> parseUrl(const std::string& s, std::string& err)
{
    const std::string scheme = "http://";
    if (s.compare(0, scheme.size(), scheme) != 0) {
        err = "URL must start with http:// : " + s;
        return std::nullopt;
    }
    size_t hostStart = scheme.size();
    size_t slash = s.find('/', hostStart);
    std::string hostPort = s.substr(hostStart, slash == std::string::npos ? std::string::npos
                                                                            : slash - hostStart);
    Url u;
    u.target = slash == std::string::npos ? "/" : s.substr(slash);
    std::string host = hostPort;
    int port = 80;
    size_t colon = hostPort.rfind(':');
    if (colon != std::string::npos) {
        host = hostPort.substr(0, colon);
        char* end = nullptr;
        long p = strtol(hostPort.c_str() + colon + 1, &end, 10);
        if (*end != '\0' || p <= 0 || p > 65535) {
            err = "bad port in URL: " + s;
            return std::nullopt;
        }
        port = static_cast<int>(p);
    }
    if (host == "localhost") {
        host = "127.0.0.1";
    }
    u.addr.sin_family = AF_INET;
    u.addr.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &u.addr.sin_addr) != 1) {
        err = "URL host must be an IPv4 address: " + s;
        return std::nullopt;
    }
    u.host = hostPort;
    return u;
}

std::string expandTarget(const std::string& target, const std::string& runId, int channel)
{
    std::string out = target;
    std::string id = runId + "-" + std::to_string(channel);
    size_t pos = 0;
    while ((pos = out.find("{ch}", pos)) != std::string::npos) {
        out.replace(pos, 4, id);
        pos += id.size();
    }
    return out;
}

// ---------------------------------------------------------------- HTTP parsing

struct Head {
    int status = 0;
    int64_t contentLength = -1;
    bool chunked = false;
    bool connClose = false;
    std::string etag;
    std::string lastModified;
    std::string wsAccept;
    std::string contentType;
};

// Parses a response head at p[0..n). Returns bytes consumed, 0 when more
// data is needed, -1 when malformed.
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

// Incremental chunked transfer-coding decoder.
struct Chunked {
    enum class St { Size, Data, DataEnd, Trailer, Done } st = St::Size;
    uint64_t left = 0;

    // Consumes what it can from p[0..n), appends payload to out. Returns the
    // bytes consumed; sets err on malformed input.
    size_t feed(const char* p, size_t n, std::string& out, bool& err)
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
};

// ---------------------------------------------------------------- connections

enum class Proto { Http, Ws, Sse };

enum class BodyMode { None, Length, Chunked, UntilClose };

struct Conn {
    int fd = -1;
    int index = 0;
    int channel = 0;
    Proto proto = Proto::Http;
    bool connecting = false;
    bool open = false;  // WebSocket upgraded or SSE stream started
    bool headDone = false;
    bool epollOut = false;
    Head head;
    BodyMode bodyMode = BodyMode::None;
    uint64_t bodyLeft = 0;
    Chunked chunk;
    std::string body;
    std::string in;
    size_t inPos = 0;
    std::string out;
    size_t outPos = 0;
    std::string wsKey;
    std::string wsFrag;
    bool wsFragging = false;
    int wsCloseCode = 0;
    bool sseHasData = false;
    std::string sseData;
    uint64_t sentAt = 0;
    // long-poll resume state
    std::string etag;
    std::string lastModified;
    // subscriber accounting
    bool subscribed = false;
    bool warmed = false;
    bool failed = false;
    int reconnects = 0;
    uint64_t maxSeq = 0;
    std::vector<uint8_t> seen;
    uint64_t unique = 0;
    uint64_t dups = 0;
    uint64_t reorders = 0;
    // publisher state
    bool busy = false;
    uint64_t jobSeq = 0;
    int jobChannel = 0;
    bool jobWarm = false;
};

class Events {
public:
    virtual ~Events() = default;
    virtual void onConnected(Conn& c) = 0;
    // An HTTP response (head in c.head, body in c.body) is complete.
    virtual void onResponse(Conn& c) = 0;
    // WebSocket 101 (accept checked) or SSE 200 head received.
    virtual void onOpen(Conn& c) = 0;
    // A WebSocket message or SSE event.
    virtual void onMessage(Conn& c, const char* p, size_t n) = 0;
    virtual void onClosed(Conn& c, const std::string& why) = 0;
};

class Engine {
public:
    explicit Engine(Events& ev) : ev_(ev) {}
    ~Engine()
    {
        if (ep_ >= 0) {
            close(ep_);
        }
    }

    bool init(std::string& err)
    {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) {
            err = std::string("epoll_create1: ") + strerror(errno);
            return false;
        }
        return true;
    }

    // Source addresses for outgoing connections (empty: kernel's choice).
    void setSources(int count, const sockaddr_in& dst)
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

    size_t sourceCount() const { return sources_.empty() ? 1 : sources_.size(); }

    // Starts a non-blocking connect; onConnected follows. False on an
    // immediate failure (errno text in err).
    bool connect(Conn& c, const Url& u, std::string& err)
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

    void send(Conn& c, const char* p, size_t n)
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

    void send(Conn& c, const std::string& s) { send(c, s.data(), s.size()); }

    void closeConn(Conn& c, const std::string& why)
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
    void shutdownConn(Conn& c)
    {
        if (c.fd < 0) {
            return;
        }
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
    }

    void poll(int timeoutMs)
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

    // WebSocket client frames are masked (RFC 6455 5.3).
    void sendWsFrame(Conn& c, int opcode, const char* p, size_t n)
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

    uint64_t bytesRead() const { return bytesRead_; }

private:
    static void resetConn(Conn& c)
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

    void wantWrite(Conn& c, bool on)
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

    void flush(Conn& c)
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

    void readable(Conn& c)
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

    void completeResponse(Conn& c)
    {
        c.headDone = false;
        ev_.onResponse(c);
    }

    void process(Conn& c)
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
                if (c.proto == Proto::Sse && st == 200) {
                    c.open = true;
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
            if (c.open && c.proto == Proto::Sse) {
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
                sseLines(c);
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

    // Returns false when the connection was closed.
    bool wsFrames(Conn& c)
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

    void sseLines(Conn& c)
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

    Events& ev_;
    int ep_ = -1;
    std::vector<sockaddr_in> sources_;
    size_t nextSource_ = 0;
    uint64_t bytesRead_ = 0;
};

// ---------------------------------------------------------------- options

struct Options {
    std::string mode;
    std::string url;
    std::string subUrl;
    std::string pubUrl;
    std::string transport = "ws";
    std::string label;
    std::string runId;
    int conns = 50;
    double duration = 5;
    double warmup = 1;
    int size = 100;
    int subs = 1000;
    int channels = 1;
    int messages = 100;
    double rate = 0;
    int pubConns = 1;
    int connectConcurrency = 200;
    double connectTimeout = 60;
    double drainTimeout = 10;
    double hold = 2;
    double settle = 1;
    int srcAddrs = 0;
    int pairs = 1;
    int measurePid = 0;
    bool wsMeta = false;
};

void usage()
{
    fprintf(stderr,
            "usage: pubsub-load MODE [options]\n"
            "modes:\n"
            "  publish      --url URL [--conns 50] [--duration 5] [--warmup 1] [--size 100]\n"
            "               [--channels 1]   keep-alive POST loop; req/s and status histogram\n"
            "  fanout       --sub-url URL --pub-url URL [--transport ws|sse|longpoll]\n"
            "               [--subs 1000] [--channels 1] [--messages 100] [--rate 0]\n"
            "               [--pub-conns 1] [--size 100] [--drain-timeout 10]\n"
            "               deliveries/s, loss, duplicates, reorders, latency\n"
            "  idle         --sub-url URL [--transport ws|sse] [--subs 1000] [--channels 1]\n"
            "               [--hold 2] [--settle 1] [--pub-url URL] [--measure-pid PID]\n"
            "               holds idle subscribers; with --measure-pid, worker memory\n"
            "               (smaps_rollup) before/after and bytes per subscriber\n"
            "  longpoll-rtt --sub-url URL --pub-url URL [--pairs 1] [--duration 5]\n"
            "               [--warmup 1]   publish -> long-poll delivery -> re-poll loop\n"
            "common: [--connect-concurrency 200] [--connect-timeout 60] [--src-addrs N]\n"
            "        [--ws-meta] [--label TEXT] [--run-id ID]\n"
            "URLs: http://IPv4:PORT/path?query ; '{ch}' in a URL becomes <run-id>-<channel>.\n");
}

bool parseOptions(int argc, char** argv, Options& o, std::string& err)
{
    if (argc < 2) {
        err = "missing mode";
        return false;
    }
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        std::string k = argv[i];
        if (k == "--ws-meta") {
            o.wsMeta = true;
            continue;
        }
        if (k == "-h" || k == "--help") {
            err = "help";
            return false;
        }
        if (i + 1 >= argc) {
            err = "option " + k + " needs a value";
            return false;
        }
        std::string v = argv[++i];
        char* end = nullptr;
        double d = strtod(v.c_str(), &end);
        bool isNum = end != v.c_str() && *end == '\0';
        auto needNum = [&](double lo) {
            if (!isNum || d < lo) {
                err = "option " + k + " needs a number >= " + std::to_string(lo) + ", got '" + v +
                      "'";
                return false;
            }
            return true;
        };
        auto asInt = [&](int& out, double lo) {
            if (!needNum(lo)) {
                return false;
            }
            out = static_cast<int>(d);
            return true;
        };
        auto asDbl = [&](double& out, double lo) {
            if (!needNum(lo)) {
                return false;
            }
            out = d;
            return true;
        };
        bool ok = true;
        if (k == "--url") {
            o.url = v;
        } else if (k == "--sub-url") {
            o.subUrl = v;
        } else if (k == "--pub-url") {
            o.pubUrl = v;
        } else if (k == "--transport") {
            o.transport = v;
        } else if (k == "--label") {
            o.label = v;
        } else if (k == "--run-id") {
            o.runId = v;
        } else if (k == "--conns") {
            ok = asInt(o.conns, 1);
        } else if (k == "--duration") {
            ok = asDbl(o.duration, 0.1);
        } else if (k == "--warmup") {
            ok = asDbl(o.warmup, 0);
        } else if (k == "--size") {
            ok = asInt(o.size, 0);
        } else if (k == "--subs") {
            ok = asInt(o.subs, 1);
        } else if (k == "--channels") {
            ok = asInt(o.channels, 1);
        } else if (k == "--messages") {
            ok = asInt(o.messages, 1);
        } else if (k == "--rate") {
            ok = asDbl(o.rate, 0);
        } else if (k == "--pub-conns") {
            ok = asInt(o.pubConns, 1);
        } else if (k == "--connect-concurrency") {
            ok = asInt(o.connectConcurrency, 1);
        } else if (k == "--connect-timeout") {
            ok = asDbl(o.connectTimeout, 0.1);
        } else if (k == "--drain-timeout") {
            ok = asDbl(o.drainTimeout, 0.1);
        } else if (k == "--hold") {
            ok = asDbl(o.hold, 0);
        } else if (k == "--settle") {
            ok = asDbl(o.settle, 0);
        } else if (k == "--src-addrs") {
            ok = asInt(o.srcAddrs, 1);
        } else if (k == "--pairs") {
            ok = asInt(o.pairs, 1);
        } else if (k == "--measure-pid") {
            ok = asInt(o.measurePid, 1);
        } else {
            err = "unknown option " + k;
            return false;
        }
        if (!ok) {
            return false;
        }
    }
    if (o.mode != "publish" && o.mode != "fanout" && o.mode != "idle" &&
        o.mode != "longpoll-rtt") {
        err = "unknown mode '" + o.mode + "'";
        return false;
    }
    if (o.transport != "ws" && o.transport != "sse" && o.transport != "longpoll") {
        err = "unknown transport '" + o.transport + "' (ws, sse, longpoll)";
        return false;
    }
    if (o.mode == "idle" && o.transport == "longpoll") {
        err = "idle mode supports ws and sse";
        return false;
    }
    if (o.mode == "publish" && o.url.empty()) {
        err = "publish needs --url";
        return false;
    }
    if ((o.mode == "fanout" || o.mode == "longpoll-rtt") &&
        (o.subUrl.empty() || o.pubUrl.empty())) {
        err = o.mode + " needs --sub-url and --pub-url";
        return false;
    }
    if (o.mode == "idle" && o.subUrl.empty()) {
        err = "idle needs --sub-url";
        return false;
    }
    int chans = o.mode == "longpoll-rtt" ? o.pairs : o.channels;
    for (const std::string* u : {&o.url, &o.subUrl, &o.pubUrl}) {
        if (!u->empty() && chans > 1 && u->find("{ch}") == std::string::npos) {
            err = "with several channels the URL needs a {ch} placeholder: " + *u;
            return false;
        }
    }
    if (o.runId.empty()) {
        char b[32];
        snprintf(b, sizeof b, "r%08" PRIx64, nextRand() & 0xffffffffu);
        o.runId = b;
    }
    return true;
}

// Message bodies: "m <channel> <seq> <send-ns> xxx..." padded to --size;
// warm-up bodies: "w <channel> <round>".
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

struct ParsedMsg {
    bool warm = false;
    bool ok = false;
    int channel = -1;
    uint64_t seq = 0;
    uint64_t ts = 0;
};

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

void raiseNofile()
{
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

long nofileLimit()
{
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    return static_cast<long>(rl.rlim_cur);
}

int autoSources(int conns)
{
    // ~28k ephemeral ports per source address; stay well under it so that
    // TIME_WAIT left by earlier runs never exhausts them.
    return std::min(200, 1 + conns / 8000);
}

double clientCpuSec()
{
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

volatile sig_atomic_t g_stop = 0;

void onSignal(int)
{
    g_stop = 1;
}

// ---------------------------------------------------------------- subscribers

std::string subscribeRequest(const Options& o, const Url& u, Conn& c, Proto proto)
{
    std::string target = expandTarget(u.target, o.runId, c.channel);
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

std::string publishRequest(const Url& u, const std::string& target, const std::string& body)
{
    return "POST " + target + " HTTP/1.1\r\nHost: " + u.host +
           "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

Proto protoFor(const std::string& t)
{
    return t == "ws" ? Proto::Ws : t == "sse" ? Proto::Sse : Proto::Http;
}

// A set of subscribers (fanout and idle modes) plus the publishers that
// feed them (warm-up and measured messages).
class SubPub : public Events {
public:
    explicit SubPub(const Options& o) : o_(o), engine_(*this) {}

    bool setup(std::string& err)
    {
        if (!engine_.init(err)) {
            return false;
        }
        auto su = parseUrl(o_.subUrl, err);
        if (!su) {
            return false;
        }
        subUrl_ = *su;
        if (!o_.pubUrl.empty()) {
            auto pu = parseUrl(o_.pubUrl, err);
            if (!pu) {
                return false;
            }
            pubUrl_ = *pu;
            hasPub_ = true;
        }
        int total = o_.subs + o_.pubConns + 16;
        if (total > nofileLimit()) {
            err = "need " + std::to_string(total) + " descriptors, RLIMIT_NOFILE is " +
                  std::to_string(nofileLimit());
            return false;
        }
        engine_.setSources(o_.srcAddrs > 0 ? o_.srcAddrs : autoSources(o_.subs), subUrl_.addr);
        proto_ = protoFor(o_.transport);
        subs_.resize(static_cast<size_t>(o_.subs));
        subsOnChannel_.assign(static_cast<size_t>(o_.channels), 0);
        for (int i = 0; i < o_.subs; i++) {
            subs_[static_cast<size_t>(i)].index = i;
            subs_[static_cast<size_t>(i)].channel = i % o_.channels;
            subs_[static_cast<size_t>(i)].proto = proto_;
        }
        int np = std::min(o_.pubConns, o_.channels);
        pubs_.resize(static_cast<size_t>(np));
        for (int i = 0; i < np; i++) {
            pubs_[static_cast<size_t>(i)].index = -1 - i;
        }
        nextSeq_.assign(static_cast<size_t>(o_.channels), 1);
        okSeqs_.assign(static_cast<size_t>(o_.channels), 0);
        okFlags_.assign(static_cast<size_t>(o_.channels), {});
        return true;
    }

    // Opens every subscriber (bounded concurrent connects). True when all
    // are subscribed; otherwise counts the failures.
    void connectAll()
    {
        uint64_t start = nowNs();
        uint64_t deadline = start + secToNs(o_.connectTimeout);
        size_t next = 0;
        while (!g_stop) {
            while (next < subs_.size() && inFlight_ < o_.connectConcurrency) {
                startSub(subs_[next++]);
            }
            if (subscribed_ + failed_ >= static_cast<int>(subs_.size())) {
                break;
            }
            if (nowNs() > deadline) {
                break;
            }
            engine_.poll(10);
        }
        connectSec_ = nsToSec(nowNs() - start);
    }

    bool connectPubs()
    {
        if (!hasPub_) {
            return true;
        }
        uint64_t deadline = nowNs() + secToNs(5);
        for (auto& p : pubs_) {
            std::string err;
            if (!engine_.connect(p, pubUrl_, err)) {
                fprintf(stderr, "publisher connect failed: %s\n", err.c_str());
                return false;
            }
        }
        while (!g_stop && nowNs() < deadline) {
            bool all = true;
            for (auto& p : pubs_) {
                all = all && p.fd >= 0 && !p.connecting;
            }
            if (all) {
                return true;
            }
            engine_.poll(10);
        }
        fprintf(stderr, "publishers did not connect\n");
        return false;
    }

    // Publishes a warm-up message to every channel until every subscribed
    // subscriber has seen one (up to 3 rounds). Returns subscribers warmed.
    int warmUp()
    {
        if (!hasPub_) {
            return 0;
        }
        for (int round = 1; round <= 3 && !g_stop; round++) {
            for (int ch = 0; ch < o_.channels; ch++) {
                pubJobs_.push_back(Job{ch, 0, true, round});
            }
            uint64_t deadline = nowNs() + secToNs(round == 1 ? 5 : 3);
            while (!g_stop && nowNs() < deadline) {
                pumpPublishers();
                if (warmed_ >= aliveSubscribed() && pubJobs_.empty() && pubsIdle()) {
                    return warmed_;
                }
                engine_.poll(5);
            }
        }
        return warmed_;
    }

    int aliveSubscribed() const { return subscribed_ - closedAfterSub_; }

    // fanout: publishes the measured messages, then drains.
    void runMessages()
    {
        int np = static_cast<int>(pubs_.size());
        // Each publisher owns the channels c with c % np == its index, so
        // every channel's messages leave in order on one connection.
        std::vector<std::vector<int>> owned(static_cast<size_t>(np));
        for (int ch = 0; ch < o_.channels; ch++) {
            owned[static_cast<size_t>(ch % np)].push_back(ch);
        }
        std::vector<int> quota(static_cast<size_t>(np), o_.messages / np);
        for (int i = 0; i < o_.messages % np; i++) {
            quota[static_cast<size_t>(i)]++;
        }
        std::vector<int> sent(static_cast<size_t>(np), 0);
        t0_ = nowNs();
        double perPubRate = o_.rate > 0 ? o_.rate / np : 0;
        while (!g_stop) {
            uint64_t now = nowNs();
            bool allSent = true;
            for (int p = 0; p < np; p++) {
                auto pi = static_cast<size_t>(p);
                if (sent[pi] >= quota[pi]) {
                    continue;
                }
                allSent = false;
                Conn& pc = pubs_[pi];
                if (pc.busy || pc.fd < 0 || pc.connecting) {
                    continue;
                }
                if (perPubRate > 0 &&
                    now < t0_ + static_cast<uint64_t>(sent[pi] / perPubRate * 1e9)) {
                    continue;
                }
                const auto& chans = owned[pi];
                int ch = chans[static_cast<size_t>(sent[pi]) % chans.size()];
                sent[pi]++;
                uint64_t seq = nextSeq_[static_cast<size_t>(ch)]++;
                sendPublish(pc, ch, seq, false, 0);
            }
            if (allSent && pubsIdle()) {
                break;
            }
            engine_.poll(perPubRate > 0 ? 1 : 5);
            reconnectPubs();
        }
        tPubEnd_ = nowNs();
        // drain
        uint64_t deadline = tPubEnd_ + secToNs(o_.drainTimeout);
        uint64_t lastProgress = nowNs();
        uint64_t lastUnique = unique_;
        while (!g_stop && nowNs() < deadline) {
            if (unique_ >= expected()) {
                break;
            }
            engine_.poll(10);
            if (unique_ != lastUnique) {
                lastUnique = unique_;
                lastProgress = nowNs();
            } else if (nowNs() - lastProgress > secToNs(3)) {
                break;
            }
        }
    }

    void hold(double sec)
    {
        uint64_t deadline = nowNs() + secToNs(sec);
        while (!g_stop && nowNs() < deadline) {
            engine_.poll(50);
        }
    }

    uint64_t expected() const
    {
        uint64_t e = 0;
        for (int ch = 0; ch < o_.channels; ch++) {
            e += okSeqs_[static_cast<size_t>(ch)] * subsOnChannel_[static_cast<size_t>(ch)];
        }
        return e;
    }

    void shutdown()
    {
        for (auto& s : subs_) {
            engine_.shutdownConn(s);
        }
        for (auto& p : pubs_) {
            engine_.shutdownConn(p);
        }
    }

    std::string fanoutReport(std::string& human)
    {
        uint64_t lost = 0;
        uint64_t dups = 0;
        uint64_t reorders = 0;
        int subsWithReorder = 0;
        int subsWithLoss = 0;
        for (auto& s : subs_) {
            if (!s.subscribed) {
                continue;
            }
            auto ch = static_cast<size_t>(s.channel);
            uint64_t miss = 0;
            const auto& flags = okFlags_[ch];
            for (size_t q = 1; q < flags.size(); q++) {
                if (flags[q] != 0 && (q >= s.seen.size() || s.seen[q] == 0)) {
                    miss++;
                }
            }
            lost += miss;
            subsWithLoss += miss > 0 ? 1 : 0;
            dups += s.dups;
            reorders += s.reorders;
            subsWithReorder += s.reorders > 0 ? 1 : 0;
        }
        uint64_t lastDelivery = lastDelivery_ > t0_ ? lastDelivery_ : nowNs();
        double span = nsToSec(lastDelivery - t0_);
        double dps = span > 0 ? static_cast<double>(deliveries_) / span : 0;
        double pubSpan = nsToSec(tPubEnd_ - t0_);
        uint64_t pubOk = 0;
        for (auto v : okSeqs_) {
            pubOk += v;
        }
        Percentiles lat = percentiles(latencies_);
        Percentiles plat = percentiles(pubLatencies_);
        Json j;
        j.str("mode", "fanout")
            .str("label", o_.label)
            .str("transport", o_.transport)
            .integer("subs", o_.subs)
            .integer("subscribed", subscribed_)
            .integer("sub_failed", failed_)
            .raw("sub_fail_status", histJson(subFailStatus_))
            .integer("sub_closed", closedAfterSub_)
            .integer("warmed", warmed_)
            .integer("channels", o_.channels)
            .integer("messages", o_.messages)
            .integer("size", o_.size)
            .num("rate", o_.rate)
            .integer("published_ok", static_cast<int64_t>(pubOk))
            .raw("pub_status", histJson(pubStatus_))
            .num("publish_per_sec", pubSpan > 0 ? static_cast<double>(pubOk) / pubSpan : 0)
            .raw("publish_latency_us", latJson(plat))
            .integer("expected", static_cast<int64_t>(expected()))
            .integer("deliveries", static_cast<int64_t>(deliveries_))
            .integer("lost", static_cast<int64_t>(lost))
            .integer("subs_with_loss", subsWithLoss)
            .integer("duplicates", static_cast<int64_t>(dups))
            .integer("reorders", static_cast<int64_t>(reorders))
            .integer("subs_with_reorder", subsWithReorder)
            .integer("wrong_channel", static_cast<int64_t>(wrongChannel_))
            .integer("unparsed", static_cast<int64_t>(unparsed_))
            .num("deliveries_per_sec", dps)
            .num("delivery_span_s", span)
            .raw("latency_us", latJson(lat))
            .num("connect_s", connectSec_)
            .integer("src_addrs", static_cast<int64_t>(engine_.sourceCount()));
        char b[1024];
        snprintf(b, sizeof b,
                 "fanout %s: %d/%d subscribed (%d failed, %d closed), %d warmed, %d channels\n"
                 "  published %" PRIu64 "/%d ok (%s) at %.0f/s\n"
                 "  deliveries %" PRIu64 " of %" PRIu64 " expected in %.3fs = %.0f/s\n"
                 "  lost %" PRIu64 " (%d subs)  dup %" PRIu64 "  reorder %" PRIu64
                 " (%d subs)  wrong-channel %" PRIu64 "  unparsed %" PRIu64 "\n"
                 "  latency %s\n",
                 o_.transport.c_str(), subscribed_, o_.subs, failed_, closedAfterSub_, warmed_,
                 o_.channels, pubOk, o_.messages, histText(pubStatus_).c_str(),
                 pubSpan > 0 ? static_cast<double>(pubOk) / pubSpan : 0, deliveries_, expected(),
                 span, dps, lost, subsWithLoss, dups, reorders, subsWithReorder, wrongChannel_,
                 unparsed_, latText(lat).c_str());
        human = b;
        if (!closeReasons_.empty()) {
            human += "  close reasons:";
            for (auto& [k, v] : closeReasons_) {
                human += " [" + k + "] x" + std::to_string(v);
            }
            human += "\n";
        }
        return j.done();
    }

    int subscribed() const { return subscribed_; }
    int failed() const { return failed_; }
    int closedAfterSub() const { return closedAfterSub_; }
    int warmed() const { return warmed_; }
    double connectSec() const { return connectSec_; }
    const std::map<int, uint64_t>& subFailStatus() const { return subFailStatus_; }
    const std::map<std::string, uint64_t>& closeReasons() const { return closeReasons_; }
    size_t sourceCount() const { return engine_.sourceCount(); }

    // Events
    void onConnected(Conn& c) override
    {
        if (c.index < 0) {
            return;  // publisher: jobs are pumped by the loop
        }
        engine_.send(c, subscribeRequest(o_, subUrl_, c, proto_));
        if (proto_ == Proto::Http && c.fd >= 0 && !c.subscribed) {
            markSubscribed(c);
        }
    }

    void onOpen(Conn& c) override
    {
        if (c.index >= 0 && !c.subscribed) {
            markSubscribed(c);
        }
    }

    void onResponse(Conn& c) override
    {
        if (c.index < 0) {
            publisherResponse(c);
            return;
        }
        int st = c.head.status;
        if (proto_ != Proto::Http) {
            // WebSocket or SSE refused.
            subFailStatus_[st]++;
            engine_.closeConn(c, "subscribe refused with status " + std::to_string(st));
            return;
        }
        // long-poll
        if (st == 200) {
            c.etag = c.head.etag;
            c.lastModified = c.head.lastModified;
            onMessage(c, c.body.data(), c.body.size());
        } else if (st != 304 && st != 408) {
            subFailStatus_[st]++;
            if (++c.reconnects > 20) {
                engine_.closeConn(c, "long-poll status " + std::to_string(st));
                return;
            }
        }
        if (c.fd < 0) {
            return;
        }
        if (c.head.connClose) {
            engine_.shutdownConn(c);
            std::string err;
            if (!engine_.connect(c, subUrl_, err)) {
                subLost(c, err);
            }
            return;
        }
        engine_.send(c, subscribeRequest(o_, subUrl_, c, proto_));
    }

    void onMessage(Conn& c, const char* p, size_t n) override
    {
        ParsedMsg m = parseMessage(p, n, o_.wsMeta);
        if (!m.ok) {
            unparsed_++;
            return;
        }
        if (m.channel != c.channel) {
            wrongChannel_++;
            return;
        }
        if (m.warm) {
            if (!c.warmed) {
                c.warmed = true;
                warmed_++;
            }
            return;
        }
        uint64_t now = nowNs();
        deliveries_++;
        lastDelivery_ = now;
        latencies_.push_back(now - m.ts);
        if (m.seq >= c.seen.size()) {
            c.seen.resize(m.seq + 1 + 16, 0);
        }
        if (c.seen[m.seq] != 0) {
            c.dups++;
            return;
        }
        c.seen[m.seq] = 1;
        c.unique++;
        unique_++;
        if (m.seq < c.maxSeq) {
            c.reorders++;
        } else {
            c.maxSeq = m.seq;
        }
    }

    void onClosed(Conn& c, const std::string& why) override
    {
        if (c.index < 0) {
            c.busy = false;
            if (!ending_) {
                pubCloses_++;
            }
            return;
        }
        if (proto_ == Proto::Http && why == "closed by server" && c.subscribed && !ending_) {
            // Long-poll connection closed between polls: reconnect, keep
            // the resume position.
            std::string err;
            if (c.reconnects++ < 20 && engine_.connect(c, subUrl_, err)) {
                return;
            }
        }
        subLost(c, why);
    }

    void setEnding() { ending_ = true; }

private:
    struct Job {
        int channel;
        uint64_t seq;
        bool warm;
        int round;
    };

    void startSub(Conn& c)
    {
        std::string err;
        inFlight_++;
        if (!engine_.connect(c, subUrl_, err)) {
            inFlight_--;
            failed_++;
            c.failed = true;
            closeReasons_[err]++;
        }
    }

    void markSubscribed(Conn& c)
    {
        c.subscribed = true;
        subscribed_++;
        inFlight_--;
        subsOnChannel_[static_cast<size_t>(c.channel)]++;
    }

    void subLost(Conn& c, const std::string& why)
    {
        std::string key = why.substr(0, 60);
        closeReasons_[key]++;
        if (c.subscribed) {
            if (!c.failed) {
                closedAfterSub_++;
                c.failed = true;
            }
        } else if (!c.failed) {
            c.failed = true;
            failed_++;
            inFlight_--;
        }
    }

    bool pubsIdle() const
    {
        for (auto& p : pubs_) {
            if (p.busy) {
                return false;
            }
        }
        return true;
    }

    void reconnectPubs()
    {
        for (auto& p : pubs_) {
            if (p.fd < 0 && !p.busy) {
                std::string err;
                if (!engine_.connect(p, pubUrl_, err)) {
                    fprintf(stderr, "publisher reconnect failed: %s\n", err.c_str());
                }
            }
        }
    }

    void pumpPublishers()
    {
        reconnectPubs();
        int np = static_cast<int>(pubs_.size());
        for (auto it = pubJobs_.begin(); it != pubJobs_.end();) {
            Conn& pc = pubs_[static_cast<size_t>(it->channel % np)];
            if (pc.busy || pc.fd < 0 || pc.connecting) {
                ++it;
                continue;
            }
            sendPublish(pc, it->channel, it->seq, it->warm, it->round);
            it = pubJobs_.erase(it);
        }
    }

    void sendPublish(Conn& pc, int ch, uint64_t seq, bool warm, int round)
    {
        std::string body;
        uint64_t now = nowNs();
        if (warm) {
            body = "w " + std::to_string(ch) + " " + std::to_string(round);
        } else {
            body = messageBody(ch, seq, now, o_.size);
        }
        pc.busy = true;
        pc.jobChannel = ch;
        pc.jobSeq = seq;
        pc.jobWarm = warm;
        pc.sentAt = now;
        engine_.send(pc, publishRequest(pubUrl_, expandTarget(pubUrl_.target, o_.runId, ch),
                                        body));
    }

    void publisherResponse(Conn& c)
    {
        c.busy = false;
        int st = c.head.status;
        if (!c.jobWarm) {
            pubStatus_[st]++;
            pubLatencies_.push_back(nowNs() - c.sentAt);
            if (st >= 200 && st < 300) {
                auto ch = static_cast<size_t>(c.jobChannel);
                okSeqs_[ch]++;
                auto& f = okFlags_[ch];
                if (c.jobSeq >= f.size()) {
                    f.resize(c.jobSeq + 1, 0);
                }
                f[c.jobSeq] = 1;
            }
        } else if (st < 200 || st >= 300) {
            warmFailStatus_[st]++;
        }
        if (c.head.connClose) {
            engine_.shutdownConn(c);
        }
    }

    const Options& o_;
    Engine engine_;
    Url subUrl_;
    Url pubUrl_;
    bool hasPub_ = false;
    Proto proto_ = Proto::Ws;
    std::vector<Conn> subs_;
    std::vector<Conn> pubs_;
    std::vector<uint64_t> subsOnChannel_;
    std::vector<uint64_t> nextSeq_;
    std::vector<uint64_t> okSeqs_;
    std::vector<std::vector<uint8_t>> okFlags_;
    std::vector<Job> pubJobs_;
    int inFlight_ = 0;
    int subscribed_ = 0;
    int failed_ = 0;
    int closedAfterSub_ = 0;
    int warmed_ = 0;
    int pubCloses_ = 0;
    bool ending_ = false;
    double connectSec_ = 0;
    uint64_t t0_ = 0;
    uint64_t tPubEnd_ = 0;
    uint64_t lastDelivery_ = 0;
    uint64_t deliveries_ = 0;
    uint64_t unique_ = 0;
    uint64_t wrongChannel_ = 0;
    uint64_t unparsed_ = 0;
    std::vector<uint64_t> latencies_;
    std::vector<uint64_t> pubLatencies_;
    std::map<int, uint64_t> pubStatus_;
    std::map<int, uint64_t> subFailStatus_;
    std::map<int, uint64_t> warmFailStatus_;
    std::map<std::string, uint64_t> closeReasons_;
};

int runFanout(const Options& o)
{
    SubPub sp(o);
    std::string err;
    if (!sp.setup(err)) {
        fprintf(stderr, "pubsub-load: %s\n", err.c_str());
        return 2;
    }
    sp.connectAll();
    fprintf(stderr, "fanout: %d/%d subscribed in %.2fs (%zu source addresses)\n", sp.subscribed(),
            o.subs, sp.connectSec(), sp.sourceCount());
    if (!sp.connectPubs()) {
        sp.shutdown();
        return 1;
    }
    int w = sp.warmUp();
    if (w < sp.aliveSubscribed()) {
        fprintf(stderr, "fanout: only %d of %d subscribers received the warm-up\n", w,
                sp.aliveSubscribed());
    }
    sp.runMessages();
    sp.setEnding();
    std::string human;
    std::string json = sp.fanoutReport(human);
    json.pop_back();
    json += ",\"client_cpu_s\":" + std::to_string(clientCpuSec()) + "}";
    sp.shutdown();
    printf("%s\n", json.c_str());
    fflush(stdout);
    fputs(human.c_str(), stderr);
    return 0;
}

int runIdle(const Options& o)
{
    SubPub sp(o);
    std::string err;
    if (!sp.setup(err)) {
        fprintf(stderr, "pubsub-load: %s\n", err.c_str());
        return 2;
    }
    Mem before;
    if (o.measurePid > 0) {
        before = readMem(o.measurePid);
        if (before.rssKb < 0) {
            fprintf(stderr, "pubsub-load: cannot read /proc/%d/smaps_rollup\n", o.measurePid);
            return 2;
        }
    }
    sp.connectAll();
    sp.hold(o.settle);
    // "after": subscribed, nothing delivered yet. "afterMsg": after one
    // warm-up message reached every subscriber (proves the subscriptions).
    Mem after;
    if (o.measurePid > 0) {
        after = readMem(o.measurePid);
    }
    int warmed = 0;
    Mem afterMsg;
    if (!o.pubUrl.empty() && sp.connectPubs()) {
        warmed = sp.warmUp();
        sp.hold(o.settle);
        if (o.measurePid > 0) {
            afterMsg = readMem(o.measurePid);
        }
    }
    int alive = sp.aliveSubscribed();
    sp.hold(o.hold);
    int aliveEnd = sp.aliveSubscribed();
    sp.setEnding();
    sp.shutdown();
    auto perSub = [&](long a, long b) {
        return alive > 0 && a >= 0 && b >= 0 ? static_cast<double>(b - a) * 1024.0 / alive : 0.0;
    };
    double rssPer = perSub(before.rssKb, after.rssKb);
    double pdPer = perSub(before.privateDirtyKb, after.privateDirtyKb);
    double rssMsgPer = perSub(before.rssKb, afterMsg.rssKb);
    double pdMsgPer = perSub(before.privateDirtyKb, afterMsg.privateDirtyKb);
    Json j;
    j.str("mode", "idle")
        .str("label", o.label)
        .str("transport", o.transport)
        .integer("subs", o.subs)
        .integer("subscribed", sp.subscribed())
        .integer("sub_failed", sp.failed())
        .raw("sub_fail_status", histJson(sp.subFailStatus()))
        .integer("alive_at_measure", alive)
        .integer("alive_at_end", aliveEnd)
        .integer("warmed", warmed)
        .integer("channels", o.channels)
        .num("connect_s", sp.connectSec())
        .num("connects_per_sec", sp.connectSec() > 0 ? sp.subscribed() / sp.connectSec() : 0)
        .integer("worker_pid", o.measurePid)
        .integer("rss_before_kb", before.rssKb)
        .integer("rss_after_kb", after.rssKb)
        .integer("private_dirty_before_kb", before.privateDirtyKb)
        .integer("private_dirty_after_kb", after.privateDirtyKb)
        .num("rss_bytes_per_sub", rssPer)
        .num("private_dirty_bytes_per_sub", pdPer)
        .integer("rss_after_msg_kb", afterMsg.rssKb)
        .integer("private_dirty_after_msg_kb", afterMsg.privateDirtyKb)
        .num("rss_bytes_per_sub_after_msg", rssMsgPer)
        .num("private_dirty_bytes_per_sub_after_msg", pdMsgPer);
    j.num("client_cpu_s", clientCpuSec());
    printf("%s\n", j.done().c_str());
    fflush(stdout);
    fprintf(stderr,
            "idle %s: %d/%d subscribed in %.2fs (%d failed), %d alive at measurement, %d at "
            "end, %d warmed\n",
            o.transport.c_str(), sp.subscribed(), o.subs, sp.connectSec(), sp.failed(), alive,
            aliveEnd, warmed);
    if (o.measurePid > 0) {
        fprintf(stderr,
                "  worker %d: RSS %ld -> %ld kB (%.0f B/sub), Private_Dirty %ld -> %ld kB "
                "(%.0f B/sub)\n",
                o.measurePid, before.rssKb, after.rssKb, rssPer, before.privateDirtyKb,
                after.privateDirtyKb, pdPer);
        if (afterMsg.rssKb >= 0) {
            fprintf(stderr,
                    "  after one message to each: RSS %ld kB (%.0f B/sub), Private_Dirty %ld kB "
                    "(%.0f B/sub)\n",
                    afterMsg.rssKb, rssMsgPer, afterMsg.privateDirtyKb, pdMsgPer);
        }
    }
    for (auto& [k, v] : sp.closeReasons()) {
        fprintf(stderr, "  close reason [%s] x%" PRIu64 "\n", k.c_str(), v);
    }
    return 0;
}

// ---------------------------------------------------------------- publish mode

class PublishLoad : public Events {
public:
    explicit PublishLoad(const Options& o) : o_(o), engine_(*this) {}

    int run()
    {
        std::string err;
        if (!engine_.init(err)) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        auto u = parseUrl(o_.url, err);
        if (!u) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        url_ = *u;
        engine_.setSources(o_.srcAddrs > 0 ? o_.srcAddrs : 1, url_.addr);
        std::string body(static_cast<size_t>(o_.size), 'x');
        for (int ch = 0; ch < o_.channels; ch++) {
            requests_.push_back(
                publishRequest(url_, expandTarget(url_.target, o_.runId, ch), body));
        }
        conns_.resize(static_cast<size_t>(o_.conns));
        for (int i = 0; i < o_.conns; i++) {
            Conn& c = conns_[static_cast<size_t>(i)];
            c.index = i;
            c.channel = i % o_.channels;
            if (!engine_.connect(c, url_, err)) {
                fprintf(stderr, "pubsub-load: %s\n", err.c_str());
                return 1;
            }
        }
        uint64_t start = nowNs();
        measureFrom_ = start + secToNs(o_.warmup);
        measureTo_ = measureFrom_ + secToNs(o_.duration);
        while (!g_stop && nowNs() < measureTo_) {
            engine_.poll(10);
        }
        // let in-flight requests finish (not counted)
        uint64_t grace = nowNs() + secToNs(1);
        while (!g_stop && nowNs() < grace && busy_ > 0) {
            engine_.poll(10);
        }
        ending_ = true;
        for (auto& c : conns_) {
            engine_.shutdownConn(c);
        }
        uint64_t ok = 0;
        uint64_t total = 0;
        for (auto& [k, v] : status_) {
            total += v;
            ok += k >= 200 && k < 300 ? v : 0;
        }
        Percentiles lat = percentiles(lat_);
        double rps = static_cast<double>(total) / o_.duration;
        Json j;
        j.str("mode", "publish")
            .str("label", o_.label)
            .integer("conns", o_.conns)
            .integer("channels", o_.channels)
            .integer("size", o_.size)
            .num("duration_s", o_.duration)
            .integer("requests", static_cast<int64_t>(total))
            .integer("ok", static_cast<int64_t>(ok))
            .integer("non_2xx", static_cast<int64_t>(total - ok))
            .num("req_per_sec", rps)
            .num("ok_per_sec", static_cast<double>(ok) / o_.duration)
            .raw("status", histJson(status_))
            .integer("conn_errors", errors_)
            .integer("reconnects", reconnects_)
            .raw("latency_us", latJson(lat));
        j.num("client_cpu_s", clientCpuSec());
        printf("%s\n", j.done().c_str());
        fflush(stdout);
        fprintf(stderr,
                "publish: %" PRIu64 " requests in %.1fs = %.0f req/s (status %s), %d conn errors, "
                "%d reconnects\n  latency %s\n",
                total, o_.duration, rps, histText(status_).c_str(), errors_, reconnects_,
                latText(lat).c_str());
        for (auto& [k, v] : reasons_) {
            fprintf(stderr, "  close reason [%s] x%" PRIu64 "\n", k.c_str(), v);
        }
        return 0;
    }

    void onConnected(Conn& c) override { sendNext(c); }
    void onOpen(Conn&) override {}
    void onMessage(Conn&, const char*, size_t) override {}

    void onResponse(Conn& c) override
    {
        busy_--;
        c.busy = false;
        uint64_t now = nowNs();
        if (now >= measureFrom_ && now < measureTo_) {
            status_[c.head.status]++;
            lat_.push_back(now - c.sentAt);
        }
        if (c.head.connClose) {
            engine_.shutdownConn(c);
            reconnect(c);
            return;
        }
        if (now < measureTo_) {
            sendNext(c);
        }
    }

    void onClosed(Conn& c, const std::string& why) override
    {
        if (ending_) {
            return;
        }
        if (c.busy) {
            busy_--;
        }
        errors_++;
        reasons_[why.substr(0, 60)]++;
        if (nowNs() < measureTo_ && errors_ < 10000) {
            reconnect(c);
        }
    }

private:
    void reconnect(Conn& c)
    {
        c.busy = false;
        reconnects_++;
        std::string err;
        if (!engine_.connect(c, url_, err)) {
            errors_++;
            reasons_[err]++;
        }
    }

    void sendNext(Conn& c)
    {
        c.busy = true;
        busy_++;
        c.sentAt = nowNs();
        engine_.send(c, requests_[static_cast<size_t>(c.channel)]);
    }

    const Options& o_;
    Engine engine_;
    Url url_;
    std::vector<std::string> requests_;
    std::vector<Conn> conns_;
    uint64_t measureFrom_ = 0;
    uint64_t measureTo_ = 0;
    int busy_ = 0;
    int errors_ = 0;
    int reconnects_ = 0;
    bool ending_ = false;
    std::map<int, uint64_t> status_;
    std::map<std::string, uint64_t> reasons_;
    std::vector<uint64_t> lat_;
};

// ---------------------------------------------------------------- long-poll RTT

// Each pair: a long-poll subscriber and a publisher on their own channel.
// Message k+1 is published once the subscriber has received message k and
// the publisher has its response for k.
class LongpollRtt : public Events {
public:
    explicit LongpollRtt(const Options& o) : o_(o), engine_(*this) {}

    int run()
    {
        std::string err;
        if (!engine_.init(err)) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        auto su = parseUrl(o_.subUrl, err);
        auto pu = su ? parseUrl(o_.pubUrl, err) : std::nullopt;
        if (!su || !pu) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        subUrl_ = *su;
        pubUrl_ = *pu;
        size_t n = static_cast<size_t>(o_.pairs);
        subs_.resize(n);
        pubs_.resize(n);
        pairs_.resize(n);
        for (size_t i = 0; i < n; i++) {
            subs_[i].index = static_cast<int>(i);
            subs_[i].channel = static_cast<int>(i);
            pubs_[i].index = -1 - static_cast<int>(i);
            pubs_[i].channel = static_cast<int>(i);
            if (!engine_.connect(subs_[i], subUrl_, err) ||
                !engine_.connect(pubs_[i], pubUrl_, err)) {
                fprintf(stderr, "pubsub-load: %s\n", err.c_str());
                return 1;
            }
        }
        // wait for connections and for the first polls to be sent
        uint64_t deadline = nowNs() + secToNs(o_.connectTimeout);
        while (!g_stop && nowNs() < deadline) {
            bool all = true;
            for (size_t i = 0; i < n; i++) {
                all = all && subs_[i].subscribed && pubs_[i].fd >= 0 && !pubs_[i].connecting;
            }
            if (all) {
                break;
            }
            engine_.poll(10);
        }
        // give the server a moment to register the polls
        uint64_t t = nowNs() + secToNs(0.2);
        while (nowNs() < t) {
            engine_.poll(10);
        }
        uint64_t start = nowNs();
        measureFrom_ = start + secToNs(o_.warmup);
        measureTo_ = measureFrom_ + secToNs(o_.duration);
        for (size_t i = 0; i < n; i++) {
            publishNext(i);
        }
        while (!g_stop && nowNs() < measureTo_) {
            engine_.poll(10);
            uint64_t now = nowNs();
            for (size_t i = 0; i < n; i++) {
                Pair& p = pairs_[i];
                // a round trip that never completes: count it and go on
                if (p.waitingSince != 0 && now - p.waitingSince > secToNs(2)) {
                    stalls_++;
                    p.gotSub = true;
                    p.gotPub = true;
                    p.waitingSince = 0;
                    publishNext(i);
                }
                if (pubs_[i].fd < 0 && !pubs_[i].busy) {
                    std::string e2;
                    if (engine_.connect(pubs_[i], pubUrl_, e2)) {
                        reconnects_++;
                    }
                }
            }
        }
        ending_ = true;
        for (size_t i = 0; i < n; i++) {
            engine_.shutdownConn(subs_[i]);
            engine_.shutdownConn(pubs_[i]);
        }
        Percentiles lat = percentiles(lat_);
        double rtps = static_cast<double>(roundTrips_) / o_.duration;
        Json j;
        j.str("mode", "longpoll-rtt")
            .str("label", o_.label)
            .integer("pairs", o_.pairs)
            .integer("size", o_.size)
            .num("duration_s", o_.duration)
            .integer("round_trips", static_cast<int64_t>(roundTrips_))
            .num("round_trips_per_sec", rtps)
            .integer("stalls", static_cast<int64_t>(stalls_))
            .integer("out_of_order", static_cast<int64_t>(outOfOrder_))
            .raw("pub_status", histJson(pubStatus_))
            .raw("sub_status", histJson(subStatus_))
            .integer("reconnects", reconnects_)
            .raw("latency_us", latJson(lat));
        j.num("client_cpu_s", clientCpuSec());
        printf("%s\n", j.done().c_str());
        fflush(stdout);
        fprintf(stderr,
                "longpoll-rtt: %d pairs, %" PRIu64 " round trips in %.1fs = %.0f/s, %" PRIu64
                " stalls, %" PRIu64 " out of order\n  pub %s  sub %s\n  publish->delivery %s\n",
                o_.pairs, roundTrips_, o_.duration, rtps, stalls_, outOfOrder_,
                histText(pubStatus_).c_str(), histText(subStatus_).c_str(),
                latText(lat).c_str());
        return 0;
    }

    void onConnected(Conn& c) override
    {
        if (c.index >= 0) {
            engine_.send(c, subscribeRequest(o_, subUrl_, c, Proto::Http));
            c.subscribed = true;
        }
    }
    void onOpen(Conn&) override {}
    void onMessage(Conn&, const char*, size_t) override {}

    void onResponse(Conn& c) override
    {
        uint64_t now = nowNs();
        if (c.index < 0) {
            size_t i = static_cast<size_t>(-1 - c.index);
            c.busy = false;
            pubStatus_[c.head.status]++;
            if (c.head.connClose) {
                engine_.shutdownConn(c);
            }
            pairs_[i].gotPub = true;
            maybeNext(i);
            return;
        }
        size_t i = static_cast<size_t>(c.index);
        Pair& p = pairs_[i];
        if (c.head.status == 200) {
            c.etag = c.head.etag;
            c.lastModified = c.head.lastModified;
            ParsedMsg m = parseMessage(c.body.data(), c.body.size(), false);
            if (m.ok && !m.warm && m.channel == c.channel) {
                if (m.seq == p.seq) {
                    if (now >= measureFrom_ && now < measureTo_) {
                        roundTrips_++;
                        lat_.push_back(now - m.ts);
                    }
                    p.gotSub = true;
                } else if (m.seq < p.seq) {
                    outOfOrder_++;
                }
            }
        } else {
            subStatus_[c.head.status]++;
        }
        if (c.head.connClose) {
            engine_.shutdownConn(c);
            std::string err;
            if (engine_.connect(c, subUrl_, err)) {
                reconnects_++;
            }
        } else {
            engine_.send(c, subscribeRequest(o_, subUrl_, c, Proto::Http));
        }
        maybeNext(i);
    }

    void onClosed(Conn& c, const std::string&) override
    {
        if (ending_) {
            return;
        }
        c.busy = false;
        if (c.index >= 0) {
            std::string err;
            if (engine_.connect(c, subUrl_, err)) {
                reconnects_++;
            }
        } else {
            pairs_[static_cast<size_t>(-1 - c.index)].gotPub = true;
        }
    }

private:
    struct Pair {
        uint64_t seq = 0;
        bool gotSub = false;
        bool gotPub = false;
        uint64_t waitingSince = 0;
    };

    void maybeNext(size_t i)
    {
        Pair& p = pairs_[i];
        if (p.gotSub && p.gotPub && nowNs() < measureTo_) {
            publishNext(i);
        }
    }

    void publishNext(size_t i)
    {
        Pair& p = pairs_[i];
        Conn& pc = pubs_[i];
        if (pc.fd < 0 || pc.connecting) {
            return;
        }
        p.seq++;
        p.gotSub = false;
        p.gotPub = false;
        uint64_t now = nowNs();
        p.waitingSince = now;
        pc.busy = true;
        engine_.send(pc, publishRequest(pubUrl_, expandTarget(pubUrl_.target, o_.runId, pc.channel),
                                        messageBody(pc.channel, p.seq, now, o_.size)));
    }

    const Options& o_;
    Engine engine_;
    Url subUrl_;
    Url pubUrl_;
    std::vector<Conn> subs_;
    std::vector<Conn> pubs_;
    std::vector<Pair> pairs_;
    uint64_t measureFrom_ = 0;
    uint64_t measureTo_ = 0;
    uint64_t roundTrips_ = 0;
    uint64_t stalls_ = 0;
    uint64_t outOfOrder_ = 0;
    int reconnects_ = 0;
    bool ending_ = false;
    std::map<int, uint64_t> pubStatus_;
    std::map<int, uint64_t> subStatus_;
    std::vector<uint64_t> lat_;
};

}  // namespace

int main(int argc, char** argv)
{
    g_rand ^= nowNs() ^ (static_cast<uint64_t>(getpid()) << 32);
    nextRand();
    Options o;
    std::string err;
    if (!parseOptions(argc, argv, o, err)) {
        if (err != "help") {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
        }
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, onSignal);
    signal(SIGTERM, onSignal);
    raiseNofile();
    if (o.mode == "publish") {
        if (o.conns + 16 > nofileLimit()) {
            fprintf(stderr, "pubsub-load: --conns %d exceeds RLIMIT_NOFILE %ld\n", o.conns,
                    nofileLimit());
            return 2;
        }
        PublishLoad p(o);
        return p.run();
    }
    if (o.mode == "fanout") {
        return runFanout(o);
    }
    if (o.mode == "idle") {
        return runIdle(o);
    }
    LongpollRtt l(o);
    return l.run();
}
