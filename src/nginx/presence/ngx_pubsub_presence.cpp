/*
 * ngx_pubsub: presence glue (see ngx_pubsub_presence.h, docs/presence.md).
 *
 * Every registry call runs under the zone's lock; the events it returns are
 * handled after unlocking: hooks are posted (detached requests, nothing
 * waits), and join/leave meant for subscribers are read back from the
 * zone's ring by every worker - the one that produced them from a posted
 * event, the others when woken through their eventfd (or, failing that,
 * from their presence timer) - and handed to the local hub.  Nothing is
 * ever delivered synchronously from a join or a leave: those run from
 * subscriber destructors and hub iterations.  In Redis locations the
 * registry's deltas go to Redis instead (ngx_pubsub_redis.cpp), and
 * join/leave come back from Redis to every instance's subscribers.
 */

#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_redis.h"

#include <signal.h>

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "pubsub/codec/json.h"
#include "pubsub/redis/redis_store.h"


#define NGX_PUBSUB_PRESENCE_TICK      100    /* ms: ring read */
#define NGX_PUBSUB_PRESENCE_EXPIRE    5      /* ticks: leave delays */
#define NGX_PUBSUB_PRESENCE_REAP      10     /* ticks: dead workers */
#define NGX_PUBSUB_PRESENCE_RING_MAX  512    /* events per read */


static void ngx_pubsub_presence_tick(ngx_event_t *ev);
static void ngx_pubsub_presence_ring_handler(ngx_event_t *ev);


static ngx_slab_pool_t        *ngx_pubsub_presence_shpool;
static pubsub::PresenceRoot   *ngx_pubsub_presence_root;
static ngx_uint_t              ngx_pubsub_presence_live;
static ngx_event_t             ngx_pubsub_presence_tick_ev;
static ngx_event_t             ngx_pubsub_presence_ring_ev;
static uint64_t                ngx_pubsub_presence_ring_last;
static uint64_t                ngx_pubsub_presence_ring_missed;
static ngx_uint_t              ngx_pubsub_presence_ticks;


/*
 * A lock held for a scope, with the registry.  The deltas of Redis
 * channels made meanwhile are sent to Redis after unlocking.
 */
class ngx_pubsub_presence_locked_t {
public:
    ngx_pubsub_presence_locked_t()
        : reg(ngx_pubsub_presence_root,
              ngx_pubsub_slab_allocator(ngx_pubsub_presence_shpool))
    {
        /* events go to the ring and hooks only: build no others */
        reg.setRoutedOnly(true);
        reg.setDeltaSink(&deltas);
        ngx_shmtx_lock(&ngx_pubsub_presence_shpool->mutex);
    }

    ~ngx_pubsub_presence_locked_t()
    {
        ngx_shmtx_unlock(&ngx_pubsub_presence_shpool->mutex);

        if (deltas.empty()) {
            return;
        }

        try {
            ngx_pubsub_redis_presence_deltas(
                deltas, ngx_pubsub_presence_root->instance);

        } catch (...) {
            /* the next refresh sends this instance's whole part */
        }
    }

    pubsub::PresenceRegistry  reg;
    pubsub::PresenceDeltas    deltas;
};


static int64_t
ngx_pubsub_presence_now(void)
{
    ngx_time_t  *tp = ngx_timeofday();

    return static_cast<int64_t>(tp->sec) * 1000 + tp->msec;
}


std::string_view
ngx_pubsub_presence_channel_id(std::string_view key)
{
    size_t  slash = key.find('/');

    return slash == std::string_view::npos ? key : key.substr(slash + 1);
}


