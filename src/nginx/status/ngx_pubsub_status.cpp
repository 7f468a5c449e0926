/*
 * ngx_pubsub: cluster-wide counters and the pubsub_status location
 * (SPEC section 9), as JSON or Prometheus text exposition.
 *
 * Counters live in a small shared zone of their own ("ngx_pubsub_stats"),
 * apart from the store's zone, updated with atomics so that no lock is
 * taken on hot paths:
 *   - subscribers by transport: gauges kept per worker process slot, so
 *     that a worker that dies without cleaning up (SIGKILL) does not leave
 *     them off for ever: its successor in the slot zeroes them, and slots
 *     of dead processes are skipped when reading;
 *   - delivered messages, hook calls and failures: totals.
 * Channels, stored messages, published totals and subscriptions are read
 * from the store's own root (under its lock), memory from its slab pool.
 *
 * On reload nginx keeps the zone (same name, size and tag): totals survive.
 */

#include "ngx_pubsub_status_internal.h"
#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_worker.h"
#include "pubsub/memory/presence.h"

#include <errno.h>
#include <signal.h>

#include <algorithm>
#include <cstdarg>
#include <new>
#include <string>


typedef struct {
    ngx_atomic_t              pid;
    ngx_atomic_t              subscribers[NGX_PUBSUB_TRANSPORTS];
    ngx_atomic_t              redis_links;     /* Redis upstreams in use */
    ngx_atomic_t              redis_ready;     /* of those, connected */
    ngx_atomic_t              redis_rtt_ms;    /* smoothed round trip */
    ngx_atomic_t              redis_replies;   /* replies measured */
} ngx_pubsub_stats_slot_t;


typedef struct {
    uint32_t                  magic;
    uint32_t                  version;
    time_t                    started;
    ngx_atomic_t              reloads;
    ngx_atomic_t              delivered;
    ngx_atomic_t              chev_published;  /* channel events */
    ngx_atomic_t              chev_failed;     /* not evaluated or stored */
    /* the Redis engine, all workers (ngx_pubsub_stats_redis_engine) */
    ngx_atomic_t              redis_engine[NGX_PUBSUB_REDIS_COUNTERS];
    ngx_pubsub_hook_stats_t   hooks;
    ngx_pubsub_stats_slot_t   slots[NGX_MAX_PROCESSES];
} ngx_pubsub_stats_t;



/* transport index -> name, in the order of the NGX_PUBSUB_SUB_* bits */
const char  *ngx_pubsub_transport_names[NGX_PUBSUB_TRANSPORTS] = {
    "websocket", "eventsource", "longpoll", "intervalpoll", "chunked",
    "multipart", "rawstream"
};

/* in the order of ngx_pubsub_hook_stats_t's arrays */
const char  *ngx_pubsub_hook_labels[NGX_PUBSUB_HOOKS] = {
    "authorize", "subscribe", "unsubscribe", "publisher_upstream", "presence",
    "pusher_webhook"
};


static ngx_str_t  ngx_pubsub_stats_zone_name = ngx_string("ngx_pubsub_stats");

/* the worker root's "stats" part: the zone, and this worker's slot */
struct ngx_pubsub_stats_worker_t {
    ngx_pubsub_stats_t       *zone;   /* this cycle's */
    ngx_pubsub_stats_slot_t  *slot;   /* this worker's; NULL: none */
};

/* until a worker has the zone (and outside workers), count here */
static ngx_pubsub_hook_stats_t   ngx_pubsub_hook_stats_local;
ngx_pubsub_hook_stats_t         *ngx_pubsub_hook_stats =
                                     &ngx_pubsub_hook_stats_local;


