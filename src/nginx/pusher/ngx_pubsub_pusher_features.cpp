/*
 * ngx_pubsub Pusher: pushed subscription counts (see
 * ngx_pubsub_pusher_features.h, docs/pusher.md).
 */

#include "ngx_pubsub_pusher_features.h"
#include "ngx_pubsub_pusher_webhook.h"
#include "ngx_pubsub_pusher_ws.h"
#include "ngx_pubsub_engine.h"

#include <map>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pubsub/pusher/features.h"


/* the most bytes of counts in one message between workers */
#define NGX_PUBSUB_PUSHER_COUNTS_MAX  (32 * 1024)


namespace pp = pubsub::pusher;


/* a worker's subscriber of an app's internal counts channel in a store */
class ngx_pubsub_pusher_counts_sub_t final : public pubsub::Subscriber {
public:
    void deliver(const pubsub::MessagePtr &msg) override;
    void gap() override {}
    void channelDeleted() override {}

    pubsub::Store       *store = nullptr;
    std::string          group;      /* "pusher:<id>" */
    bool                 attaching = false;
};


/* what one worker keeps; made on first use, never freed (process-long) */
struct ngx_pubsub_pusher_counts_t {
    /* receivers, by store and group */
    std::vector<ngx_pubsub_pusher_counts_sub_t *>  subs;

    /* local connections wanting counts (and their store), by store key */
    std::unordered_map<std::string,
        std::unordered_map<ngx_pubsub_pusher_conn_t *, pubsub::Store *>>
                                                   watch;

    /* producer: channels this worker changed, per store */
    std::map<pubsub::Store *, pp::CountThrottle>   throttles;
    ngx_event_t                                    ev;
};


static ngx_pubsub_pusher_counts_t  *ngx_pubsub_pusher_counts;


static ngx_pubsub_pusher_counts_t *
ngx_pubsub_pusher_counts_get(void)
{
    if (ngx_pubsub_pusher_counts == NULL) {
        ngx_pubsub_pusher_counts = new ngx_pubsub_pusher_counts_t;
        ngx_memzero(&ngx_pubsub_pusher_counts->ev, sizeof(ngx_event_t));
    }

    return ngx_pubsub_pusher_counts;
}


/* "pusher:<id>/<name>" -> "pusher:<id>", "<name>" */
static bool
ngx_pubsub_pusher_counts_split(std::string_view key, std::string_view *group,
    std::string_view *name)
{
    static const std::string_view  prefix(NGX_PUBSUB_PUSHER_GROUP_PREFIX);
    size_t                          slash;

    if (key.substr(0, prefix.size()) != prefix) {
        return false;
    }

    slash = key.find('/', prefix.size());

    if (slash == std::string_view::npos || slash == prefix.size()) {
        return false;
    }

    *group = key.substr(0, slash);
    *name = key.substr(slash + 1);

    return true;
}


/* whether the app of group "pusher:<id>" pushes subscription counts */
static bool
ngx_pubsub_pusher_counts_app(std::string_view group)
{
    ngx_pubsub_pusher_main_conf_t  *ppmcf;
    ngx_str_t                      *id;
    ngx_uint_t                      i;

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                    ngx_pubsub_pusher_module));
    if (ppmcf == NULL || ppmcf->counting == NULL) {
        return false;
    }

    group.remove_prefix(sizeof(NGX_PUBSUB_PUSHER_GROUP_PREFIX) - 1);
    id = static_cast<ngx_str_t *>(ppmcf->counting->elts);

    for (i = 0; i < ppmcf->counting->nelts; i++) {
        if (ngx_pubsub_sv(id[i]) == group) {
            return true;
        }
    }

    return false;
}


/* the kinds of channel that get counts (Pusher: all but presence) */
static bool
ngx_pubsub_pusher_counts_kind(std::string_view name)
{
    pp::ChannelKind  k = pp::channelKind(name);

    return k == pp::ChannelKind::Public || k == pp::ChannelKind::Private
           || k == pp::ChannelKind::PrivateEncrypted;
}


/* ---------------------------------------------------------- producer */


ngx_uint_t
ngx_pubsub_pusher_count_hook_wanted(void)
{
    ngx_pubsub_pusher_main_conf_t  *ppmcf;

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                    ngx_pubsub_pusher_module));

    return ngx_pubsub_pusher_webhook_configured()
           || (ppmcf && ppmcf->counting && ppmcf->counting->nelts);
}


static void ngx_pubsub_pusher_counts_arm(ngx_pubsub_pusher_counts_t *pc);


static void
ngx_pubsub_pusher_counts_changed(pubsub::Store *store, std::string_view key,
    uint64_t after)
{
    std::string_view             group, name;
    ngx_pubsub_pusher_counts_t  *pc;

    if (!ngx_pubsub_pusher_counts_split(key, &group, &name)
        || !ngx_pubsub_pusher_counts_kind(name)
        || !ngx_pubsub_pusher_counts_app(group))
    {
        return;
    }

    pc = ngx_pubsub_pusher_counts_get();
    pc->throttles[store].changed(key, after,
                                 static_cast<int64_t>(ngx_current_msec));
    ngx_pubsub_pusher_counts_arm(pc);
}