ngx_int_t
ngx_pubsub_presence_init_zone(ngx_slab_pool_t *shpool, pubsub::StoreRoot *root,
    ngx_log_t *log)
{
    pubsub::PresenceRoot  *proot;

    ngx_shmtx_lock(&shpool->mutex);

    proot = static_cast<pubsub::PresenceRoot *>(root->presence);

    if (!pubsub::PresenceRegistry::compatible(proot)) {
        proot = pubsub::PresenceRegistry::createRoot(
                    ngx_pubsub_slab_allocator(shpool), 256);
        root->presence = proot;

        if (proot) {
            /* this instance's name in Redis, for the zone's lifetime */
            ngx_snprintf(reinterpret_cast<u_char *>(proot->instance),
                         pubsub::PresenceRoot::kInstanceLen,
                         "%08xD%08xD%08xD",
                         (uint32_t) ngx_time(),
                         (uint32_t) (ngx_random() ^ (ngx_pid << 16)),
                         (uint32_t) ngx_random());
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (proot == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pubsub: pubsub_shm_size is too small for presence");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the presence hook of an event (this instance made it) */
void
ngx_pubsub_presence_hook_event(const pubsub::PresenceEvent &ev)
{
    ngx_str_t   body, pid, chid;
    ngx_uint_t  index = pubsub::presenceHookIndex(ev.opts);

    if (index == 0) {
        return;
    }

    {
        std::string_view id = ngx_pubsub_presence_channel_id(ev.channel);
        std::string json = pubsub::presenceEventJson(ev, id);
        if (json.empty()) {
            return;
        }

        /* hooks also learn when: requests may arrive out of order */
        json.pop_back();
        json += ",\"time\":";
        json += std::to_string(ngx_pubsub_presence_now());
        json += '}';

        body.data = reinterpret_cast<u_char *>(&json[0]);
        body.len = json.size();
        pid.data = reinterpret_cast<u_char *>(const_cast<char *>(ev.id.data()));
        pid.len = ev.id.size();
        chid.data = reinterpret_cast<u_char *>(const_cast<char *>(id.data()));
        chid.len = id.size();

        (void) ngx_pubsub_hook_presence(index, body, pid, chid);
    }
}


/* hooks, and a wake-up for the ring; after unlocking */
static void
ngx_pubsub_presence_dispatch(pubsub::PresenceEvents &evs)
{
    ngx_uint_t  ring = 0;

    for (const pubsub::PresenceEvent &ev : evs) {
        if ((ev.opts & pubsub::kPresenceOptEvents)
            && (ev.type == pubsub::PresenceEventType::kJoin
                || ev.type == pubsub::PresenceEventType::kLeave))
        {
            ring = 1;
        }

        ngx_pubsub_presence_hook_event(ev);
    }

    if (ring && ngx_pubsub_presence_live) {
        if (!ngx_pubsub_presence_ring_ev.posted) {
            ngx_post_event(&ngx_pubsub_presence_ring_ev, &ngx_posted_events);
        }

        /* the other workers read it at once rather than at their tick */
        for (uint32_t s = 0; s < pubsub::PresenceRoot::kMaxSlots; s++) {
            if (ngx_pubsub_presence_root->slotPid[s] > 0
                && (ngx_int_t) s != ngx_process_slot)
            {
                ngx_pubsub_shm_wake(s);
            }
        }
    }
}


ngx_int_t
ngx_pubsub_presence_init_process(ngx_cycle_t *cycle, ngx_slab_pool_t *shpool)
{
    pubsub::StoreRoot      *root;
    pubsub::PresenceEvents  evs;
    uint64_t                n;

    root = static_cast<pubsub::StoreRoot *>(shpool->data);
    if (root == NULL || root->presence == NULL) {
        return NGX_OK;
    }

    ngx_pubsub_presence_shpool = shpool;
    ngx_pubsub_presence_root = static_cast<pubsub::PresenceRoot *>(
                                   root->presence);

    if (ngx_process_slot < 0
        || ngx_process_slot >= (ngx_int_t) pubsub::PresenceRoot::kMaxSlots)
    {
        return NGX_OK;
    }

    {
        ngx_pubsub_presence_locked_t  l;

        /* what a killed worker in this slot left behind goes now */
        n = l.reg.claimSlot(static_cast<uint32_t>(ngx_process_slot), ngx_pid,
                            ngx_pubsub_presence_now(), &evs);
        ngx_pubsub_presence_ring_last = l.reg.ringSeq();
    }

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "pubsub: presence: %uL connections of the previous "
                      "worker in slot %i removed", n, ngx_process_slot);
    }

    ngx_pubsub_presence_live = 1;

    ngx_memzero(&ngx_pubsub_presence_tick_ev, sizeof(ngx_event_t));
    ngx_pubsub_presence_tick_ev.handler = ngx_pubsub_presence_tick;
    ngx_pubsub_presence_tick_ev.data = &ngx_pubsub_dumb_conn;
    ngx_pubsub_presence_tick_ev.log = cycle->log;
    ngx_pubsub_presence_tick_ev.cancelable = 1;

    ngx_memzero(&ngx_pubsub_presence_ring_ev, sizeof(ngx_event_t));
    ngx_pubsub_presence_ring_ev.handler = ngx_pubsub_presence_ring_handler;
    ngx_pubsub_presence_ring_ev.data = &ngx_pubsub_dumb_conn;
    ngx_pubsub_presence_ring_ev.log = cycle->log;

    ngx_add_timer(&ngx_pubsub_presence_tick_ev, NGX_PUBSUB_PRESENCE_TICK);

    (void) ngx_pubsub_guard(cycle->log, [&evs] {
        ngx_pubsub_presence_dispatch(evs);
        return NGX_OK;
    });

    return NGX_OK;
}


void
ngx_pubsub_presence_exit_process(ngx_cycle_t *cycle)
{
    pubsub::PresenceEvents  evs;

    if (!ngx_pubsub_presence_live) {
        return;
    }

    if (ngx_pubsub_presence_tick_ev.timer_set) {
        ngx_del_timer(&ngx_pubsub_presence_tick_ev);
    }
    if (ngx_pubsub_presence_ring_ev.posted) {
        ngx_delete_posted_event(&ngx_pubsub_presence_ring_ev);
    }

    /*
     * Connections still open now are never freed (nginx exits without
     * destroying their pools): they start their leave delay here, and
     * handles still held become invalid.
     */
    (void) ngx_pubsub_guard(cycle->log, [&evs] {
        ngx_pubsub_presence_locked_t  l;

        l.reg.removeWorkerConnections(
            static_cast<uint32_t>(ngx_process_slot),
            ngx_pubsub_presence_now(), &evs);
        l.reg.root()->slotPid[ngx_process_slot] = 0;
        return NGX_OK;
    });

    ngx_pubsub_presence_live = 0;

    /* leaves with no delay: their hooks cannot be sent any more */
    if (!evs.empty()) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "pubsub: presence: %uz events at worker exit were not "
                      "sent to the presence hook", evs.size());
    }
}