static ngx_int_t
ngx_pubsub_stats_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t     *shpool;
    ngx_pubsub_stats_t  *st;

    shpool = reinterpret_cast<ngx_slab_pool_t *>(zone->shm.addr);

    if (data || zone->shm.exists) {
        /* reload (the zone kept its mapping), or a Windows-style reattach */
        st = static_cast<ngx_pubsub_stats_t *>(shpool->data);

        if (st && st->magic == NGX_PUBSUB_STATS_MAGIC
            && st->version == NGX_PUBSUB_STATS_VERSION)
        {
            if (data) {
                (void) ngx_atomic_fetch_add(&st->reloads, 1);
            }
            return NGX_OK;
        }
    }

    st = static_cast<ngx_pubsub_stats_t *>(
             ngx_slab_calloc(shpool, sizeof(ngx_pubsub_stats_t)));
    if (st == NULL) {
        ngx_log_error(NGX_LOG_EMERG, zone->shm.log, 0,
                      "pubsub: cannot allocate the status counters");
        return NGX_ERROR;
    }

    st->magic = NGX_PUBSUB_STATS_MAGIC;
    st->version = NGX_PUBSUB_STATS_VERSION;
    st->started = ngx_time();

    shpool->data = st;

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_stats_conf(ngx_conf_t *cf)
{
    size_t           size;
    ngx_shm_zone_t  *zone;

    /* the counters, rounded up to pages, plus the slab pool's own pages */
    size = ngx_align(sizeof(ngx_pubsub_stats_t), ngx_pagesize)
           + 16 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &ngx_pubsub_stats_zone_name, size,
                                 &ngx_pubsub_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_pubsub_stats_init_zone;
    zone->noreuse = 0;
    /* non-NULL, so that a reload's init sees the old zone (its data) */
    zone->data = &ngx_pubsub_stats_zone_name;

    return NGX_OK;
}


/* the cycle's counters zone (not a static: a failed reload makes one) */
static ngx_shm_zone_t *
ngx_pubsub_stats_find_zone(ngx_cycle_t *cycle)
{
    ngx_list_part_t  *part = &cycle->shared_memory.part;
    ngx_shm_zone_t   *zone = static_cast<ngx_shm_zone_t *>(part->elts);

    for (ngx_uint_t i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }
            part = part->next;
            zone = static_cast<ngx_shm_zone_t *>(part->elts);
            i = 0;
        }

        if (zone[i].tag == &ngx_pubsub_module
            && zone[i].shm.name.len == ngx_pubsub_stats_zone_name.len
            && ngx_strncmp(zone[i].shm.name.data,
                           ngx_pubsub_stats_zone_name.data,
                           ngx_pubsub_stats_zone_name.len) == 0)
        {
            return &zone[i];
        }
    }
}


static ngx_pubsub_stats_t *
ngx_pubsub_stats_zone(void)
{
    ngx_pubsub_stats_worker_t  *sw = ngx_pubsub_worker_part(stats);

    return sw ? sw->zone : NULL;
}


static ngx_pubsub_stats_slot_t *
ngx_pubsub_stats_slot(void)
{
    ngx_pubsub_stats_worker_t  *sw = ngx_pubsub_worker_part(stats);

    return sw ? sw->slot : NULL;
}


ngx_int_t
ngx_pubsub_stats_init_process(ngx_cycle_t *cycle)
{
    ngx_shm_zone_t             *zone;
    ngx_slab_pool_t            *shpool;
    ngx_pubsub_stats_t         *st;
    ngx_pubsub_stats_slot_t    *slot;
    ngx_pubsub_stats_worker_t  *sw;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    zone = ngx_pubsub_stats_find_zone(cycle);
    if (zone == NULL || zone->shm.addr == NULL) {
        return NGX_OK;
    }

    shpool = reinterpret_cast<ngx_slab_pool_t *>(zone->shm.addr);
    st = static_cast<ngx_pubsub_stats_t *>(shpool->data);
    if (st == NULL) {
        return NGX_OK;
    }

    sw = new (std::nothrow) ngx_pubsub_stats_worker_t();
    if (sw == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pubsub: cannot allocate the worker's status state");
        return NGX_ERROR;
    }

    sw->zone = st;
    sw->slot = NULL;
    ngx_pubsub_worker->stats = sw;

    ngx_pubsub_hook_stats = &st->hooks;

    if (ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES) {
        return NGX_OK;
    }

    /* whatever a previous owner of the slot left is forgotten */
    slot = &st->slots[ngx_process_slot];

    for (ngx_uint_t i = 0; i < NGX_PUBSUB_TRANSPORTS; i++) {
        slot->subscribers[i] = 0;
    }

    slot->redis_links = 0;
    slot->redis_ready = 0;
    slot->redis_rtt_ms = 0;
    slot->redis_replies = 0;
    slot->pid = ngx_pid;
    sw->slot = slot;

    return NGX_OK;
}


