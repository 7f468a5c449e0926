// pubsub-load: churn --transport pusher: presence join/leave churn on open
// Pusher connections.
//
// --conns connections ("slots") each loop: pusher:subscribe to its presence
// channel as a new member (signed, channel_data {"user_id": --pusher-user
// with a new {sub}), wait for subscription_succeeded, pusher:unsubscribe,
// subscribe again at once. Slot i uses channel i % --channels. --watchers
// connections per channel subscribe first as members "watcher-<n>" and
// only count the member_added / member_removed they receive: each join of
// the run must reach every watcher of its channel once, and so must its
// leave (after the server's leave delay; the run waits up to --drain s).
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine.h"
#include "pusher.h"
#include "report.h"
#include "scenario.h"
#include "util.h"

namespace load {

namespace {

class PusherChurn : public Events {
public:
    explicit PusherChurn(const Options& o) : o_(o), engine_(*this) {}

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
        int nw = o_.watchers * o_.channels;
        int total = o_.conns + nw;
        if (total + 16 > nofileLimit()) {
            fprintf(stderr, "pubsub-load: %d connections exceed RLIMIT_NOFILE %ld\n", total,
                    nofileLimit());
            return 2;
        }
        engine_.setSources(o_.srcAddrs > 0 ? o_.srcAddrs : autoSources(total), url_.addr);
        conns_.resize(static_cast<size_t>(total));
        st_.resize(conns_.size());
        joins_.assign(static_cast<size_t>(o_.channels), 0);
        watchersOn_.assign(static_cast<size_t>(o_.channels), 0);
        for (int i = 0; i < total; i++) {
            Conn& c = conns_[static_cast<size_t>(i)];
            State& s = st_[static_cast<size_t>(i)];
            s.watcher = i >= o_.conns;
            c.index = i;
            c.channel = (s.watcher ? i - o_.conns : i) % o_.channels;
            c.proto = Proto::Ws;
            s.channel = pusherChannelFor(o_, c.channel, i);
        }

        // every connection established, every watcher subscribed
        uint64_t start = nowNs();
        uint64_t deadline = start + secToNs(o_.connectTimeout);
        size_t next = 0;
        while (!g_stop && nowNs() < deadline) {
            while (next < conns_.size() && inFlight_ < o_.connectConcurrency) {
                inFlight_++;
                if (!engine_.connect(conns_[next], url_, err)) {
                    setupFailures_++;
                    reasons_[err]++;
                    inFlight_--;
                }
                next++;
            }
            if (next == conns_.size() && slotsReady_ + watchersReady_ + setupFailures_ >= total) {
                break;
            }
            engine_.poll(10);
        }
        double setupSec = nsToSec(nowNs() - start);
        fprintf(stderr, "pusher churn: %d/%d slots established, %d/%d watchers subscribed in "
                "%.2fs\n", slotsReady_, o_.conns, watchersReady_, nw, setupSec);

        // the churn
        churning_ = true;
        start = nowNs();
        from_ = start + secToNs(o_.warmup);
        to_ = from_ + secToNs(o_.duration);
        for (size_t i = 0; i < static_cast<size_t>(o_.conns); i++) {
            if (st_[i].socketId.size() > 0 && conns_[i].fd >= 0) {
                subscribe(i);
            }
        }
        while (!g_stop && nowNs() < to_) {
            engine_.poll(10);
        }
        // the last subscribes' answers (each success is unsubscribed at once)
        deadline = nowNs() + secToNs(5);
        while (!g_stop && pendingSubs_ > 0 && nowNs() < deadline) {
            engine_.poll(10);
        }
        churning_ = false;
        // the leaves reach the watchers after the server's leave delay
        uint64_t drainFrom = nowNs();
        deadline = drainFrom + secToNs(o_.drain);
        while (!g_stop && nowNs() < deadline &&
               (added_ < expectedEvents() || removed_ < expectedEvents())) {
            engine_.poll(10);
        }
        double drainSec = nsToSec(nowNs() - drainFrom);
        ending_ = true;
        for (auto& c : conns_) {
            engine_.shutdownConn(c);
        }

