/*
 * ngx_pubsub Pusher: webhooks (see ngx_pubsub_pusher_webhook.h,
 * docs/pusher-webhooks.md).
 *
 * Which webhook an app's events go to: the first pubsub_pusher_webhook
 * directive, in configuration order, written where the app is known (in a
 * server that has the app, or anywhere when the app is at http level).
 * Events are not tied to a request (a vacated channel, a member removed
 * after the leave delay), so they are found by app, not by location.
 *
 * Producers run in the worker that made the change, once per cluster:
 * occupied/vacated/subscription_count from the stores' count hook (memory:
 * under the zone's lock; Redis: the count script, atomic in Redis),
 * member_added/removed from the presence hook's events (memory: the
 * registry's; Redis: the presence script's).  Each worker batches per app
 * for NGX_PUBSUB_PUSHER_WEBHOOK_BATCH ms, then signs the body and queues it
 * for at-least-once delivery (ngx_pubsub_hooks_queue.cpp).
 */

#include "ngx_pubsub_pusher_webhook.h"
#include "ngx_pubsub_hooks_queue.h"

#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "pubsub/codec/json.h"
#include "pubsub/pusher/auth.h"


#define NGX_PUBSUB_PUSHER_WEBHOOK_MAX_EVENTS  100
#define NGX_PUBSUB_PUSHER_WEBHOOK_MAX_BYTES   (64 * 1024)


typedef struct {
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *app;
    std::string                        events;   /* JSON objects, commas */
    ngx_uint_t                         n;
    /* subscription_count: the last count of each channel, coalesced */
    std::map<std::string, uint64_t>    counts;
    /* cache_miss: each channel once (pusherfeat) */
    std::set<std::string>              misses;
} ngx_pubsub_pusher_batch_t;


static std::vector<ngx_pubsub_pusher_batch_t>  *ngx_pubsub_pusher_batches;
static ngx_event_t                              ngx_pubsub_pusher_batch_ev;


static const struct {
    const char  *name;
    ngx_uint_t   bit;
} ngx_pubsub_pusher_wh_names[] = {
    { "channel_occupied", NGX_PUBSUB_PUSHER_WH_OCCUPIED },
    { "channel_vacated", NGX_PUBSUB_PUSHER_WH_VACATED },
    { "member_added", NGX_PUBSUB_PUSHER_WH_MEMBER_ADDED },
    { "member_removed", NGX_PUBSUB_PUSHER_WH_MEMBER_REMOVED },
    { "client_event", NGX_PUBSUB_PUSHER_WH_CLIENT_EVENT },
    { "subscription_count", NGX_PUBSUB_PUSHER_WH_SUBSCRIPTION },
    { "cache_miss", NGX_PUBSUB_PUSHER_WH_CACHE_MISS },
};


static ngx_uint_t
ngx_pubsub_pusher_wh_bit(std::string_view name)
{
    for (const auto &n : ngx_pubsub_pusher_wh_names) {
        if (name == n.name) {
            return n.bit;
        }
    }

    return 0;
}


/* configuration */

/* events=a,b,...: the events' bits in *events */
static char *
ngx_pubsub_pusher_wh_events(ngx_conf_t *cf, ngx_str_t *p, ngx_uint_t *events)
{
    ngx_uint_t  bit;

    if (p->len <= 7 || ngx_strncmp(p->data, "events=", 7)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_webhook: unknown parameter "
                           "\"%V\"", p);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    *events = 0;

    std::string_view list(reinterpret_cast<char *>(p->data) + 7, p->len - 7);

    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view one = list.substr(0, comma);

        bit = ngx_pubsub_pusher_wh_bit(one);
        if (bit == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pubsub_pusher_webhook: unknown event "
                               "\"%*s\" (channel_occupied, "
                               "channel_vacated, member_added, "
                               "member_removed, client_event, "
                               "subscription_count, cache_miss)",
                               one.size(), one.data());
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        *events |= bit;
        list = comma == std::string_view::npos
               ? std::string_view() : list.substr(comma + 1);
    }

    return NGX_CONF_OK;
}