void
ngx_pubsub_stats_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_stats_worker_t  *sw = ngx_pubsub_worker_part(stats);
    ngx_pubsub_stats_slot_t    *slot;

    if (sw == NULL) {
        return;
    }

    slot = sw->slot;

    ngx_pubsub_worker->stats = NULL;
    delete sw;

    /* hooks counted later (their module exits after this one) stay local */
    ngx_pubsub_hook_stats = &ngx_pubsub_hook_stats_local;

    if (slot == NULL) {
        return;
    }

    for (ngx_uint_t i = 0; i < NGX_PUBSUB_TRANSPORTS; i++) {
        slot->subscribers[i] = 0;
    }

    slot->redis_links = 0;
    slot->redis_ready = 0;

    slot->pid = 0;
}


static ngx_int_t
ngx_pubsub_transport_index(ngx_uint_t transport)
{
    for (ngx_uint_t i = 0; i < NGX_PUBSUB_TRANSPORTS; i++) {
        if (transport == (ngx_uint_t) NGX_PUBSUB_SUB_WEBSOCKET << i) {
            return i;
        }
    }

    return -1;
}


void
ngx_pubsub_sub_count_t::start(ngx_uint_t t)
{
    ngx_int_t                 i;
    ngx_pubsub_stats_slot_t  *slot = ngx_pubsub_stats_slot();

    if (transport || slot == NULL) {
        return;
    }

    i = ngx_pubsub_transport_index(t);
    if (i < 0) {
        return;
    }

    transport = static_cast<uint32_t>(t);
    (void) ngx_atomic_fetch_add(&slot->subscribers[i], 1);
}


void
ngx_pubsub_sub_count_t::end()
{
    ngx_int_t                 i;
    ngx_pubsub_stats_slot_t  *slot;

    if (transport == 0) {
        return;
    }

    i = ngx_pubsub_transport_index(transport);
    transport = 0;

    /* the slot was zeroed at exit: nothing to take back */
    slot = ngx_pubsub_stats_slot();
    if (i < 0 || slot == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&slot->subscribers[i], -1);
}


void
ngx_pubsub_stats_delivered(ngx_uint_t n)
{
    ngx_pubsub_stats_t  *st = ngx_pubsub_stats_zone();

    if (st) {
        (void) ngx_atomic_fetch_add(&st->delivered, n);
    }
}


/* channel events published to their meta channel, or lost (logged) */
/* what the Redis engine counted, in the order of its JSON and metrics */
const char  *ngx_pubsub_redis_counter_names[NGX_PUBSUB_REDIS_COUNTERS] = {
    "published", "history_reads", "live_messages", "catch_ups",
    "snapshots_skipped", "presence_updates", "presence_resyncs",
    "presence_errors", "presence_swept"
};

const char  *ngx_pubsub_redis_counter_help[NGX_PUBSUB_REDIS_COUNTERS] = {
    "Messages published through Redis.",
    "Reads of a channel's history in Redis to fill a hole or catch up.",
    "Messages and presence events received from Redis pub/sub.",
    "Subscribers that attached behind their worker and caught up "
    "from history.",
    "Subscribers owed nothing, attached without reading a snapshot.",
    "Presence deltas and refreshes sent to Redis.",
    "Presence refreshes whose part differed in Redis and was sent whole.",
    "Presence scripts that failed (the next refresh repairs them).",
    "Channels of dead nginx instances swept."
};