        uint64_t expected = expectedEvents();
        auto missing = [&](uint64_t got) { return got < expected ? expected - got : 0; };
        auto extra = [&](uint64_t got) { return got > expected ? got - expected : 0; };
        Percentiles lat = percentiles(lat_);
        double sps = static_cast<double>(opens_) / o_.duration;
        Json j;
        j.str("mode", "churn")
            .str("label", o_.label)
            .str("transport", "pusher")
            .integer("conns", o_.conns)
            .integer("channels", o_.channels)
            .integer("watchers", nw)
            .integer("watchers_subscribed", watchersReady_)
            .integer("slots_established", slotsReady_)
            .num("duration_s", o_.duration)
            .integer("subscriptions", static_cast<int64_t>(opens_))
            .num("subscriptions_per_sec", sps)
            .integer("subscriptions_total", static_cast<int64_t>(opensTotal_))
            .integer("attempts", static_cast<int64_t>(attempts_))
            .integer("failures", static_cast<int64_t>(failures_))
            .integer("setup_failures", static_cast<int64_t>(setupFailures_))
            .integer("member_events_expected", static_cast<int64_t>(expected))
            .integer("member_added", static_cast<int64_t>(added_))
            .integer("member_removed", static_cast<int64_t>(removed_))
            .integer("member_events_missing",
                     static_cast<int64_t>(missing(added_) + missing(removed_)))
            .integer("member_events_extra", static_cast<int64_t>(extra(added_) + extra(removed_)))
            .integer("slot_member_events", static_cast<int64_t>(slotEvents_))
            .integer("watcher_member_events", static_cast<int64_t>(watcherEvents_))
            .num("drain_s", drainSec)
            .raw("latency_us", latJson(lat));
        j.num("client_cpu_s", clientCpuSec());
        printf("%s\n", j.done().c_str());
        fflush(stdout);
        fprintf(stderr,
                "churn pusher: %" PRIu64 " subscribe+unsubscribe in %.1fs = %.0f/s over %d slots"
                " and %d channels, %" PRIu64 " failures (of %" PRIu64 " attempts in the window)\n"
                "  %d watchers: member_added %" PRIu64 ", member_removed %" PRIu64
                " of %" PRIu64 " each (drain %.2fs)\n  subscribe->succeeded %s\n",
                opens_, o_.duration, sps, o_.conns, o_.channels, failures_, attempts_, nw,
                added_, removed_, expected, drainSec, latText(lat).c_str());
        for (auto& [k, v] : reasons_) {
            fprintf(stderr, "  failure [%s] x%" PRIu64 "\n", k.c_str(), v);
        }
        return 0;
    }

    void onConnected(Conn& c) override
    {
        engine_.send(c, subscribeRequest(o_, url_, c, Proto::Ws));
    }

    void onOpen(Conn&) override {}
    void onResponse(Conn& c) override
    {
        engine_.closeConn(c, "handshake refused with status " + std::to_string(c.head.status));
    }

    void onMessage(Conn& c, const char* p, size_t n) override
    {
        size_t i = static_cast<size_t>(&c - conns_.data());
        State& s = st_[i];
        if (!parsePusherFrame(p, n, pf_)) {
            reasons_["unparsed frame"]++;
            return;
        }
        const std::string& ev = pf_.event;
        if (ev == "pusher:connection_established") {
            inFlight_--;
            s.socketId = pusherJsonString(pf_.data, "socket_id");
            if (s.watcher) {
                engine_.sendWsFrame(c, 0x1,
                                    pusherSubscribeAs(o_, s.socketId, s.channel,
                                                      "watcher-" + std::to_string(i)));
            } else {
                slotsReady_++;
            }
        } else if (ev == "pusher_internal:subscription_succeeded") {
            if (s.watcher) {
                watchersReady_++;
                watchersOn_[static_cast<size_t>(c.channel)]++;
                return;
            }
            succeeded(c, s);
        } else if (ev == "pusher_internal:member_added" ||
                   ev == "pusher_internal:member_removed") {
            if (!s.watcher) {
                slotEvents_++;
            } else if (pusherJsonString(pf_.data, "user_id").compare(0, 8, "watcher-") == 0) {
                watcherEvents_++;  // another watcher joined during the setup
            } else if (ev == "pusher_internal:member_added") {
                added_++;
            } else {
                removed_++;
            }
        } else if (ev == "pusher:subscription_error" || ev == "pusher:error") {
            std::string why = ev + " " + pf_.data.substr(0, 80);
            if (s.watcher || !s.subscribing) {
                reasons_[why]++;
                return;
            }
            s.subscribing = false;
            pendingSubs_--;
            if (inWindow(s.sentAt)) {
                failures_++;
                reasons_[why]++;
            }
            if (churning_ && nowNs() < to_) {
                subscribe(i);
            }
        } else if (ev == "pusher:ping") {
            engine_.sendWsFrame(c, 0x1, pusherPongFrame());
        }
    }