pubsub::PresenceConn *
ngx_pubsub_presence_join(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t key)
{
    const ngx_pubsub_identity_t  *ident;
    pubsub::PresenceEvents        evs;
    pubsub::PresenceConn         *conn;
    std::string_view              id, info;
    ngx_str_t                     v;
    uint32_t                      opts;

    if (!plcf->presence || !ngx_pubsub_presence_live) {
        return NULL;
    }

    ident = ngx_pubsub_identity(r);

    if (ident && ident->presence_id.len) {
        id = ngx_pubsub_sv(ident->presence_id);
        info = ngx_pubsub_sv(ident->presence_info);

    } else if (plcf->presence_id) {
        if (ngx_http_complex_value(r, plcf->presence_id, &v) != NGX_OK) {
            return NULL;
        }
        id = ngx_pubsub_sv(v);
    }

    if (!info.empty()) {
        pubsub::json::ParseOptions po;
        po.maxSize = pubsub::PresenceRegistry::kMaxInfoLength;
        if (!pubsub::json::parse(info, po)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "pubsub: presence info of \"%V\" is not JSON of at "
                          "most 16k, ignored", &ident->presence_id);
            info = {};
        }
    }

    if (id.size() > pubsub::PresenceRegistry::kMaxIdLength) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: presence id longer than 1024 bytes: "
                      "the connection is anonymous");
        id = {};
    }

    opts = plcf->presence_events ? pubsub::kPresenceOptEvents : 0;
    opts |= static_cast<uint32_t>(ngx_pubsub_presence_hook_index(r))
            << pubsub::kPresenceHookShift;
    opts |= static_cast<uint32_t>(ngx_pubsub_redis_index(plcf))
            << pubsub::kPresenceRedisShift;

    {
        ngx_pubsub_presence_locked_t  l;

        conn = l.reg.join(ngx_pubsub_sv(key), id, info,
                          static_cast<uint32_t>(ngx_process_slot), opts,
                          static_cast<uint32_t>(plcf->presence_leave_delay),
                          ngx_pubsub_presence_now(), &evs,
                          static_cast<uint32_t>(plcf->presence_ttl));
    }

    if (conn == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: presence: out of shared memory, the "
                      "subscriber is not counted (raise pubsub_shm_size)");
    }

    ngx_pubsub_presence_dispatch(evs);

    return conn;
}