static void
ngx_pubsub_redis_counters(const pubsub::RedisStoreStats &st,
    uint64_t v[NGX_PUBSUB_REDIS_COUNTERS])
{
    v[0] = st.published;
    v[1] = st.fetches;
    v[2] = st.liveMessages;
    v[3] = st.catchUps;
    v[4] = st.snapshotsSkipped;
    v[5] = st.presenceUpdates;
    v[6] = st.presenceResyncs;
    v[7] = st.presenceErrors;
    v[8] = st.presenceSwept;
}


/* adds what a store counted since `last` (this worker's copy) */
void
ngx_pubsub_stats_redis_engine(const pubsub::RedisStoreStats &now,
    pubsub::RedisStoreStats *last)
{
    uint64_t             a[NGX_PUBSUB_REDIS_COUNTERS];
    uint64_t             b[NGX_PUBSUB_REDIS_COUNTERS];
    ngx_pubsub_stats_t  *st = ngx_pubsub_stats_zone();

    if (st == NULL) {
        return;
    }

    ngx_pubsub_redis_counters(now, a);
    ngx_pubsub_redis_counters(*last, b);

    for (ngx_uint_t i = 0; i < NGX_PUBSUB_REDIS_COUNTERS; i++) {
        if (a[i] > b[i]) {
            (void) ngx_atomic_fetch_add(&st->redis_engine[i], a[i] - b[i]);
        }
    }

    *last = now;
}


void
ngx_pubsub_stats_chev(ngx_uint_t published, ngx_uint_t failed)
{
    ngx_pubsub_stats_t  *st = ngx_pubsub_stats_zone();

    if (st == NULL) {
        return;
    }

    if (published) {
        (void) ngx_atomic_fetch_add(&st->chev_published, published);
    }

    if (failed) {
        (void) ngx_atomic_fetch_add(&st->chev_failed, failed);
    }
}


/*
 * The Redis engine reports its connections: `links` and `ready` change by
 * the deltas given; a reply's round trip (ms, nginx's clock) is smoothed.
 */
void
ngx_pubsub_stats_redis(ngx_int_t links, ngx_int_t ready)
{
    ngx_pubsub_stats_slot_t  *slot = ngx_pubsub_stats_slot();

    if (slot == NULL) {
        return;
    }

    if (links) {
        (void) ngx_atomic_fetch_add(&slot->redis_links, links);
    }

    if (ready) {
        (void) ngx_atomic_fetch_add(&slot->redis_ready, ready);
    }
}


void
ngx_pubsub_stats_redis_rtt(ngx_msec_t ms)
{
    ngx_pubsub_stats_slot_t  *slot = ngx_pubsub_stats_slot();

    if (slot == NULL) {
        return;
    }

    /* only this worker writes its slot: plain stores are enough */
    if (slot->redis_replies == 0) {
        slot->redis_rtt_ms = ms * 8;
    } else {
        slot->redis_rtt_ms = slot->redis_rtt_ms - slot->redis_rtt_ms / 8 + ms;
    }

    slot->redis_replies++;
}


/* ------------------------------------------------------------ reading */



static ngx_uint_t
ngx_pubsub_pid_alive(ngx_pid_t pid)
{
    if (pid == ngx_pid) {
        return 1;
    }

    return kill(pid, 0) == 0 || errno != ESRCH;
}