/* pubsub_pusher_webhook URI [events=a,b,...] */
char *
ngx_pubsub_pusher_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_pubsub_pusher_loc_conf_t      *pplcf;
    ngx_pubsub_pusher_main_conf_t     *ppmcf;
    ngx_pubsub_pusher_webhook_conf_t  *wh, **slot;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    u_char                            *q;

    (void) cmd;

    pplcf = static_cast<ngx_pubsub_pusher_loc_conf_t *>(conf);

    if (pplcf->webhook != NGX_CONF_UNSET_PTR) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0
        && cf->args->nelts == 2)
    {
        pplcf->webhook = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/'
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '$'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_webhook \"%V\" must be a local URI "
                           "starting with \"/\", without variables (a "
                           "location that proxy_passes to the application)",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    wh = static_cast<ngx_pubsub_pusher_webhook_conf_t *>(
             ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_pusher_webhook_conf_t)));
    if (wh == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    wh->ctx = static_cast<ngx_http_conf_ctx_t *>(cf->ctx);
    q = ngx_strlchr(value[1].data, value[1].data + value[1].len, '?');
    wh->uri.data = value[1].data;
    wh->uri.len = q ? (size_t) (q - value[1].data) : value[1].len;
    wh->args.data = q ? q + 1 : NULL;
    wh->args.len = q ? (size_t) (value[1].data + value[1].len - q - 1) : 0;
    wh->events = NGX_PUBSUB_PUSHER_WH_ALL;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_pubsub_pusher_wh_events(cf, &value[i], &wh->events)
            != NGX_CONF_OK)
        {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_conf_get_module_main_conf(cf,
                                                   ngx_pubsub_pusher_module));

    if (ppmcf->webhooks == NULL) {
        ppmcf->webhooks = ngx_array_create(cf->pool, 2, sizeof(void *));
        if (ppmcf->webhooks == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    slot = static_cast<ngx_pubsub_pusher_webhook_conf_t **>(
               ngx_array_push(ppmcf->webhooks));
    if (slot == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    *slot = wh;
    pplcf->webhook = wh;

    return NGX_CONF_OK;
}


/* the app `id` and its webhook in this configuration (see above) */
static ngx_pubsub_pusher_webhook_conf_t *
ngx_pubsub_pusher_webhook_find(std::string_view id,
    ngx_pubsub_pusher_app_t **appp)
{
    ngx_pubsub_pusher_main_conf_t      *ppmcf;
    ngx_pubsub_pusher_srv_conf_t       *ppscf;
    ngx_pubsub_pusher_webhook_conf_t  **whs;
    ngx_pubsub_pusher_app_t            *a;
    ngx_array_t                        *lists[2];
    ngx_uint_t                          i, j, k;

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                    ngx_pubsub_pusher_module));
    if (ppmcf == NULL || ppmcf->webhooks == NULL) {
        return NULL;
    }

    whs = static_cast<ngx_pubsub_pusher_webhook_conf_t **>(
              ppmcf->webhooks->elts);

    for (i = 0; i < ppmcf->webhooks->nelts; i++) {
        ppscf = static_cast<ngx_pubsub_pusher_srv_conf_t *>(
                    whs[i]->ctx->srv_conf[ngx_pubsub_pusher_module.ctx_index]);

        lists[0] = ppscf ? ppscf->apps : NULL;
        lists[1] = ppmcf->apps;

        for (k = 0; k < 2; k++) {
            if (lists[k] == NULL) {
                continue;
            }

            a = static_cast<ngx_pubsub_pusher_app_t *>(lists[k]->elts);

            for (j = 0; j < lists[k]->nelts; j++) {
                if (ngx_pubsub_sv(a[j].id) == id) {
                    *appp = &a[j];
                    return whs[i];
                }
            }
        }
    }

    return NULL;
}


