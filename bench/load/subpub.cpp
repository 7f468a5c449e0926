// pubsub-load: the fanout (and paced) and idle modes (SubPub: subscribers plus the
// publishers that feed them).
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine.h"
#include "http.h"
#include "pusher.h"
#include "report.h"
#include "scenario.h"
#include "util.h"

namespace load {

namespace {


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
        pusher_ = o_.transport == "pusher";
        paced_ = o_.mode == "paced";
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
        cpu0_ = clientCpuSec();
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
                // --rate: message k of this publisher is due at
                // t0 + k / rate; a late send (previous publish not yet
                // answered) is counted as send lag, not as latency (the
                // body's timestamp is the actual send time)
                uint64_t due =
                    perPubRate > 0 ? t0_ + static_cast<uint64_t>(sent[pi] / perPubRate * 1e9) : now;
                if (now < due) {
                    continue;
                }
                const auto& chans = owned[pi];
                int ch = chans[static_cast<size_t>(sent[pi]) % chans.size()];
                sent[pi]++;
                uint64_t seq = nextSeq_[static_cast<size_t>(ch)]++;
                sendPublish(pc, ch, seq, false, 0, due);
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
        cpu1_ = clientCpuSec();
        tEnd_ = nowNs();
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
        j.str("mode", paced_ ? "paced" : "fanout")
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
        if (pusher_) {
            j.integer("pusher_errors", static_cast<int64_t>(pusherErrors_));
        }
        std::string pacedHuman;
        if (paced_) {
            pacedReport(j, pacedHuman, pubOk);
        }
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
        human = b + pacedHuman;
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
    uint64_t pusherErrors() const { return pusherErrors_; }

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
        // Pusher: subscribed at subscription_succeeded (pusherFrame)
        if (c.index >= 0 && !c.subscribed && !pusher_) {
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
        if (pusher_) {
            pusherFrame(c, p, n);
            return;
        }
        account(c, p, n);
    }

    // A Pusher frame: the subscription's steps, else an event whose data
    // is one of our messages.
    void pusherFrame(Conn& c, const char* p, size_t n)
    {
        if (!parsePusherFrame(p, n, pf_)) {
            unparsed_++;
            return;
        }
        const std::string& ev = pf_.event;
        if (ev.compare(0, 7, "pusher:") != 0 && ev.compare(0, 16, "pusher_internal:") != 0) {
            account(c, pf_.data.data(), pf_.data.size());
            return;
        }
        if (ev == "pusher:connection_established") {
            std::string sid = pusherJsonString(pf_.data, "socket_id");
            std::string ch = pusherChannelFor(o_, c.channel, c.index);
            engine_.sendWsFrame(c, 0x1, pusherSubscribeFor(o_, sid, ch, c.index));
        } else if (ev == "pusher_internal:subscription_succeeded") {
            if (!c.subscribed) {
                markSubscribed(c);
            }
        } else if (ev == "pusher:ping") {
            engine_.sendWsFrame(c, 0x1, pusherPongFrame());
        } else if (ev == "pusher:subscription_error" || ev == "pusher:error") {
            pusherErrors_++;
            engine_.closeConn(c, ev + " " + pf_.data.substr(0, 80));
        } else if (ev.compare(0, 16, "pusher_internal:") == 0) {
            pusherInternal_++;
        }
    }