/* the engine's zone: its counts and how full it is */
static void
ngx_pubsub_snapshot_zone(ngx_pubsub_snapshot_t *s, ngx_shm_zone_t *zone)
{
    ngx_slab_pool_t    *shpool;
    pubsub::StoreRoot  *root;

    shpool = reinterpret_cast<ngx_slab_pool_t *>(zone->shm.addr);

    ngx_shmtx_lock(&shpool->mutex);

    root = static_cast<pubsub::StoreRoot *>(shpool->data);
    if (root) {
        s->channels = root->channels;
        s->subscriptions = root->subscribers;
        s->messages = root->messages;
        s->message_bytes = root->messageBytes;
        s->published = root->published;
        s->generation = root->generation;
        s->fresh_channels = root->freshChannels;
        s->fresh_bytes = root->freshBytes;
        s->fresh_limit = root->freshLimit;
        s->fresh_refused = root->freshRefused;
        s->reclaimed = root->reclaimed;

        const pubsub::PresenceRoot *pr =
            static_cast<const pubsub::PresenceRoot *>(root->presence);

        if (pubsub::PresenceRegistry::compatible(pr)) {
            s->presence_members = pr->totalMembers;
            s->presence_connections = pr->totalConnections;
        }
    }

    s->shm_size = zone->shm.size;
    s->pages_free = shpool->pfree;
    s->pages_total = (shpool->end - shpool->start) / ngx_pagesize;

    ngx_shmtx_unlock(&shpool->mutex);

    s->shm_free = s->pages_free * ngx_pagesize;
    s->shm_used = s->shm_size - s->shm_free;
}


/* the slots of the workers alive: subscribers and Redis links */
static void
ngx_pubsub_snapshot_workers(ngx_pubsub_snapshot_t *s, ngx_pubsub_stats_t *st)
{
    ngx_pubsub_stats_slot_t  *slot;

    for (ngx_uint_t i = 0; i < NGX_MAX_PROCESSES; i++) {
        slot = &st->slots[i];

        if (slot->pid == 0
            || !ngx_pubsub_pid_alive(static_cast<ngx_pid_t>(slot->pid)))
        {
            continue;
        }

        s->workers++;

        s->redis_links += slot->redis_links;
        s->redis_ready += slot->redis_ready;
        if (slot->redis_replies) {
            s->redis_rtt_x8 += slot->redis_rtt_ms;
            s->redis_measured++;
        }

        for (ngx_uint_t t = 0; t < NGX_PUBSUB_TRANSPORTS; t++) {
            /* a gauge read while it moves may be transiently "negative" */
            ngx_atomic_int_t v = static_cast<ngx_atomic_int_t>(
                                     slot->subscribers[t]);
            if (v > 0) {
                s->subscribers[t] += v;
                s->subscribers_total += v;
            }
        }
    }
}


/* the instance-wide counters */
static void
ngx_pubsub_snapshot_counters(ngx_pubsub_snapshot_t *s, ngx_pubsub_stats_t *st)
{
    s->delivered = st->delivered;
    s->chev_published = st->chev_published;
    for (ngx_uint_t i = 0; i < NGX_PUBSUB_REDIS_COUNTERS; i++) {
        s->redis_engine[i] = st->redis_engine[i];
    }
    s->chev_failed = st->chev_failed;
    s->reloads = st->reloads;
    s->uptime = ngx_time() - st->started;
    for (ngx_uint_t i = 0; i < NGX_PUBSUB_HOOKS; i++) {
        s->hook_calls[i] = st->hooks.calls[i];
        s->hook_failures[i] = st->hooks.failures[i];
    }

    s->hook_refused = st->hooks.refused;
    s->token_refused = st->hooks.token_refused;
    s->hook_in_flight = st->hooks.in_flight;
    ngx_pubsub_hook_queue_stats(&s->hook_queue);
    s->hookq_pending = s->hook_queue.pending;
    s->hookq_delivered = s->hook_queue.delivered;
    s->hookq_retried = s->hook_queue.retried;
    s->hookq_given_up = s->hook_queue.given_up;
    s->hookq_dropped = s->hook_queue.dropped;
}


