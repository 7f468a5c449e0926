/*
 * ngx_pubsub: the Redis engine's table (ngx_pubsub_engine.h) - per worker,
 * one link and one pubsub::RedisStore per upstream; the store of a
 * location; prepare, which reads the snapshots of a subscriber request's
 * channels before its handler runs (subscribe() answers from them); and
 * channel info and the presence API's queries, which run in Redis.
 */

#include "ngx_pubsub_pusher_features.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_redis_link.h"
#include "ngx_pubsub_subscriber.h"

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>


static ngx_int_t
ngx_pubsub_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_main_conf_t        *pmcf;
    ngx_pubsub_redis_upstream_t  **ups, *up;
    char                           id[64];
    int                            n;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(cycle, ngx_pubsub_module));
    if (pmcf == NULL || pmcf->redis_upstreams == NULL) {
        return NGX_OK;
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        up = ups[i];

        if (!up->used) {
            /* no location stores in it: no connection, no store */
            continue;
        }

        n = snprintf(id, sizeof(id), "%d:%08lx:%08lx", (int) ngx_pid,
                     (unsigned long) ngx_random(),
                     (unsigned long) ngx_time());

        up->link = new (std::nothrow) ngx_pubsub_redis_link_t(up, cycle->log);
        if (up->link == NULL) {
            return NGX_ERROR;
        }

        ngx_pubsub_stats_redis(1, 0);

        try {
            up->store = new pubsub::RedisStore(up->link, std::string(id, n));

        } catch (...) {
            return NGX_ERROR;
        }

        up->link->store = up->store;
        up->store->setPresenceHook(ngx_pubsub_presence_hook_event);

        /* channel_occupied/vacated, subscription_count (webhook and pushed):
         * once per cluster */
        if (ngx_pubsub_pusher_count_hook_wanted()) {
            up->store->setCountHook(ngx_pubsub_pusher_count_hook(up->store));
        }

        for (ngx_event_t *ev : {&up->link->reconnect_ev,
                                &up->link->watchdog_ev, &up->link->tick_ev})
        {
            ev->data = up->link;
            ev->log = cycle->log;
            ev->cancelable = 1;
        }

        up->link->reconnect_ev.handler = ngx_pubsub_redis_reconnect_handler;
        up->link->watchdog_ev.handler = ngx_pubsub_redis_watchdog_handler;
        up->link->tick_ev.handler = ngx_pubsub_redis_tick_handler;

        ngx_add_timer(&up->link->reconnect_ev, 1);
        ngx_add_timer(&up->link->watchdog_ev, NGX_PUBSUB_REDIS_WATCHDOG);
        ngx_add_timer(&up->link->tick_ev, 1000);
    }

    return NGX_OK;
}


static void
ngx_pubsub_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_main_conf_t        *pmcf;
    ngx_pubsub_redis_upstream_t  **ups;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(cycle, ngx_pubsub_module));
    if (pmcf == NULL || pmcf->redis_upstreams == NULL) {
        return;
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    ngx_pubsub_redis_presence_exit();

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        /* the link first: its pending callbacks are dropped, not run */
        delete ups[i]->link;
        ups[i]->link = NULL;
        delete ups[i]->store;
        ups[i]->store = NULL;
    }
}


static pubsub::RedisStore *
ngx_pubsub_redis_store_of(ngx_pubsub_loc_conf_t *plcf)
{
    auto  *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->engine_conf);

    return up ? up->store : NULL;
}


static pubsub::Store *
ngx_pubsub_redis_store(ngx_pubsub_loc_conf_t *plcf)
{
    return ngx_pubsub_redis_store_of(plcf);
}


/* runs `run` with a prepared snapshot in place, for subscribe() */
static void
ngx_pubsub_redis_run_prepared(pubsub::RedisStore *store,
    pubsub::RedisStore::Prepared *prepared, const std::function<void()> &run)
{
    store->usePrepared(prepared);

    try {
        run();

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pubsub: redis: a prepared handler failed");
    }

    store->usePrepared(nullptr);
}


/*
 * Reads the snapshots of `keys`, with the location's group limits, then
 * runs `done` once with them in place: before returning (NGX_OK: Redis
 * could not be asked, the queue is full, or nothing needed reading) or
 * later from the event loop (NGX_AGAIN).  `hint`: where a one-channel
 * subscriber starts (one owed nothing needs no read).
 */
static ngx_int_t
ngx_pubsub_redis_snapshots(ngx_http_request_t *r, pubsub::RedisStore *store,
    ngx_pubsub_loc_conf_t *plcf, const std::vector<std::string> &keys,
    const pubsub::StartSpec *hint, std::function<void()> done)
{
    pubsub::GroupLimits  limits;
    const char          *err;

    /* an invalid limit: none here, the subscribe refuses it */
    if (ngx_pubsub_group_limits(r, plcf, &limits, &err) != NGX_OK) {
        limits = pubsub::GroupLimits();
    }

    auto  sync = std::make_shared<int>(1);
    auto  early = std::make_shared<pubsub::RedisStore::PreparedPtr>();
    auto  run = std::make_shared<std::function<void()>>(std::move(done));

    store->prepare(keys, [store, sync, early, run](
                             pubsub::RedisStore::PreparedPtr prepared) {
        if (*sync) {
            /* answered before returning: run it after, as usual */
            *early = std::move(prepared);
            return;
        }

        ngx_pubsub_redis_run_prepared(store, prepared.get(), *run);
    }, limits, plcf->existing_only != 0, hint);

    *sync = 0;

    if (*early) {
        ngx_pubsub_redis_run_prepared(store, early->get(), *run);
        return NGX_OK;
    }

    return NGX_AGAIN;
}