    // One of our messages (warm-up or measured) reached subscriber c.
    void account(Conn& c, const char* p, size_t n)
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
        if (paced_) {
            if (m.seq >= msgRecv_.size()) {
                msgRecv_.resize(m.seq + 1 + 64, 0);
                msgLast_.resize(m.seq + 1 + 64, 0);
                msgTs_.resize(m.seq + 1 + 64, 0);
            }
            msgRecv_[m.seq]++;
            msgLast_[m.seq] = now;
            msgTs_[m.seq] = m.ts;
        }
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
            sendPublish(pc, it->channel, it->seq, it->warm, it->round, 0);
            it = pubJobs_.erase(it);
        }
    }

    // due: when a paced (--rate) message was scheduled to leave, else 0
    void sendPublish(Conn& pc, int ch, uint64_t seq, bool warm, int round, uint64_t due)
    {
        std::string body;
        uint64_t now = nowNs();
        if (warm) {
            body = "w " + std::to_string(ch) + " " + std::to_string(round);
        } else {
            body = messageBody(ch, seq, now, o_.size);
            if (o_.rate > 0) {
                sendLags_.push_back(now > due ? now - due : 0);
                firstSend_ = sent_ == 0 ? now : firstSend_;
                lastSend_ = now;
                sent_++;
            }
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

    // paced mode: was the offered rate achieved, and did every message
    // reach every subscriber within one interval (else the server or the
    // client fell behind and latency would include queueing)?
    void pacedReport(Json& j, std::string& human, uint64_t pubOk)
    {
        double interval = o_.rate > 0 ? 1e6 / o_.rate : 0;  // us
        double achieved = sent_ > 1 ? static_cast<double>(sent_ - 1) /
                                          nsToSec(lastSend_ - firstSend_)
                                    : 0;
        Percentiles lag = percentiles(sendLags_);
        // send -> the last subscriber's copy, for messages every subscriber
        // still connected received
        auto alive = static_cast<uint32_t>(aliveSubscribed());
        std::vector<uint64_t> spread;
        for (size_t q = 1; q < msgRecv_.size(); q++) {
            if (msgRecv_[q] > 0 && msgRecv_[q] >= alive) {
                spread.push_back(msgLast_[q] - msgTs_[q]);
            }
        }
        uint64_t complete = spread.size();
        Percentiles fan = percentiles(spread);
        std::string behind;
        auto add = [&](const std::string& why) { behind += (behind.empty() ? "" : "; ") + why; };
        char b[256];
        if (achieved < 0.99 * o_.rate) {
            snprintf(b, sizeof b, "sent %.1f msg/s of %.1f offered", achieved, o_.rate);
            add(b);
        }
        if (lag.max >= interval) {
            snprintf(b, sizeof b, "a send left %.1f ms late (interval %.1f ms)", lag.max / 1000,
                     interval / 1000);
            add(b);
        }
        if (fan.p99 >= interval) {
            snprintf(b, sizeof b, "fan-out time p99 %.1f ms >= interval %.1f ms", fan.p99 / 1000,
                     interval / 1000);
            add(b);
        }
        if (complete < pubOk) {
            snprintf(b, sizeof b, "%" PRIu64 " of %" PRIu64 " messages reached every subscriber",
                     complete, pubOk);
            add(b);
        }
        j.num("offered_rate", o_.rate)
            .num("achieved_rate", achieved)
            .num("rate_achieved_pct", o_.rate > 0 ? 100.0 * achieved / o_.rate : 0)
            .num("interval_us", interval)
            .num("offered_deliveries_per_sec", o_.rate * alive)
            .num("client_cpu_pct_measured",
                 tEnd_ > t0_ ? 100.0 * (cpu1_ - cpu0_) / nsToSec(tEnd_ - t0_) : 0)
            .raw("send_lag_us", latJson(lag))
            .raw("fanout_time_us", latJson(fan))
            .integer("messages_complete", static_cast<int64_t>(complete))
            .integer("kept_up", behind.empty() ? 1 : 0)
            .integer("behind", behind.empty() ? 0 : 1)
            .str("behind_reason", behind);
        char h[512];
        snprintf(h, sizeof h,
                 "  paced: offered %.1f msg/s, sent at %.2f msg/s (%.1f%%), send lag %s\n"
                 "  fan-out time (send -> last subscriber) %s\n"
                 "  client CPU while publishing and draining %.0f%% of a core\n"
                 "  %s%s\n",
                 o_.rate, achieved, o_.rate > 0 ? 100.0 * achieved / o_.rate : 0,
                 latText(lag).c_str(), latText(fan).c_str(),
                 tEnd_ > t0_ ? 100.0 * (cpu1_ - cpu0_) / nsToSec(tEnd_ - t0_) : 0,
                 behind.empty() ? "kept up with the offered rate" : "BEHIND: ", behind.c_str());
        human = h;
    }

    const Options& o_;
    Engine engine_;
    Url subUrl_;
    Url pubUrl_;
    bool hasPub_ = false;
    Proto proto_ = Proto::Ws;
    bool pusher_ = false;
    bool paced_ = false;
    PusherFrame pf_;
    uint64_t pusherErrors_ = 0;
    uint64_t pusherInternal_ = 0;
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
    // paced (--rate): how late each measured send left, and per sequence
    // number the subscribers reached, the last arrival and the send time
    std::vector<uint64_t> sendLags_;
    uint64_t sent_ = 0;
    double cpu0_ = 0;
    double cpu1_ = 0;
    uint64_t tEnd_ = 0;
    uint64_t firstSend_ = 0;
    uint64_t lastSend_ = 0;
    std::vector<uint32_t> msgRecv_;
    std::vector<uint64_t> msgLast_;
    std::vector<uint64_t> msgTs_;
    std::map<int, uint64_t> pubStatus_;
    std::map<int, uint64_t> subFailStatus_;
    std::map<int, uint64_t> warmFailStatus_;
    std::map<std::string, uint64_t> closeReasons_;
};
}  // namespace

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
    long long shmBefore = o.statusUrl.empty() ? -1 : jsonInt(blockingGet(o.statusUrl), "shm_used");
    sp.connectAll();
    sp.hold(o.settle);
    // "after": subscribed, nothing delivered yet. "afterMsg": after one
    // warm-up message reached every subscriber (proves the subscriptions).
    Mem after;
    if (o.measurePid > 0) {
        after = readMem(o.measurePid);
    }
    long long shmAfter = o.statusUrl.empty() ? -1 : jsonInt(blockingGet(o.statusUrl), "shm_used");
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
    double shmPer = shmBefore >= 0 && shmAfter >= 0 && alive > 0
                        ? static_cast<double>(shmAfter - shmBefore) / alive
                        : 0.0;
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
    if (o.transport == "pusher") {
        j.integer("pusher_errors", static_cast<int64_t>(sp.pusherErrors()));
    }
    if (!o.statusUrl.empty()) {
        j.integer("shm_used_before", shmBefore)
            .integer("shm_used_after", shmAfter)
            .num("shm_bytes_per_sub", shmPer);
    }
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
    if (!o.statusUrl.empty()) {
        fprintf(stderr, "  zone shm_used %lld -> %lld bytes (%.0f B/sub)\n", shmBefore, shmAfter,
                shmPer);
    }
    for (auto& [k, v] : sp.closeReasons()) {
        fprintf(stderr, "  close reason [%s] x%" PRIu64 "\n", k.c_str(), v);
    }
    return 0;
}
}  // namespace load