void
ngx_pubsub_presence_leave(pubsub::PresenceConn *conn)
{
    pubsub::PresenceEvents  evs;

    if (conn == NULL || !ngx_pubsub_presence_live) {
        return;
    }

    {
        ngx_pubsub_presence_locked_t  l;

        l.reg.leave(conn, ngx_pubsub_presence_now(), &evs);
    }

    ngx_pubsub_presence_dispatch(evs);
}


uint64_t
ngx_pubsub_presence_members(std::string_view key)
{
    if (!ngx_pubsub_presence_live) {
        return 0;
    }

    ngx_pubsub_presence_locked_t  l;

    return l.reg.stats(key).members;
}


/* the ring: join/leave for this worker's subscribers */
static void
ngx_pubsub_presence_read_ring(ngx_log_t *log)
{
    pubsub::PresenceEvents  evs;
    pubsub::Hub            *hub;
    uint64_t                missed = 0;

    if (ngx_pubsub_presence_root->ringSeq == ngx_pubsub_presence_ring_last) {
        return;
    }

    {
        ngx_pubsub_presence_locked_t  l;

        l.reg.readRing(&ngx_pubsub_presence_ring_last,
                       NGX_PUBSUB_PRESENCE_RING_MAX, &evs, &missed);
    }

    if (missed) {
        ngx_pubsub_presence_ring_missed += missed;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "pubsub: presence: %uL join/leave events were not "
                      "delivered to subscribers (worker too busy)", missed);
    }

    hub = ngx_pubsub_local_hub();
    if (hub == NULL) {
        return;
    }

    for (const pubsub::PresenceEvent &ev : evs) {
        hub->presenceEvent(ev.channel, ev);
    }

    if (ngx_pubsub_presence_root->ringSeq != ngx_pubsub_presence_ring_last
        && !ngx_pubsub_presence_ring_ev.posted)
    {
        ngx_post_event(&ngx_pubsub_presence_ring_ev, &ngx_posted_events);
    }
}


void
ngx_pubsub_presence_wake(void)
{
    if (ngx_pubsub_presence_live
        && ngx_pubsub_presence_root->ringSeq != ngx_pubsub_presence_ring_last
        && !ngx_pubsub_presence_ring_ev.posted)
    {
        ngx_post_event(&ngx_pubsub_presence_ring_ev, &ngx_posted_events);
    }
}


static void
ngx_pubsub_presence_ring_handler(ngx_event_t *ev)
{
    if (!ngx_pubsub_presence_live) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [ev] {
        ngx_pubsub_presence_read_ring(ev->log);
        return NGX_OK;
    });
}


/* leave delays that passed; slots of workers that died */
static void
ngx_pubsub_presence_housekeeping(ngx_uint_t reap)
{
    pubsub::PresenceEvents  evs;
    pubsub::PresenceRoot   *root = ngx_pubsub_presence_root;
    int64_t                 now = ngx_pubsub_presence_now();
    uint32_t                s;

    if (root->leavingCount == 0 && !reap) {
        return;
    }

    {
        ngx_pubsub_presence_locked_t  l;

        if (reap) {
            for (s = 0; s < pubsub::PresenceRoot::kMaxSlots; s++) {
                if (root->slotHead[s] == NULL || root->slotPid[s] <= 0
                    || (ngx_int_t) s == ngx_process_slot)
                {
                    continue;
                }

                if (kill(static_cast<pid_t>(root->slotPid[s]), 0) == -1
                    && ngx_errno == ESRCH)
                {
                    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                                  "pubsub: presence: worker %L in slot %uD "
                                  "is gone, its connections are removed",
                                  root->slotPid[s], s);
                    l.reg.removeWorkerConnections(s, now, &evs);
                    root->slotPid[s] = 0;
                }
            }
        }

        if (root->leavingCount) {
            l.reg.expire(now, &evs);
        }
    }

    ngx_pubsub_presence_dispatch(evs);
}


/*
 * Redis mode: one worker at a time (whichever tick finds it due) sends
 * this instance's whole part of every Redis channel, its beat, and sweeps
 * dead instances.
 */
