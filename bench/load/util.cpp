#include "util.h"

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace load {

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
}  // namespace load