pubsub::Store::CountHookFn
ngx_pubsub_pusher_count_hook(pubsub::Store *store)
{
    return [store](std::string_view key, uint64_t before, uint64_t after) {
        std::string_view  group, name;

        /* the counts channel's own subscribers are nobody's business */
        if (ngx_pubsub_pusher_counts_split(key, &group, &name)
            && name == pp::kCountsChannel)
        {
            return;
        }

        ngx_pubsub_pusher_webhook_count(key, before, after);

        if (before != after) {
            (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
                ngx_pubsub_pusher_counts_changed(store, key, after);
                return NGX_OK;
            });
        }
    };
}


/* the counts of one app read from its store, published once all are in */
struct ngx_pubsub_pusher_counts_batch_t {
    pubsub::Store  *store;
    std::string     group;
    std::string     lines;
    ngx_uint_t      pending = 1;   /* the sender's own, until all are asked */
};


static void
ngx_pubsub_pusher_counts_publish(pubsub::Store *store,
    const std::string &group, const std::string &lines)
{
    pubsub::PublishInput  in;
    std::string           key;

    key.reserve(group.size() + 1 + pp::kCountsChannel.size());
    key.append(group).append("/").append(pp::kCountsChannel);

    in.data = lines;
    in.maxMessages = 0;   /* delivered, never stored */
    in.ttl = 0;

    store->publish(key, in, [](pubsub::PublishReply &&reply) {
        if (reply.status != pubsub::StoreResult::kOk) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "pubsub: pusher: subscription counts not sent: %s",
                          reply.reason.c_str());
        }
    });
}


static void
ngx_pubsub_pusher_counts_done(
    const std::shared_ptr<ngx_pubsub_pusher_counts_batch_t> &b)
{
    if (--b->pending == 0 && !b->lines.empty()) {
        (void) ngx_pubsub_guard(ngx_cycle->log, [&b] {
            ngx_pubsub_pusher_counts_publish(b->store, b->group, b->lines);
            return NGX_OK;
        });
    }
}


static void
ngx_pubsub_pusher_counts_send(pubsub::Store *store,
    std::vector<std::string> &&keys)
{
    std::map<std::string_view,
             std::shared_ptr<ngx_pubsub_pusher_counts_batch_t>>  batches;
    std::vector<std::shared_ptr<ngx_pubsub_pusher_counts_batch_t>>  all;
    std::string_view  group, name;

    /* the keys outlive the (possibly later) answers */
    auto owned = std::make_shared<std::vector<std::string>>(std::move(keys));

    for (const std::string &key : *owned) {
        if (!ngx_pubsub_pusher_counts_split(key, &group, &name)) {
            continue;
        }

        auto &b = batches[group];

        if (!b || b->lines.size() >= NGX_PUBSUB_PUSHER_COUNTS_MAX) {
            if (b) {
                ngx_pubsub_pusher_counts_done(b);
            }

            b = std::make_shared<ngx_pubsub_pusher_counts_batch_t>();
            b->store = store;
            b->group.assign(group);
            all.push_back(b);
        }

        auto batch = b;
        b->pending++;

        store->info(key, [batch, owned, name](pubsub::StoreResult rc,
                                              const pubsub::ChannelInfo &ci)
            {
                if (rc == pubsub::StoreResult::kOk
                    || rc == pubsub::StoreResult::kNotFound)
                {
                    /* a channel without messages may be "not found"
                     * and still have subscribers */
                    pp::appendCount(batch->lines, name, ci.subscribers);
                }

                ngx_pubsub_pusher_counts_done(batch);
            });
    }

    for (auto &b : batches) {
        if (b.second) {
            ngx_pubsub_pusher_counts_done(b.second);
        }
    }
}


static void
ngx_pubsub_pusher_counts_handler(ngx_event_t *ev)
{
    ngx_pubsub_pusher_counts_t  *pc = ngx_pubsub_pusher_counts;

    (void) ev;

    if (pc == NULL) {
        return;
    }

    std::vector<pubsub::Store *>  stores;

    for (auto &t : pc->throttles) {
        stores.push_back(t.first);
    }

    for (pubsub::Store *store : stores) {
        (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
            std::vector<std::string> keys = pc->throttles[store].due(
                static_cast<int64_t>(ngx_current_msec));

            if (!keys.empty()) {
                ngx_pubsub_pusher_counts_send(store, std::move(keys));
            }

            return NGX_OK;
        });
    }

    ngx_pubsub_pusher_counts_arm(pc);
}