static void
ngx_pubsub_presence_redis_refresh(void)
{
    std::vector<pubsub::PresenceChannelSnapshot>  snaps;
    ngx_msec_t                                    interval;
    int64_t                                       now;

    interval = ngx_pubsub_redis_presence_interval();
    if (interval == 0) {
        return;
    }

    now = ngx_pubsub_presence_now();

    /* read without the lock: only a hint */
    if (ngx_pubsub_presence_root->redisRefreshAt > now) {
        return;
    }

    {
        ngx_pubsub_presence_locked_t  l;
        pubsub::PresenceRoot         *root = l.reg.root();

        if (root->redisRefreshAt > now) {
            return;
        }

        root->redisRefreshAt = now + static_cast<int64_t>(interval);

        if (!l.reg.redisSnapshot(&snaps)) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "pubsub: presence: out of worker memory for the "
                          "Redis refresh");
            return;
        }
    }

    ngx_pubsub_redis_presence_refresh(snaps,
                                      ngx_pubsub_presence_root->instance);
}


static void
ngx_pubsub_presence_tick(ngx_event_t *ev)
{
    if (!ngx_pubsub_presence_live) {
        return;
    }

    ngx_pubsub_presence_ticks++;

    (void) ngx_pubsub_guard(ev->log, [ev] {
        ngx_pubsub_presence_read_ring(ev->log);
        ngx_pubsub_presence_redis_refresh();

        if (ngx_pubsub_presence_ticks % NGX_PUBSUB_PRESENCE_EXPIRE == 0) {
            ngx_pubsub_presence_housekeeping(
                ngx_pubsub_presence_ticks % NGX_PUBSUB_PRESENCE_REAP == 0);
        }
        return NGX_OK;
    });

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, NGX_PUBSUB_PRESENCE_TICK);
    }
}


/* ------------------------------------------------------- presence API */


/* whether the query string has `name` (with or without a value) */
static ngx_uint_t
ngx_pubsub_presence_has_arg(ngx_http_request_t *r, std::string_view name,
    ngx_str_t *value)
{
    std::string_view  args = ngx_pubsub_sv(r->args);

    while (!args.empty()) {
        size_t amp = args.find('&');
        std::string_view kv = args.substr(0, amp);
        size_t eq = kv.find('=');
        std::string_view k = kv.substr(0, eq);

        if (k == name) {
            if (value) {
                std::string_view v = eq == std::string_view::npos
                                     ? std::string_view() : kv.substr(eq + 1);
                value->data = reinterpret_cast<u_char *>(
                                  const_cast<char *>(v.data()));
                value->len = v.size();
            }
            return 1;
        }

        if (amp == std::string_view::npos) {
            break;
        }
        args.remove_prefix(amp + 1);
    }

    return 0;
}


/* URL-decoded copy of an argument value */
static std::string
ngx_pubsub_presence_unescape(ngx_http_request_t *r, ngx_str_t v)
{
    u_char  *dst, *src;

    if (v.len == 0) {
        return std::string();
    }

    dst = static_cast<u_char *>(ngx_pnalloc(r->pool, v.len));
    if (dst == NULL) {
        throw std::bad_alloc();
    }

    u_char *start = dst;
    src = v.data;
    ngx_unescape_uri(&dst, &src, v.len, 0);

    return std::string(reinterpret_cast<char *>(start), dst - start);
}


static ngx_int_t
ngx_pubsub_presence_json(ngx_http_request_t *r, ngx_uint_t status,
    const std::string &body)
{
    if (ngx_pubsub_set_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_pubsub_cors(r, static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module)), 1)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pubsub_respond_text(r, status, "application/json", body);
}


static ngx_int_t
ngx_pubsub_presence_error(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view reason)
{
    std::string  body = "{\"error\":";

    pubsub::appendJsonString(body, reason);
    body += "}\n";

    return ngx_pubsub_presence_json(r, status, body);
}


/* the answers, from the registry's or Redis' results */

