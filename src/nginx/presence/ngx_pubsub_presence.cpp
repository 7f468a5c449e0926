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
 * subscriber destructors and hub iterations.  In locations of an engine
 * that merges presence elsewhere (Redis) the registry's deltas go to that
 * engine (ngx_pubsub_engine.h), and join/leave come back from it to every
 * instance's subscribers.  The presence API is ngx_pubsub_presence_api.cpp.
 */

#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_hooks.h"

#include <signal.h>

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "pubsub/codec/json.h"


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
 * A lock held for a scope, with the registry.  The deltas of channels of
 * engines that merge presence elsewhere (Redis), made meanwhile, are sent
 * to them after unlocking.
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
            ngx_pubsub_engines_presence_deltas(
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
    std::string_view              id, info;
    ngx_str_t                     v;

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

        /*
         * URL-decoded, as the presence API decodes ?user= and as
         * last_event_id is: $arg_user keeps the client's %XX escapes
         * (docs/presence.md)
         */
        if (v.len && ngx_strlchr(v.data, v.data + v.len, '%') != NULL) {
            u_char  *dst, *src, *start;

            start = static_cast<u_char *>(ngx_pnalloc(r->pool, v.len));
            if (start == NULL) {
                return NULL;
            }

            dst = start;
            src = v.data;
            ngx_unescape_uri(&dst, &src, v.len, 0);
            v.data = start;
            v.len = dst - start;
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

    return ngx_pubsub_presence_join_as(plcf, key, id, info,
                                       plcf->presence_events ? 1 : 0,
                                       ngx_pubsub_presence_hook_index(r),
                                       r->connection->log);
}


pubsub::PresenceConn *
ngx_pubsub_presence_join_as(ngx_pubsub_loc_conf_t *plcf, ngx_str_t key,
    std::string_view id, std::string_view info, ngx_uint_t events,
    ngx_uint_t hook, ngx_log_t *log)
{
    pubsub::PresenceEvents        evs;
    pubsub::PresenceConn         *conn;
    uint32_t                      opts;

    if (!ngx_pubsub_presence_live) {
        return NULL;
    }

    opts = events ? pubsub::kPresenceOptEvents : 0;
    opts |= static_cast<uint32_t>(hook) << pubsub::kPresenceHookShift;
    opts |= static_cast<uint32_t>(plcf->engine->presence_tag(plcf))
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
        ngx_log_error(NGX_LOG_ERR, log, 0,
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


ngx_uint_t
ngx_pubsub_presence_available(void)
{
    return ngx_pubsub_presence_live;
}


pubsub::PresenceStats
ngx_pubsub_presence_local_stats(std::string_view key)
{
    if (!ngx_pubsub_presence_live) {
        return pubsub::PresenceStats();
    }

    ngx_pubsub_presence_locked_t  l;

    return l.reg.stats(key);
}


pubsub::PresencePage
ngx_pubsub_presence_local_page(std::string_view key, size_t limit,
    std::string_view cursor)
{
    pubsub::PresencePage  page;

    if (!ngx_pubsub_presence_live) {
        page.status = pubsub::PresenceStatus::kNoMemory;
        return page;
    }

    ngx_pubsub_presence_locked_t  l;

    return l.reg.page(key, limit, cursor);
}


pubsub::PresenceUserState
ngx_pubsub_presence_local_user(std::string_view id)
{
    pubsub::PresenceUserState  st;

    if (!ngx_pubsub_presence_live) {
        st.status = pubsub::PresenceStatus::kNoMemory;
        return st;
    }

    ngx_pubsub_presence_locked_t  l;

    return l.reg.user(id);
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
 * Engines that merge presence elsewhere (Redis): one worker at a time
 * (whichever tick finds it due) sends this instance's whole part of every
 * such channel, its beat, and sweeps dead instances.
 */
static void
ngx_pubsub_presence_remote_refresh(void)
{
    std::vector<pubsub::PresenceChannelSnapshot>  snaps;
    ngx_msec_t                                    interval;
    int64_t                                       now;

    interval = ngx_pubsub_engines_presence_interval();
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

    ngx_pubsub_engines_presence_refresh(snaps,
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
        ngx_pubsub_presence_remote_refresh();

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