static void
ngx_pubsub_pusher_counts_arm(ngx_pubsub_pusher_counts_t *pc)
{
    int64_t  next = -1, now, at;

    for (const auto &t : pc->throttles) {
        at = t.second.next();
        if (at >= 0 && (next < 0 || at < next)) {
            next = at;
        }
    }

    if (next < 0) {
        return;
    }

    now = static_cast<int64_t>(ngx_current_msec);
    at = next > now ? next - now : 1;

    if (pc->ev.timer_set) {
        if (static_cast<int64_t>(pc->ev.timer.key - ngx_current_msec) <= at) {
            return;
        }

        ngx_del_timer(&pc->ev);
    }

    pc->ev.handler = ngx_pubsub_pusher_counts_handler;
    pc->ev.data = &ngx_pubsub_dumb_conn;
    pc->ev.log = ngx_cycle->log;
    pc->ev.cancelable = 1;

    ngx_add_timer(&pc->ev, static_cast<ngx_msec_t>(at));
}


/* --------------------------------------------------------- receivers */


void
ngx_pubsub_pusher_counts_sub_t::deliver(const pubsub::MessagePtr &msg)
{
    ngx_pubsub_pusher_counts_t    *pc = ngx_pubsub_pusher_counts;
    std::vector<pp::ChannelCount>  counts;
    std::vector<ngx_pubsub_pusher_conn_t *>  to;
    std::string                    key;

    if (pc == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
        if (!pp::parseCounts(msg->data(), &counts)) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "pubsub: pusher: malformed subscription counts "
                          "skipped");
        }

        for (const pp::ChannelCount &c : counts) {
            key.assign(group).append("/").append(c.channel);

            auto it = pc->watch.find(key);
            if (it == pc->watch.end()) {
                continue;
            }

            to.clear();

            for (const auto &w : it->second) {
                if (w.second == store) {
                    to.push_back(w.first);
                }
            }

            if (to.empty()) {
                continue;
            }

            auto frame = std::make_shared<const std::string>(
                             pp::serverFrame(
                                 "pusher_internal:subscription_count",
                                 c.channel,
                                 pp::subscriptionCountData(c.count)));

            /* sending queues: no connection goes away meanwhile */
            for (ngx_pubsub_pusher_conn_t *conn : to) {
                conn->subscription_count(frame);
            }
        }

        return NGX_OK;
    });
}


/* the worker's subscriber of the app's counts in `store`, attached */
static void
ngx_pubsub_pusher_counts_attach(ngx_pubsub_pusher_counts_t *pc,
    ngx_pubsub_loc_conf_t *plcf, pubsub::Store *store,
    std::string_view group)
{
    ngx_pubsub_pusher_counts_sub_t  *sub = NULL;

    for (ngx_pubsub_pusher_counts_sub_t *s : pc->subs) {
        if (s->store == store && s->group == group) {
            sub = s;
            break;
        }
    }

    if (sub == NULL) {
        sub = new ngx_pubsub_pusher_counts_sub_t;
        sub->store = store;
        sub->group.assign(group);
        pc->subs.push_back(sub);
    }

    if (sub->attached() || sub->attaching) {
        return;
    }

    sub->attaching = true;

    std::string key = sub->group + "/" + std::string(pp::kCountsChannel);
    std::vector<std::string> keys{key};

    (void) plcf->engine->prepare_keys(plcf, keys, [sub, key]() {
        pubsub::SubscribeRequest  req;

        req.key = key;
        req.start.kind = pubsub::StartSpec::kNewest;

        sub->store->subscribe(sub, req, [sub](pubsub::SubscribeReply &&r) {
            sub->attaching = false;

            if (r.status != pubsub::StoreResult::kOk) {
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "pubsub: pusher: this worker gets no "
                              "subscription counts of \"%*s\" for now: %s",
                              sub->group.size(), sub->group.data(),
                              r.reason.c_str());
            }
        });
    });
}


ngx_int_t
ngx_pubsub_pusher_counts_watch(ngx_pubsub_pusher_conn_t *conn,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_pusher_app_t *app,
    const std::string &key)
{
    return ngx_pubsub_guard(ngx_cycle->log, [&] {
        ngx_pubsub_pusher_counts_t  *pc = ngx_pubsub_pusher_counts_get();
        pubsub::Store               *store = ngx_pubsub_store_for(plcf);

        if (store == NULL) {
            return NGX_DECLINED;
        }

        pc->watch[key][conn] = store;

        ngx_pubsub_pusher_counts_attach(pc, plcf, store,
                                        ngx_pubsub_sv(app->group));
        return NGX_OK;
    });
}


void
ngx_pubsub_pusher_counts_unwatch(ngx_pubsub_pusher_conn_t *conn,
    const std::string &key)
{
    ngx_pubsub_pusher_counts_t  *pc = ngx_pubsub_pusher_counts;

    if (pc == NULL) {
        return;
    }

    auto it = pc->watch.find(key);

    if (it == pc->watch.end()) {
        return;
    }

    it->second.erase(conn);

    if (it->second.empty()) {
        pc->watch.erase(it);
    }
}


void
ngx_pubsub_pusher_features_exit_process(ngx_cycle_t *cycle)
{
    (void) cycle;

    if (ngx_pubsub_pusher_counts && ngx_pubsub_pusher_counts->ev.timer_set) {
        ngx_del_timer(&ngx_pubsub_pusher_counts->ev);
    }
}