static ngx_int_t
ngx_pubsub_presence_user_answer(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, const std::string &id,
    const pubsub::PresenceUserState &st)
{
    std::string  body, prefix;
    ngx_str_t    group;

    group.len = 0;
    if (plcf->channel_group
        && ngx_http_complex_value(r, plcf->channel_group, &group) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    prefix = group.len ? std::string(ngx_pubsub_sv(group)) : "default";
    prefix += '/';

    body = "{\"user\":";
    pubsub::appendJsonString(body, id);
    body += st.online ? ",\"online\":true" : ",\"online\":false";
    if (st.online) {
        body += ",\"online_since\":" + std::to_string(st.onlineSince / 1000);
    }
    body += ",\"channels\":[";

    ngx_uint_t first = 1;
    for (const std::string &key : st.channels) {
        if (key.compare(0, prefix.size(), prefix) != 0) {
            continue;   /* another group's */
        }
        if (!first) {
            body += ',';
        }
        first = 0;
        pubsub::appendJsonString(body, std::string_view(key).substr(
                                           prefix.size()));
    }

    body += "]}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static void
ngx_pubsub_presence_counts(std::string &body, const pubsub::PresenceStats &s)
{
    body += "\"members\":" + std::to_string(s.members);
    body += ",\"connections\":" + std::to_string(s.connections);
    body += ",\"anonymous\":" + std::to_string(s.anonymous);
}


static ngx_int_t
ngx_pubsub_presence_stats_answer(ngx_http_request_t *r, std::string body,
    const pubsub::PresenceStats &st)
{
    ngx_pubsub_presence_counts(body, st);
    body += "}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_pubsub_presence_page_answer(ngx_http_request_t *r, std::string body,
    const pubsub::PresencePage &page)
{
    body += "\"members\":[";

    for (size_t i = 0; i < page.members.size(); i++) {
        const pubsub::PresenceMemberView &m = page.members[i];

        body += i ? ",{\"id\":" : "{\"id\":";
        pubsub::appendJsonString(body, m.id);
        body += ",\"info\":";
        body += m.info.empty() ? std::string("null") : m.info;
        body += ",\"connections\":" + std::to_string(m.connections);
        body += ",\"joined_at\":" + std::to_string(m.joinedAt / 1000);
        body += m.leaving ? ",\"leaving\":true}" : ",\"leaving\":false}";
    }

    body += "],\"next_cursor\":";
    if (page.nextCursor.empty()) {
        body += "null";
    } else {
        pubsub::appendJsonString(body, page.nextCursor);
    }
    body += ",\"stats\":{";
    ngx_pubsub_presence_counts(body, page.stats);
    body += "}}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_pubsub_presence_bad_cursor(ngx_http_request_t *r)
{
    return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
               "cursor is not one this API gave (use next_cursor as is)");
}


/* a Redis store's failure */
static ngx_int_t
ngx_pubsub_presence_store_error(ngx_http_request_t *r, pubsub::StoreResult res)
{
    if (res == pubsub::StoreResult::kUnavailable) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         pubsub::RedisStore::kUnavailable);
    }

    return ngx_pubsub_presence_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "unexpected reply from Redis");
}


/*
 * Redis mode: the query runs in Redis.  `run` starts it with a completion
 * that answers; when it completed before returning (Redis is down), the
 * answer's status is returned as usual, else the request waits.
 */
typedef struct {
    ngx_int_t  rc;
    bool       sync;
    bool       answered;
} ngx_pubsub_presence_wait_t;


template <typename Start>
static ngx_int_t
ngx_pubsub_presence_redis(ngx_http_request_t *r, Start start)
{
    auto  w = std::make_shared<ngx_pubsub_presence_wait_t>();

    w->sync = true;
    w->answered = false;
    w->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    start([r, w](std::function<ngx_int_t()> answer) {
        ngx_int_t          rc;
        ngx_connection_t  *c;

        rc = ngx_pubsub_guard(r->connection->log, answer);

        if (w->sync) {
            w->answered = true;
            w->rc = rc;
            return;
        }

        c = r->connection;
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    });

    w->sync = false;

    if (w->answered) {
        return w->rc;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_pubsub_presence_user(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t arg)
{
    pubsub::PresenceUserState  st;
    pubsub::RedisStore        *store;
    std::string                id;

    id = ngx_pubsub_presence_unescape(r, arg);

    if (id.empty()) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                         "user must not be empty");
    }

    if (id.size() > pubsub::PresenceRegistry::kMaxIdLength) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                         "user is longer than 1024 bytes");
    }

    store = ngx_pubsub_redis_store(plcf);

    if (store) {
        return ngx_pubsub_presence_redis(r, [&](auto done) {
            store->presenceUser(id, [r, plcf, id, done](
                pubsub::StoreResult res, pubsub::PresenceUserState &&u)
            {
                done([&]() {
                    if (res != pubsub::StoreResult::kOk) {
                        return ngx_pubsub_presence_store_error(r, res);
                    }
                    return ngx_pubsub_presence_user_answer(r, plcf, id, u);
                });
            });
        });
    }

    {
        ngx_pubsub_presence_locked_t  l;

        st = l.reg.user(id);
    }

    if (st.status != pubsub::PresenceStatus::kOk) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "out of memory");
    }

    return ngx_pubsub_presence_user_answer(r, plcf, id, st);
}