/* "pusher:<id>/<name>" -> id, name */
static bool
ngx_pubsub_pusher_split_key(std::string_view key, std::string_view *id,
    std::string_view *name)
{
    static const std::string_view  prefix(NGX_PUBSUB_PUSHER_GROUP_PREFIX);
    size_t                          slash;

    if (key.substr(0, prefix.size()) != prefix) {
        return false;
    }

    key.remove_prefix(prefix.size());
    slash = key.find('/');

    if (slash == std::string_view::npos || slash == 0) {
        return false;
    }

    *id = key.substr(0, slash);
    *name = key.substr(slash + 1);

    return true;
}


/* batches */

static void
ngx_pubsub_pusher_batch_send(ngx_pubsub_pusher_batch_t &b)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh = b.wh;
    ngx_pubsub_hook_req_t              v;
    ngx_table_elt_t                    headers[2];
    struct sockaddr_in                 sin;
    ngx_time_t                        *tp;
    std::string                        body, sig;
    ngx_str_t                          sbody;
    static ngx_str_t                   ct = ngx_string("application/json");

    for (const auto &c : b.counts) {
        if (b.n++) {
            b.events.push_back(',');
        }

        b.events.append("{\"name\":\"subscription_count\",\"channel\":");
        if (!pubsub::json::appendJsonString(b.events, c.first)) {
            throw std::bad_alloc();
        }
        b.events.append(",\"subscription_count\":");
        b.events.append(std::to_string(c.second));
        b.events.push_back('}');
    }

    b.counts.clear();

    for (const auto &c : b.misses) {
        if (b.n++) {
            b.events.push_back(',');
        }

        b.events.append("{\"name\":\"cache_miss\",\"channel\":");
        if (!pubsub::json::appendJsonString(b.events, c)) {
            throw std::bad_alloc();
        }
        b.events.push_back('}');
    }

    b.misses.clear();

    if (b.n == 0) {
        return;
    }

    tp = ngx_timeofday();

    body.append("{\"time_ms\":");
    body.append(std::to_string(static_cast<int64_t>(tp->sec) * 1000
                               + tp->msec));
    body.append(",\"events\":[");
    body.append(b.events);
    body.append("]}");

    b.events.clear();
    b.n = 0;

    sig = pubsub::pusher::hmacSha256Hex(ngx_pubsub_sv(b.app->secret), body);
    if (sig.empty()) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pubsub: pusher webhook of app \"%V\" not signed: "
                      "dropped", &b.app->id);
        return;
    }

    ngx_memzero(&headers, sizeof(headers));
    headers[0].key = ngx_pubsub_hook_cstr("X-Pusher-Key");
    headers[0].value = b.app->key;
    headers[1].key = ngx_pubsub_hook_cstr("X-Pusher-Signature");
    headers[1].value.data = reinterpret_cast<u_char *>(&sig[0]);
    headers[1].value.len = sig.size();

    /* a request of nobody, as the presence hook's */
    ngx_pubsub_hook_req_nobody(&v, wh->ctx, &wh->uri, &wh->args, &sin);
    v.nheaders = 2;
    v.headers = headers;

    sbody.data = reinterpret_cast<u_char *>(&body[0]);
    sbody.len = body.size();

    /* in order per app */
    if (ngx_pubsub_hookq_push(NGX_PUBSUB_HOOK_WEBHOOK, &v, sbody, ct,
                              ngx_pubsub_sv(b.app->id))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pubsub: out of memory: a pusher webhook of app "
                      "\"%V\" was not sent", &b.app->id);
    }
}


static void
ngx_pubsub_pusher_batches_flush(void)
{
    if (ngx_pubsub_pusher_batches == NULL) {
        return;
    }

    for (ngx_pubsub_pusher_batch_t &b : *ngx_pubsub_pusher_batches) {
        (void) ngx_pubsub_guard(ngx_cycle->log, [&b] {
            ngx_pubsub_pusher_batch_send(b);
            return NGX_OK;
        });
    }

    ngx_pubsub_pusher_batches->clear();
}


static void
ngx_pubsub_pusher_batch_handler(ngx_event_t *ev)
{
    (void) ev;

    ngx_pubsub_pusher_batches_flush();
}


