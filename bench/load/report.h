// pubsub-load: the run's report: a small JSON object writer (one JSON line
// on stdout per run), status histograms and latency percentiles.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace load {

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

std::string histJson(const std::map<int, uint64_t>& h);
std::string histText(const std::map<int, uint64_t>& h);

struct Percentiles {
    double p50 = 0, p90 = 0, p99 = 0, max = 0;
    size_t n = 0;
};


// Latencies in ns -> percentiles in microseconds.
Percentiles percentiles(std::vector<uint64_t>& v);
std::string latJson(const Percentiles& p);
std::string latText(const Percentiles& p);

}  // namespace load