static ngx_int_t
ngx_pubsub_presence_api_run(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_pubsub_channels_t  *ch;
    pubsub::RedisStore     *store;
    ngx_str_t               v;
    std::string             body, cursor;
    size_t                  limit = 100;
    ngx_int_t               rc;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        ngx_http_discard_request_body(r);
        if (ngx_pubsub_set_header(r, "Allow", "GET, OPTIONS") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_pubsub_presence_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "the presence API answers GET only");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ngx_pubsub_presence_live) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "presence is not available");
    }

    if (ngx_pubsub_presence_has_arg(r, "user", &v)) {
        return ngx_pubsub_presence_user(r, plcf, v);
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pubsub_channels(r, plcf, 0, ch) != NGX_OK) {
        return ch->rc;
    }

    if (ch->n != 1) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                         "the presence API takes one channel");
    }

    std::string_view key = ngx_pubsub_sv(ch->key[0]);

    body = "{\"channel\":";
    pubsub::appendJsonString(body, ngx_pubsub_sv(ch->id[0]));
    body += ',';

    store = ngx_pubsub_redis_store(plcf);

    if (ngx_pubsub_presence_has_arg(r, "stats", NULL)) {
        if (store) {
            return ngx_pubsub_presence_redis(r, [&](auto done) {
                store->presenceStats(key, [r, body, done](
                    pubsub::StoreResult res, const pubsub::PresenceStats &st)
                {
                    done([&]() {
                        if (res != pubsub::StoreResult::kOk) {
                            return ngx_pubsub_presence_store_error(r, res);
                        }
                        return ngx_pubsub_presence_stats_answer(r, body, st);
                    });
                });
            });
        }

        pubsub::PresenceStats  st;
        {
            ngx_pubsub_presence_locked_t  l;
            st = l.reg.stats(key);
        }
        return ngx_pubsub_presence_stats_answer(r, body, st);
    }

    if (ngx_pubsub_presence_has_arg(r, "limit", &v)) {
        ngx_int_t n = v.len ? ngx_atoi(v.data, v.len) : NGX_ERROR;
        if (n < 1 || n > (ngx_int_t) pubsub::PresenceRegistry::kMaxPage) {
            return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                       "limit must be a number from 1 to 1000");
        }
        limit = static_cast<size_t>(n);
    }

    if (ngx_pubsub_presence_has_arg(r, "cursor", &v)) {
        cursor = ngx_pubsub_presence_unescape(r, v);
    }

    if (store) {
        return ngx_pubsub_presence_redis(r, [&](auto done) {
            store->presencePage(key, limit, cursor, [r, body, done](
                pubsub::StoreResult res, pubsub::PresencePage &&page)
            {
                done([&]() {
                    if (res == pubsub::StoreResult::kNotFound) {
                        return ngx_pubsub_presence_bad_cursor(r);
                    }
                    if (res != pubsub::StoreResult::kOk) {
                        return ngx_pubsub_presence_store_error(r, res);
                    }
                    return ngx_pubsub_presence_page_answer(r, body, page);
                });
            });
        });
    }

    pubsub::PresencePage  page;
    {
        ngx_pubsub_presence_locked_t  l;
        page = l.reg.page(key, limit, cursor);
    }

    if (page.status == pubsub::PresenceStatus::kBadCursor) {
        return ngx_pubsub_presence_bad_cursor(r);
    }

    if (page.status != pubsub::PresenceStatus::kOk) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "out of memory");
    }

    return ngx_pubsub_presence_page_answer(r, body, page);
}


ngx_int_t
ngx_pubsub_presence_api_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf)
{
    return ngx_pubsub_guard(r->connection->log, [r, plcf] {
        return ngx_pubsub_presence_api_run(r, plcf);
    });
}