/* the batch of app/webhook, the flush timer armed */
static ngx_pubsub_pusher_batch_t &
ngx_pubsub_pusher_batch(ngx_pubsub_pusher_webhook_conf_t *wh,
    ngx_pubsub_pusher_app_t *app)
{
    if (ngx_pubsub_pusher_batches == NULL) {
        ngx_pubsub_pusher_batches =
            new std::vector<ngx_pubsub_pusher_batch_t>();
    }

    if (!ngx_pubsub_pusher_batch_ev.timer_set) {
        ngx_pubsub_pusher_batch_ev.handler = ngx_pubsub_pusher_batch_handler;
        ngx_pubsub_pusher_batch_ev.data = &ngx_pubsub_dumb_conn;
        ngx_pubsub_pusher_batch_ev.log = ngx_cycle->log;
        /* not cancelable: a worker shutting down sends what it batched */
        ngx_pubsub_pusher_batch_ev.cancelable = 0;
        ngx_add_timer(&ngx_pubsub_pusher_batch_ev,
                      NGX_PUBSUB_PUSHER_WEBHOOK_BATCH);
    }

    for (ngx_pubsub_pusher_batch_t &b : *ngx_pubsub_pusher_batches) {
        if (b.wh == wh && b.app == app) {
            return b;
        }
    }

    ngx_pubsub_pusher_batches->emplace_back();
    ngx_pubsub_pusher_batch_t &b = ngx_pubsub_pusher_batches->back();
    b.wh = wh;
    b.app = app;
    b.n = 0;

    return b;
}


static void
ngx_pubsub_pusher_webhook_add(ngx_pubsub_pusher_webhook_conf_t *wh,
    ngx_pubsub_pusher_app_t *app, std::string_view name,
    std::string_view fields)
{
    ngx_pubsub_pusher_batch_t  &b = ngx_pubsub_pusher_batch(wh, app);

    if (b.n++) {
        b.events.push_back(',');
    }

    b.events.append("{\"name\":\"");
    b.events.append(name);
    b.events.push_back('"');

    if (!fields.empty()) {
        b.events.push_back(',');
        b.events.append(fields);
    }

    b.events.push_back('}');

    if (b.n >= NGX_PUBSUB_PUSHER_WEBHOOK_MAX_EVENTS
        || b.events.size() >= NGX_PUBSUB_PUSHER_WEBHOOK_MAX_BYTES)
    {
        ngx_pubsub_pusher_batch_send(b);
    }
}


ngx_int_t
ngx_pubsub_pusher_webhook_event(ngx_pubsub_pusher_app_t *app,
    ngx_str_t *name, ngx_str_t *json_fields)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *found = NULL;

    if (app == NULL) {
        return NGX_DECLINED;
    }

    wh = ngx_pubsub_pusher_webhook_find(ngx_pubsub_sv(app->id), &found);

    if (wh == NULL
        || !(wh->events & ngx_pubsub_pusher_wh_bit(ngx_pubsub_sv(*name))))
    {
        return NGX_DECLINED;
    }

    return ngx_pubsub_guard(ngx_cycle->log, [&] {
        ngx_pubsub_pusher_webhook_add(wh, found, ngx_pubsub_sv(*name),
                                      ngx_pubsub_sv(*json_fields));
        return NGX_OK;
    });
}


/* producers */

void
ngx_pubsub_pusher_webhook_count(std::string_view key, uint64_t before,
    uint64_t after)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *app = NULL;
    std::string_view                   id, name;

    if (before == after || !ngx_pubsub_pusher_split_key(key, &id, &name)
        || pubsub::pusher::internalChannel(name))
    {
        return;
    }

    wh = ngx_pubsub_pusher_webhook_find(id, &app);
    if (wh == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
        std::string  fields("\"channel\":");

        if (!pubsub::json::appendJsonString(fields, name)) {
            throw std::bad_alloc();
        }

        if (before == 0 && (wh->events & NGX_PUBSUB_PUSHER_WH_OCCUPIED)) {
            ngx_pubsub_pusher_webhook_add(wh, app, "channel_occupied",
                                          fields);
        }

        if (wh->events & NGX_PUBSUB_PUSHER_WH_SUBSCRIPTION) {
            ngx_pubsub_pusher_batch(wh, app).counts[std::string(name)] =
                after;
        }

        if (after == 0 && (wh->events & NGX_PUBSUB_PUSHER_WH_VACATED)) {
            ngx_pubsub_pusher_webhook_add(wh, app, "channel_vacated",
                                          fields);
        }

        return NGX_OK;
    });
}


