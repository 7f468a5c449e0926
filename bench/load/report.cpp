#include "report.h"

#include <algorithm>

namespace load {

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

}  // namespace load