static ngx_int_t
ngx_pubsub_snapshot(ngx_pubsub_snapshot_t *s)
{
    ngx_pubsub_main_conf_t  *pmcf;
    ngx_pubsub_stats_t      *st = ngx_pubsub_stats_zone();

    ngx_memzero(s, sizeof(ngx_pubsub_snapshot_t));

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_pubsub_module));
    if (pmcf == NULL || pmcf->shm_zone == NULL || st == NULL) {
        return NGX_ERROR;
    }

    ngx_pubsub_snapshot_zone(s, pmcf->shm_zone);
    ngx_pubsub_snapshot_workers(s, st);
    ngx_pubsub_snapshot_counters(s, st);

    return NGX_OK;
}


void
ngx_pubsub_append(std::string &out, const char *fmt, ...)
{
    char     buf[256];
    va_list  args;
    int      n;

    va_start(args, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);

    if (n > 0) {
        out.append(buf, std::min<size_t>(n, sizeof(buf) - 1));
    }
}


#define U(v)  static_cast<unsigned long long>(v)

/* the JSON's "hooks" object */
static void
ngx_pubsub_status_json_hooks(std::string &o, const ngx_pubsub_snapshot_t *s)
{
    o.append("\"hooks\":{");
    for (ngx_uint_t i = 0; i < NGX_PUBSUB_HOOKS; i++) {
        ngx_pubsub_append(o, "\"%s\":{\"calls\":%llu,\"failures\":%llu},",
                          ngx_pubsub_hook_labels[i], U(s->hook_calls[i]),
                          U(s->hook_failures[i]));
    }
    ngx_pubsub_append(o, "\"authorize_refused\":%llu,\"token_refused\":%llu,"
                      "\"in_flight\":%llu,",
                      U(s->hook_refused), U(s->token_refused),
                      U(s->hook_in_flight));
    ngx_pubsub_append(o, "\"queue\":{\"pending\":%llu,\"queued\":%llu,"
                      "\"delivered\":%llu,\"retried\":%llu,"
                      "\"given_up\":%llu,\"dropped\":%llu}},\n",
                      U(s->hook_queue.pending), U(s->hook_queue.queued),
                      U(s->hook_queue.delivered), U(s->hook_queue.retried),
                      U(s->hook_queue.given_up), U(s->hook_queue.dropped));
}


/* the JSON's "redis" object, the last one */
static void
ngx_pubsub_status_json_redis(std::string &o, const ngx_pubsub_snapshot_t *s)
{
    char  latency[32] = "null";

    /* upstream links of all workers, how many are connected */

    if (s->redis_measured) {
        snprintf(latency, sizeof(latency), "%.1f",
                 (double) s->redis_rtt_x8 / 8 / s->redis_measured);
    }

    ngx_pubsub_append(o, "\"redis\":{\"enabled\":%s,\"links\":%llu,"
                      "\"connected_links\":%llu,\"connected\":%s,"
                      "\"latency_ms\":%s",
                      s->redis_links ? "true" : "false",
                      U(s->redis_links), U(s->redis_ready),
                      (s->redis_links && s->redis_ready == s->redis_links)
                      ? "true" : "false", latency);

    for (ngx_uint_t i = 0; i < NGX_PUBSUB_REDIS_COUNTERS; i++) {
        ngx_pubsub_append(o, ",\"%s\":%llu", ngx_pubsub_redis_counter_names[i],
                          U(s->redis_engine[i]));
    }
    o.append("}}\n");
}