typedef struct {
    ngx_int_t   rc;
    ngx_uint_t  late;
} ngx_pubsub_redis_prep_t;


/* subscriber requests: the channels' snapshots first, then the handler */
static ngx_int_t
ngx_pubsub_redis_prepare(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_prepared_pt handler)
{
    pubsub::RedisStore     *store = ngx_pubsub_redis_store_of(plcf);
    ngx_pubsub_channels_t  *ch;
    const char             *err;
    pubsub::StartSpec       spec;
    ngx_uint_t              hint;

    /* without a store the handler answers 503 */
    if (store == NULL || !ngx_pubsub_subscriber_request(r, plcf)) {
        return handler(r);
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_ERROR;
    }

    if (ngx_pubsub_channels_eval(r, plcf, 0, ch, &err) != NGX_OK) {
        return handler(r);     /* which answers the error */
    }

    std::vector<std::string> keys;
    keys.reserve(ch->n);
    for (ngx_uint_t i = 0; i < ch->n; i++) {
        keys.emplace_back(ngx_pubsub_sv(ch->key[i]));
    }

    /* where a one-channel subscriber starts: owed nothing, no snapshot read */
    hint = ch->n == 1 && ngx_pubsub_resume_hint(r, plcf, &spec);

    auto  st = std::make_shared<ngx_pubsub_redis_prep_t>();

    st->rc = NGX_ERROR;
    st->late = 0;

    if (ngx_pubsub_redis_snapshots(r, store, plcf, keys,
            hint ? &spec : nullptr,
            [r, handler, st]() {
                ngx_int_t          rc;
                ngx_connection_t  *c;

                rc = ngx_pubsub_guard(r->connection->log, [r, handler] {
                    return handler(r);
                });

                if (!st->late) {
                    st->rc = rc;
                    return;
                }

                c = r->connection;
                ngx_http_finalize_request(r, rc);
                ngx_http_run_posted_requests(c);
            })
        == NGX_OK)
    {
        return st->rc;
    }

    st->late = 1;
    r->main->count++;

    return NGX_DONE;
}


/* channels a live connection adds */
static ngx_int_t
ngx_pubsub_redis_prepare_keys(ngx_pubsub_loc_conf_t *plcf,
    const std::vector<std::string> &keys, std::function<void()> done)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        done();
        return NGX_OK;
    }

    return ngx_pubsub_redis_snapshots(NULL, store, plcf, keys, nullptr,
                                      std::move(done));
}


static void
ngx_pubsub_redis_info(ngx_pubsub_loc_conf_t *plcf, std::string_view key,
    pubsub::Store::InfoCallback cb)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::ChannelInfo());
        return;
    }

    /* Redis counts presence members itself */
    store->info(key, std::move(cb));
}


static ngx_uint_t
ngx_pubsub_redis_presence_tag(ngx_pubsub_loc_conf_t *plcf)
{
    auto  *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->engine_conf);

    return up ? up->index + 1 : 0;
}


static void
ngx_pubsub_redis_presence_stats(ngx_pubsub_loc_conf_t *plcf,
    std::string_view key, ngx_pubsub_presence_stats_cb cb)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::PresenceStats());
        return;
    }

    store->presenceStats(key, std::move(cb));
}


static void
ngx_pubsub_redis_presence_page(ngx_pubsub_loc_conf_t *plcf,
    std::string_view key, size_t limit, const std::string &cursor,
    ngx_pubsub_presence_page_cb cb)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::PresencePage());
        return;
    }

    store->presencePage(key, limit, cursor, std::move(cb));
}


static void
ngx_pubsub_redis_presence_user(ngx_pubsub_loc_conf_t *plcf,
    const std::string &id, ngx_pubsub_presence_user_cb cb)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::PresenceUserState());
        return;
    }

    store->presenceUser(id, std::move(cb));
}


static ngx_int_t
ngx_pubsub_redis_ask_info(ngx_pubsub_loc_conf_t *plcf, std::string_view key,
    std::string_view reply_key)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL || !store->requestInfo(key, reply_key)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_pubsub_redis_occupied(ngx_pubsub_loc_conf_t *plcf,
    std::string_view group, std::string_view prefix, size_t max,
    ngx_pubsub_occupied_cb cb)
{
    pubsub::RedisStore  *store = ngx_pubsub_redis_store_of(plcf);

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::OccupiedList());
        return;
    }

    store->occupied(group, prefix, max, std::move(cb));
}


const ngx_pubsub_engine_t  ngx_pubsub_redis_engine = {
    "redis",
    ngx_pubsub_redis_check_conf,
    ngx_pubsub_redis_merge_loc_conf,
    ngx_pubsub_redis_use,
    ngx_pubsub_redis_init_process,
    ngx_pubsub_redis_exit_process,
    ngx_pubsub_redis_store,
    ngx_pubsub_redis_prepare,
    ngx_pubsub_redis_prepare_keys,
    ngx_pubsub_redis_info,
    ngx_pubsub_redis_ask_info,
    ngx_pubsub_redis_presence_tag,
    ngx_pubsub_redis_presence_stats,
    ngx_pubsub_redis_presence_page,
    ngx_pubsub_redis_presence_user,
    ngx_pubsub_redis_presence_deltas,
    ngx_pubsub_redis_presence_interval,
    ngx_pubsub_redis_presence_refresh,
    ngx_pubsub_redis_occupied,
};