void
ngx_pubsub_pusher_webhook_cache_miss(ngx_pubsub_pusher_app_t *app,
    std::string_view channel)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *found = NULL;

    if (app == NULL) {
        return;
    }

    wh = ngx_pubsub_pusher_webhook_find(ngx_pubsub_sv(app->id), &found);

    if (wh == NULL || !(wh->events & NGX_PUBSUB_PUSHER_WH_CACHE_MISS)) {
        return;
    }

    (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
        ngx_pubsub_pusher_batch_t  &b = ngx_pubsub_pusher_batch(wh, found);

        b.misses.emplace(channel);

        if (b.misses.size() >= NGX_PUBSUB_PUSHER_WEBHOOK_MAX_EVENTS) {
            ngx_pubsub_pusher_batch_send(b);
        }

        return NGX_OK;
    });
}


ngx_uint_t
ngx_pubsub_pusher_webhook_configured(void)
{
    ngx_pubsub_pusher_main_conf_t  *ppmcf;

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                    ngx_pubsub_pusher_module));

    return ppmcf && ppmcf->webhooks && ppmcf->webhooks->nelts;
}


ngx_uint_t
ngx_pubsub_pusher_webhook_wants_members(std::string_view key)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *app = NULL;
    std::string_view                   id, name;

    if (!ngx_pubsub_pusher_split_key(key, &id, &name)) {
        return 0;
    }

    wh = ngx_pubsub_pusher_webhook_find(id, &app);

    return wh && (wh->events & (NGX_PUBSUB_PUSHER_WH_MEMBER_ADDED
                                |NGX_PUBSUB_PUSHER_WH_MEMBER_REMOVED));
}


void
ngx_pubsub_pusher_webhook_member(std::string_view key,
    std::string_view user_id, ngx_uint_t added)
{
    ngx_pubsub_pusher_webhook_conf_t  *wh;
    ngx_pubsub_pusher_app_t           *app = NULL;
    std::string_view                   id, name;
    ngx_uint_t                         bit;

    if (!ngx_pubsub_pusher_split_key(key, &id, &name)) {
        return;
    }

    wh = ngx_pubsub_pusher_webhook_find(id, &app);
    bit = added ? NGX_PUBSUB_PUSHER_WH_MEMBER_ADDED
                : NGX_PUBSUB_PUSHER_WH_MEMBER_REMOVED;

    if (wh == NULL || !(wh->events & bit)) {
        return;
    }

    (void) ngx_pubsub_guard(ngx_cycle->log, [&] {
        std::string  fields("\"channel\":");

        if (!pubsub::json::appendJsonString(fields, name)) {
            throw std::bad_alloc();
        }

        fields.append(",\"user_id\":");

        if (!pubsub::json::appendJsonString(fields, user_id)) {
            throw std::bad_alloc();
        }

        ngx_pubsub_pusher_webhook_add(wh, app,
                                      added ? "member_added"
                                            : "member_removed",
                                      fields);
        return NGX_OK;
    });
}


void
ngx_pubsub_pusher_webhook_exit_process(ngx_cycle_t *cycle)
{
    (void) cycle;

    if (ngx_pubsub_pusher_batch_ev.timer_set) {
        ngx_del_timer(&ngx_pubsub_pusher_batch_ev);
    }

    /* queued for the next workers */
    ngx_pubsub_pusher_batches_flush();

    delete ngx_pubsub_pusher_batches;
    ngx_pubsub_pusher_batches = NULL;
}