static void
ngx_pubsub_status_json(std::string &o, const ngx_pubsub_snapshot_t *s)
{
    ngx_pubsub_append(o, "{\"version\":\"%s\",\"uptime\":%llu,"
                      "\"reloads\":%llu,\"generation\":%llu,"
                      "\"workers\":%llu,\"worker\":{\"pid\":%ld,"
                      "\"slot\":%ld},\n",
                      NGX_PUBSUB_VERSION, U(s->uptime), U(s->reloads),
                      U(s->generation), U(s->workers), (long) ngx_pid,
                      (long) ngx_process_slot);
    ngx_pubsub_append(o, "\"channels\":%llu,\"subscriptions\":%llu,"
                      "\"messages\":%llu,\"message_bytes\":%llu,\n",
                      U(s->channels), U(s->subscriptions), U(s->messages),
                      U(s->message_bytes));
    ngx_pubsub_append(o, "\"published\":%llu,\"delivered\":%llu,\n",
                      U(s->published), U(s->delivered));
    ngx_pubsub_append(o, "\"channel_events\":{\"published\":%llu,"
                      "\"failed\":%llu},\n",
                      U(s->chev_published), U(s->chev_failed));

    ngx_pubsub_append(o, "\"subscribers\":{\"total\":%llu",
                      U(s->subscribers_total));
    for (ngx_uint_t t = 0; t < NGX_PUBSUB_TRANSPORTS; t++) {
        ngx_pubsub_append(o, ",\"%s\":%llu", ngx_pubsub_transport_names[t],
                          U(s->subscribers[t]));
    }
    o.append("},\n");

    ngx_pubsub_append(o, "\"shm\":{\"size\":%llu,\"used\":%llu,\"free\":%llu,"
                      "\"pages\":%llu,\"free_pages\":%llu},\n",
                      U(s->shm_size), U(s->shm_used), U(s->shm_free),
                      U(s->pages_total), U(s->pages_free));

    ngx_pubsub_append(o, "\"unpublished_channels\":{\"channels\":%llu,"
                      "\"bytes\":%llu,\"limit\":%llu,\"refused\":%llu,"
                      "\"reclaimed\":%llu},\n",
                      U(s->fresh_channels), U(s->fresh_bytes),
                      U(s->fresh_limit), U(s->fresh_refused),
                      U(s->reclaimed));

    ngx_pubsub_append(o, "\"presence\":{\"members\":%llu,"
                      "\"connections\":%llu},\n",
                      U(s->presence_members), U(s->presence_connections));

    ngx_pubsub_status_json_hooks(o, s);
    ngx_pubsub_status_json_redis(o, s);
}


static ngx_uint_t
ngx_pubsub_status_wants_prometheus(ngx_http_request_t *r)
{
    ngx_str_t         fmt;
    ngx_table_elt_t  *accept;

    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK) {
        return fmt.len == 10
               && ngx_strncasecmp(fmt.data, (u_char *) "prometheus", 10)
                  == 0;
    }

    accept = ngx_pubsub_find_header(r, "Accept");

    return accept != NULL
           && pubsub::headerHasToken(ngx_pubsub_sv(accept->value),
                                     "text/plain");
}


static ngx_int_t
ngx_pubsub_status_handler(ngx_http_request_t *r)
{
    return ngx_pubsub_guard(r->connection->log, [r]() -> ngx_int_t {
        ngx_int_t              rc;
        ngx_pubsub_snapshot_t  snap;
        std::string            body;

        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            if (ngx_pubsub_set_header(r, "Allow", "GET, HEAD") != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            ngx_http_discard_request_body(r);
            return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_ALLOWED,
                                           "text/plain",
                                           "Method not allowed.\n");
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_pubsub_snapshot(&snap) != NGX_OK) {
            return ngx_pubsub_respond_text(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "text/plain",
                                           "Status not available.\n");
        }

        if (ngx_pubsub_set_header(r, "Cache-Control", "no-cache") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_pubsub_status_wants_prometheus(r)) {
            ngx_pubsub_status_prometheus(body, &snap);
            return ngx_pubsub_respond_text(r, NGX_HTTP_OK,
                       "text/plain; version=0.0.4; charset=utf-8", body);
        }

        ngx_pubsub_status_json(body, &snap);
        return ngx_pubsub_respond_text(r, NGX_HTTP_OK, "application/json",
                                       body);
    });
}


/* pubsub_status; */
char *
ngx_pubsub_status_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));

    if (clcf->handler == ngx_pubsub_status_handler) {
        return const_cast<char *>("is duplicate");
    }

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_status_handler);
}