    void onClosed(Conn& c, const std::string& why) override
    {
        if (ending_) {
            return;
        }
        size_t i = static_cast<size_t>(&c - conns_.data());
        State& s = st_[i];
        if (s.socketId.empty()) {
            inFlight_--;
            setupFailures_++;
        }
        if (s.subscribing) {
            s.subscribing = false;
            pendingSubs_--;
            if (inWindow(s.sentAt)) {
                failures_++;
            }
        }
        reasons_[why.substr(0, 80)]++;
    }

private:
    struct State {
        bool watcher = false;
        bool subscribing = false;
        std::string socketId;
        std::string channel;
        uint64_t sentAt = 0;
    };

    bool inWindow(uint64_t t) const { return t >= from_ && t < to_; }

    uint64_t expectedEvents() const
    {
        uint64_t e = 0;
        for (size_t ch = 0; ch < joins_.size(); ch++) {
            e += joins_[ch] * watchersOn_[ch];
        }
        return e;
    }

    void subscribe(size_t i)
    {
        Conn& c = conns_[i];
        State& s = st_[i];
        int user = next_++;
        s.sentAt = nowNs();
        s.subscribing = true;
        pendingSubs_++;
        if (inWindow(s.sentAt)) {
            attempts_++;
        }
        engine_.sendWsFrame(c, 0x1, pusherSubscribeFor(o_, s.socketId, s.channel, user));
    }

    void succeeded(Conn& c, State& s)
    {
        if (!s.subscribing) {
            return;
        }
        s.subscribing = false;
        pendingSubs_--;
        uint64_t now = nowNs();
        opensTotal_++;
        joins_[static_cast<size_t>(c.channel)]++;
        if (inWindow(s.sentAt)) {
            opens_++;
            lat_.push_back(now - s.sentAt);
        }
        engine_.sendWsFrame(c, 0x1, pusherUnsubscribeFrame(s.channel));
        if (churning_ && now < to_ && c.fd >= 0) {
            subscribe(static_cast<size_t>(&c - conns_.data()));
        }
    }

    const Options& o_;
    Engine engine_;
    Url url_;
    std::vector<Conn> conns_;
    std::vector<State> st_;
    std::vector<uint64_t> joins_;
    std::vector<uint64_t> watchersOn_;
    PusherFrame pf_;
    int inFlight_ = 0;
    int slotsReady_ = 0;
    int watchersReady_ = 0;
    int setupFailures_ = 0;
    int pendingSubs_ = 0;
    int next_ = 0;
    bool churning_ = false;
    bool ending_ = false;
    uint64_t from_ = 0;
    uint64_t to_ = 0;
    uint64_t opens_ = 0;
    uint64_t opensTotal_ = 0;
    uint64_t attempts_ = 0;
    uint64_t failures_ = 0;
    uint64_t added_ = 0;
    uint64_t removed_ = 0;
    uint64_t slotEvents_ = 0;
    uint64_t watcherEvents_ = 0;
    std::map<std::string, uint64_t> reasons_;
    std::vector<uint64_t> lat_;
};

}  // namespace

int runPusherChurn(const Options& o)
{
    PusherChurn c(o);
    return c.run();
}

}  // namespace load
