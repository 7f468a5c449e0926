// pubsub-load: clocks, the random source, strings, URLs, process limits and
// the worker's memory (/proc/PID/smaps_rollup).
#pragma once

#include <netinet/in.h>
#include <signal.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace load {

uint64_t nowNs();
uint64_t secToNs(double s);
double nsToSec(uint64_t ns);

// xorshift64; seeded by main()
extern uint64_t g_rand;
uint64_t nextRand();

bool iequals(const char* a, size_t an, const char* b);
bool icontains(const std::string& hay, const char* needle);
std::string base64(const uint8_t* p, size_t n);

struct Mem {
    long rssKb = -1;
    long pssKb = -1;
    long privateDirtyKb = -1;
};

Mem readMem(int pid);

struct Url {
    sockaddr_in addr{};
    std::string host;    // Host header value
    std::string target;  // path and query, may contain {ch}
};

std::optional<Url> parseUrl(const std::string& s, std::string& err);
std::string expandTarget(const std::string& target, const std::string& runId, int channel);

void raiseNofile();
long nofileLimit();
int autoSources(int conns);
double clientCpuSec();

// set by SIGINT/SIGTERM: every loop ends
extern volatile sig_atomic_t g_stop;
void onSignal(int);

}  // namespace load
