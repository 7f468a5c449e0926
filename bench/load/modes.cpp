// pubsub-load: the publish, longpoll-rtt and churn modes.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine.h"
#include "http.h"
#include "report.h"
#include "scenario.h"
#include "util.h"

namespace load {

namespace {

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

// ---------------------------------------------------------------- churn mode

// Subscribe/unsubscribe churn: --conns slots each connect, send the
// subscribe request, wait for the WebSocket 101 (accept key checked) or the
// SSE 200 head, close, and start again at once. Every connection gets a new
// {sub} number (a new presence member per connection when the URL carries
// it). Subscriptions/s = opens within the measured window / its length.
class Churn : public Events {
public:
    explicit Churn(const Options& o) : o_(o), engine_(*this) {}

    int run()
    {
        std::string err;
        if (!engine_.init(err)) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        auto u = parseUrl(o_.subUrl, err);
        if (!u) {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
            return 2;
        }
        url_ = *u;
        if (o_.conns + 16 > nofileLimit()) {
            fprintf(stderr, "pubsub-load: --conns %d exceeds RLIMIT_NOFILE %ld\n", o_.conns,
                    nofileLimit());
            return 2;
        }
        // The client closes first and keeps the TIME_WAIT: spread the
        // connections over several source addresses so ports never run out.
        engine_.setSources(o_.srcAddrs > 0 ? o_.srcAddrs : 8, url_.addr);
        proto_ = protoFor(o_.transport);
        conns_.resize(static_cast<size_t>(o_.conns));
        uint64_t start = nowNs();
        from_ = start + secToNs(o_.warmup);
        to_ = from_ + secToNs(o_.duration);
        for (size_t i = 0; i < conns_.size(); i++) {
            conns_[i].channel = static_cast<int>(i) % o_.channels;
            conns_[i].proto = proto_;
            pending_.push_back(i);
        }
        while (!g_stop && nowNs() < to_) {
            std::vector<size_t> todo;
            todo.swap(pending_);
            for (size_t i : todo) {
                startConn(conns_[i]);
            }
            engine_.poll(pending_.empty() ? 10 : 0);
        }
        ending_ = true;
        for (auto& c : conns_) {
            engine_.shutdownConn(c);
        }
        Percentiles lat = percentiles(lat_);
        double sps = static_cast<double>(opens_) / o_.duration;
        Json j;
        j.str("mode", "churn")
            .str("label", o_.label)
            .str("transport", o_.transport)
            .integer("conns", o_.conns)
            .integer("channels", o_.channels)
            .num("duration_s", o_.duration)
            .integer("subscriptions", static_cast<int64_t>(opens_))
            .num("subscriptions_per_sec", sps)
            .integer("subscriptions_total", static_cast<int64_t>(opensTotal_))
            .integer("attempts", static_cast<int64_t>(attempts_))
            .integer("failures", static_cast<int64_t>(failures_))
            .raw("fail_status", histJson(failStatus_))
            .raw("latency_us", latJson(lat));
        j.num("client_cpu_s", clientCpuSec());
        printf("%s\n", j.done().c_str());
        fflush(stdout);
        fprintf(stderr,
                "churn %s: %" PRIu64 " subscriptions in %.1fs = %.0f/s over %d slots, %" PRIu64
                " failures (of %" PRIu64 " attempts in the window)\n  connect->open %s\n",
                o_.transport.c_str(), opens_, o_.duration, sps, o_.conns, failures_, attempts_,
                latText(lat).c_str());
        for (auto& [k, v] : reasons_) {
            fprintf(stderr, "  failure [%s] x%" PRIu64 "\n", k.c_str(), v);
        }
        return 0;
    }

    void onConnected(Conn& c) override { engine_.send(c, subscribeRequest(o_, url_, c, proto_)); }

    void onOpen(Conn& c) override
    {
        uint64_t now = nowNs();
        opensTotal_++;
        if (inWindow(c.sentAt)) {
            opens_++;
            lat_.push_back(now - c.sentAt);
        }
        finish(c);
    }

    void onResponse(Conn& c) override
    {
        if (inWindow(c.sentAt)) {
            failures_++;
            failStatus_[c.head.status]++;
        }
        finish(c);
    }

    void onMessage(Conn&, const char*, size_t) override {}

    void onClosed(Conn& c, const std::string& why) override
    {
        if (ending_) {
            return;
        }
        if (inWindow(c.sentAt)) {
            failures_++;
            reasons_[why]++;
        }
        pending_.push_back(static_cast<size_t>(&c - conns_.data()));
    }

private:
    bool inWindow(uint64_t t) const { return t >= from_ && t < to_; }

    void startConn(Conn& c)
    {
        c.index = next_++;
        c.sentAt = nowNs();
        if (inWindow(c.sentAt)) {
            attempts_++;
        }
        std::string err;
        if (!engine_.connect(c, url_, err)) {
            if (inWindow(c.sentAt)) {
                failures_++;
                reasons_[err]++;
            }
            // retried from the loop (bounded by the run's end)
            pending_.push_back(static_cast<size_t>(&c - conns_.data()));
        }
    }

    // Closes (deferred reconnect: never reuse a Conn inside its own event).
    void finish(Conn& c)
    {
        engine_.shutdownConn(c);
        if (!ending_) {
            pending_.push_back(static_cast<size_t>(&c - conns_.data()));
        }
    }

    const Options& o_;
    Engine engine_;
    Url url_;
    Proto proto_ = Proto::Ws;
    std::vector<Conn> conns_;
    std::vector<size_t> pending_;
    int next_ = 0;
    uint64_t from_ = 0;
    uint64_t to_ = 0;
    bool ending_ = false;
    uint64_t opens_ = 0;
    uint64_t opensTotal_ = 0;
    uint64_t attempts_ = 0;
    uint64_t failures_ = 0;
    std::map<int, uint64_t> failStatus_;
    std::map<std::string, uint64_t> reasons_;
    std::vector<uint64_t> lat_;
};
}  // namespace

int runPublish(const Options& o)
{
    PublishLoad p(o);
    return p.run();
}

int runLongpollRtt(const Options& o)
{
    LongpollRtt l(o);
    return l.run();
}

int runChurn(const Options& o)
{
    Churn c(o);
    return c.run();
}

}  // namespace load
