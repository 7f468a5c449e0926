/*
 * ngx_pubsub: the Redis link's state - discovery of the slot map (CLUSTER
 * SLOTS: a single server or a cluster's masters), the link coming up,
 * failures (the whole link, or one master in a sharded cluster), the
 * reconnects with backoff, a new map applied while ready, and the timers
 * (reconnect, watchdog for timeouts and repairs, the once-a-second tick
 * that also runs the store's maintenance).  The connections themselves are
 * in ngx_pubsub_redis_conn.cpp; ngx_pubsub_redis_link.h has the picture.
 */

#include "ngx_pubsub_redis_link.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>


/* CLUSTER SLOTS on the discovery connection */
void
ngx_pubsub_redis_on_discover(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         privdata);
    ngx_pubsub_redis_link_t  *link = conn->link;

    if (r == NULL || link->closing || conn->ac != ac
        || link->state != ngx_pubsub_redis_link_t::kDiscovering)
    {
        return;
    }

    try {
        link->discovered(static_cast<redisReply *>(r));

    } catch (...) {
        link->fail("cannot read the slot map", "out of memory");
    }
}


/* a connection's hello passed: the link (or a master) may be up */
void
ngx_pubsub_redis_link_s::hello_done(ngx_pubsub_redis_conn_t *conn)
{
    ngx_pubsub_redis_node_t  *n = conn->node;

    conn->ok = true;

    if (state == kReady && n != NULL && n->connecting) {
        node_up(n);
        return;
    }

    if (state != kConnecting) {
        return;
    }

    shard = cluster;

    for (size_t i = 0; i < nnodes; i++) {
        if (!nodes[i]->cmd.ok || !nodes[i]->subc.ok) {
            return;
        }
        shard = shard && nodes[i]->sharded;
    }

    for (size_t i = 0; i < nnodes; i++) {
        nodes[i]->up = true;
        nodes[i]->connecting = false;
    }

    set_state(kReady);
    attempts = 0;
    repair_at = 0;
    repair_attempts = 0;

    ngx_uint_t level = was_ready ? NGX_LOG_WARN : NGX_LOG_INFO;

    if (cluster) {
        ngx_log_error(level, log, 0,
                      "pubsub: redis upstream \"%V\": connected to a cluster "
                      "of %uz masters via %s (%s pub/sub)", &up->name, nnodes,
                      where.c_str(), shard ? "sharded" : "plain");

    } else {
        ngx_log_error(level, log, 0,
                      "pubsub: redis upstream \"%V\": connected to %s",
                      &up->name, where.c_str());
    }

    was_ready = true;

    if (store) {
        try {
            store->onReady();

        } catch (...) {
            fail("cannot resubscribe", "out of memory");
        }
    }
}


/* both hellos of a master that was down, or of a replica that took over */
void
ngx_pubsub_redis_link_s::node_up(ngx_pubsub_redis_node_t *n)
{
    if (!n->cmd.ok || !n->subc.ok) {
        return;
    }

    if (shard && !n->sharded) {
        fail("a master has no sharded pub/sub", n->addr.c_str());
        return;
    }

    n->connecting = false;
    n->up = true;

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "pubsub: redis upstream \"%V\": master %s is up, "
                  "%uz of %uz masters up", &up->name, n->addr.c_str(),
                  nodes_up(), nnodes);

    if (nodes_up() == nnodes) {
        repair_at = 0;
        repair_attempts = 0;
    }

    nodes_changed();
}


void
ngx_pubsub_redis_link_s::connect()
{
    ngx_uint_t   nseeds = up->servers.nelts;
    ngx_uint_t   total = nseeds + nnodes;
    ngx_uint_t   i;
    std::string  host;
    int          port;

    if (closing || state != kDown) {
        return;
    }

    /* the seeds first, then the masters of the last slot map */
    i = candidate % total;
    if (i < nseeds) {
        ngx_pubsub_redis_server_t *s = &static_cast<ngx_pubsub_redis_server_t *>(
                                           up->servers.elts)[i];
        host.assign(reinterpret_cast<char *>(s->host.data), s->host.len);
        port = s->port;

    } else {
        host = nodes[i - nseeds]->host;
        port = nodes[i - nseeds]->port;
    }

    where = host + ":" + std::to_string(port);
    set_state(kDiscovering);
    connect_start = ngx_current_msec;

    (void) open(&disc, host, port);
}


/* a master of the current map */
ngx_pubsub_redis_node_t *
ngx_pubsub_redis_link_s::node_at(const std::string &host, int port)
{
    for (auto &n : nodes) {
        if (n->in_map && n->port == port && n->host == host) {
            return n.get();
        }
    }

    return NULL;
}


/*
 * A node object for a master joining the map: one no longer used whose
 * connections hiredis has released (ngx_pubsub_redis_cleanup() ran), else a
 * new one.  Node objects are never freed before the link.
 */
ngx_pubsub_redis_node_t *
ngx_pubsub_redis_link_s::new_node(const std::string &host, int port)
{
    ngx_pubsub_redis_node_t  *n = NULL;

    for (auto &x : nodes) {
        if (!x->in_map && x->cmd.ac == NULL && x->cmd.c == NULL
            && x->subc.ac == NULL && x->subc.c == NULL)
        {
            n = x.get();
            break;
        }
    }

    if (n == NULL) {
        nodes.push_back(std::make_unique<ngx_pubsub_redis_node_t>());
        n = nodes.back().get();
    }

    n->host = host;
    n->port = port;
    n->addr = host + ":" + std::to_string(port);
    n->sharded = false;
    n->sent.clear();
    n->in_map = true;
    n->up = false;
    n->connecting = false;
    n->gen++;
    n->cmd = ngx_pubsub_redis_conn_t{this, n, NULL, NULL, false, false};
    n->subc = ngx_pubsub_redis_conn_t{this, n, NULL, NULL, true, false};

    return n;
}


ngx_pubsub_redis_node_t *
ngx_pubsub_redis_link_s::first_up()
{
    for (size_t i = 0; i < nnodes; i++) {
        if (nodes[i]->up) {
            return nodes[i].get();
        }
    }

    return NULL;
}


size_t
ngx_pubsub_redis_link_s::nodes_up()
{
    size_t  k = 0;

    for (size_t i = 0; i < nnodes; i++) {
        k += nodes[i]->up ? 1 : 0;
    }

    return k;
}


void
ngx_pubsub_redis_link_s::discovered(const redisReply *r)
{
    std::vector<pubsub::redis::SlotRange>  ranges;
    std::string                            reason;

    if (r->type == REDIS_REPLY_ERROR) {
        /*
         * a single server: "cluster support disabled", or CLUSTER renamed
         * away (an authentication error shows again in the node's hello)
         */
        pubsub::redis::SlotRange  all;
        size_t                    colon = where.rfind(':');

        all.first = 0;
        all.last = pubsub::redis::kClusterSlots - 1;
        all.host = where.substr(0, colon);
        all.port = std::stoi(where.substr(colon + 1));
        ranges.push_back(all);
        cluster = false;

    } else if (!pubsub::redis::parseClusterSlots(r, &ranges, &reason)) {
        fail("cannot read the cluster's slot map", reason.c_str());
        return;

    } else {
        cluster = true;
        if (server->db > 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "pubsub: redis upstream \"%V\": a cluster has no "
                          "databases, \"/%i\" is ignored", &up->name,
                          server->db);
        }
    }

    close_conn(&disc);

    /* the masters, reusing node objects (hiredis may still refer to them) */
    for (auto &n : nodes) {
        n->in_map = false;
    }

    adopt_map(ranges, false);

    set_state(kConnecting);

    for (size_t i = 0; i < nnodes; i++) {
        ngx_pubsub_redis_node_t  *n = nodes[i].get();

        n->connecting = true;

        if (!open(&n->cmd, n->host, n->port) || state != kConnecting) {
            return;
        }

        if (!open(&n->subc, n->host, n->port) || state != kConnecting) {
            return;
        }
    }
}


void
ngx_pubsub_redis_link_s::fail(const char *what, const char *detail)
{
    bool  lost = (state == kReady);

    if (closing || state == kDown) {
        return;
    }

    set_state(kDown);
    gen++;
    candidate++;
    repair_at = 0;
    map_checking = false;

    for (auto &n : nodes) {
        n->up = false;
        n->connecting = false;
    }

    ngx_uint_t level = lost ? NGX_LOG_ERR : NGX_LOG_INFO;

    ngx_log_error(level, log, 0,
                  "pubsub: redis upstream \"%V\" (%s): %s: %s",
                  &up->name, where.c_str(), what, detail ? detail : "");

    /* pending callbacks run now with no reply (publishers get 503) */
    close_all();

    if (lost && store) {
        try {
            store->onDown();

        } catch (...) {
            /* nothing to undo */
        }
    }

    schedule_reconnect();
}


/* exponential backoff with jitter: 50%..100% of the delay, so that workers
 * do not reconnect in step */
static ngx_msec_t
ngx_pubsub_redis_backoff(ngx_uint_t attempts, ngx_msec_t max)
{
    ngx_msec_t  delay;

    delay = NGX_PUBSUB_REDIS_BACKOFF_MIN;
    for (ngx_uint_t i = 0; i < attempts && delay < max; i++) {
        delay *= 2;
    }
    if (delay > max) {
        delay = max;
    }

    return delay / 2 + (ngx_msec_t) (ngx_random() % (delay / 2 + 1));
}


void
ngx_pubsub_redis_link_s::conn_failed(ngx_pubsub_redis_conn_t *conn,
    const char *what, const char *detail)
{
    if (conn->node != NULL && state == kReady && partial()) {
        node_down(conn->node, what, detail);

    } else {
        fail(what, detail);
    }
}


void
ngx_pubsub_redis_link_s::close_node(ngx_pubsub_redis_node_t *n)
{
    n->up = false;
    n->connecting = false;
    n->gen++;               /* its pending replies are not timed */
    /* pending callbacks run now with no reply (publishers get 503) */
    close_conn(&n->cmd);
    close_conn(&n->subc);
    n->sent.clear();
}


void
ngx_pubsub_redis_link_s::nodes_changed()
{
    if (store == nullptr || state != kReady) {
        return;
    }

    try {
        store->onNodesChanged();

    } catch (...) {
        fail("cannot resubscribe", "out of memory");
    }
}


/*
 * One master failed (sharded pub/sub in a cluster): the channels of its
 * slots are refused and lose their subscriptions; the other masters go on.
 * The last master up failing fails the whole link.
 */
void
ngx_pubsub_redis_link_s::node_down(ngx_pubsub_redis_node_t *n,
    const char *what, const char *detail)
{
    bool  was_up = n->up;

    if (closing || state != kReady || (!n->up && !n->connecting)) {
        return;
    }

    if (was_up && nodes_up() == 1) {
        fail(what, detail);     /* no master left: as a single server */
        return;
    }

    close_node(n);

    ngx_uint_t level = was_up ? NGX_LOG_ERR : NGX_LOG_INFO;

    ngx_log_error(level, log, 0,
                  "pubsub: redis upstream \"%V\": master %s: %s: %s%s",
                  &up->name, n->addr.c_str(), what, detail ? detail : "",
                  was_up ? " (its slots are unavailable until it is back or "
                           "replaced)" : "");

    if (!was_up) {
        return;
    }

    if (repair_at == 0) {
        repair_attempts = 0;
        repair_at = ngx_current_msec
                    + ngx_pubsub_redis_backoff(repair_attempts,
                                               NGX_PUBSUB_REDIS_REPAIR_MAX);
        if (repair_at == 0) {
            repair_at = 1;
        }
    }

    nodes_changed();
}


/* connects the masters of the map that are down (a failed one that the
 * map still lists, or a replica that took over) */
void
ngx_pubsub_redis_link_s::reopen_down()
{
    for (size_t i = 0; i < nnodes && state == kReady; i++) {
        ngx_pubsub_redis_node_t  *n = nodes[i].get();

        if (n->up || n->connecting
            || n->cmd.ac || n->cmd.c || n->subc.ac || n->subc.c)
        {
            continue;   /* busy, or hiredis still releasing the last ones */
        }

        n->connecting = true;
        n->connect_start = ngx_current_msec;
        n->cmd.ok = false;
        n->subc.ok = false;

        if (!open(&n->cmd, n->host, n->port) || !n->connecting) {
            continue;
        }

        (void) open(&n->subc, n->host, n->port);
    }
}


/*
 * A new slot map while ready (sharded pub/sub): masters no longer listed
 * (failed over, demoted) are dropped, new ones (promoted replicas) are
 * connected, and the store moves the subscriptions of their slots.  A slot
 * moving away from a master that stays up (a resharding) reconnects
 * everything, as before.
 */
void
ngx_pubsub_redis_link_s::apply_map(
    const std::vector<pubsub::redis::SlotRange> &ranges)
{
    bool  changed = false;

    for (auto &n : nodes) {
        n->mark = false;
    }

    for (const auto &range : ranges) {
        ngx_pubsub_redis_node_t  *n = node_at(range.host, range.port);

        if (n) {
            n->mark = true;
        }
    }

    for (const auto &range : ranges) {
        ngx_pubsub_redis_node_t  *n = node_at(range.host, range.port);

        for (int s = range.first; s <= range.last; s++) {
            ngx_pubsub_redis_node_t  *old = slots[s];

            if (old == n && n != NULL) {
                continue;
            }

            changed = true;

            if (old != NULL && old->up && old->mark) {
                fail("slot map changed", "reconnecting to the masters");
                return;
            }
        }
    }

    if (!changed) {
        return;
    }

    if (!drop_unlisted()) {
        return;
    }

    adopt_map(ranges, true);

    if (repair_at == 0 && nodes_up() < nnodes) {
        repair_attempts = 0;
        repair_at = ngx_current_msec + NGX_PUBSUB_REDIS_CONNECT_TIMEOUT;
    }

    /* slots that moved to a master already up */
    nodes_changed();
}


/*
 * apply_map(): closes the masters the new map no longer lists (not marked)
 * and takes them out of the map; false when the link failed meanwhile.
 */
bool
ngx_pubsub_redis_link_s::drop_unlisted()
{
    bool  dropped = false;

    for (size_t i = 0; i < nnodes; i++) {
        ngx_pubsub_redis_node_t  *n = nodes[i].get();

        if (n->mark) {
            continue;
        }

        if (n->up || n->connecting) {
            if (n->up && nodes_up() == 1) {
                fail("slot map changed", "no master of the map is up");
                return false;
            }
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "pubsub: redis upstream \"%V\": master %s no "
                          "longer serves slots", &up->name, n->addr.c_str());
            dropped = dropped || n->up;
            close_node(n);
        }
    }

    if (dropped) {
        nodes_changed();    /* their channels lose their subscriptions */
        if (state != kReady) {
            return false;
        }
    }

    for (size_t i = 0; i < nnodes; i++) {
        if (!nodes[i]->mark) {
            nodes[i]->in_map = false;
        }
    }

    return true;
}


/*
 * The slots go to their masters, new ones join the map (logged when the
 * map changed, not for the first one), and the masters of the map come
 * first: connect() takes them as seeds.
 */
void
ngx_pubsub_redis_link_s::adopt_map(
    const std::vector<pubsub::redis::SlotRange> &ranges, bool changed)
{
    for (const auto &range : ranges) {
        ngx_pubsub_redis_node_t  *n = node_at(range.host, range.port);

        if (n == NULL) {
            n = new_node(range.host, range.port);
            if (changed) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "pubsub: redis upstream \"%V\": slot map "
                              "changed: master %s joins", &up->name,
                              n->addr.c_str());
            }
        }

        for (int s = range.first; s <= range.last; s++) {
            slots[s] = n;
        }
    }

    std::stable_partition(nodes.begin(), nodes.end(),
        [](const std::unique_ptr<ngx_pubsub_redis_node_t> &n) {
            return n->in_map;
        });
    nnodes = 0;
    while (nnodes < nodes.size() && nodes[nnodes]->in_map) {
        nnodes++;
    }
}


void
ngx_pubsub_redis_link_s::schedule_reconnect()
{
    ngx_msec_t  delay;

    if (closing || ngx_exiting || ngx_quit || reconnect_ev.timer_set) {
        return;
    }

    delay = ngx_pubsub_redis_backoff(attempts++, NGX_PUBSUB_REDIS_BACKOFF_MAX);

    ngx_add_timer(&reconnect_ev, delay);
}


void
ngx_pubsub_redis_reconnect_handler(ngx_event_t *ev)
{
    auto *link = static_cast<ngx_pubsub_redis_link_t *>(ev->data);

    try {
        link->connect();

    } catch (...) {
        link->state = ngx_pubsub_redis_link_t::kDown;
        link->schedule_reconnect();
    }
}


void
ngx_pubsub_redis_watchdog_handler(ngx_event_t *ev)
{
    auto *link = static_cast<ngx_pubsub_redis_link_t *>(ev->data);

    if ((link->state == ngx_pubsub_redis_link_t::kConnecting
         || link->state == ngx_pubsub_redis_link_t::kDiscovering)
        && ngx_current_msec - link->connect_start
           > NGX_PUBSUB_REDIS_CONNECT_TIMEOUT)
    {
        link->fail("cannot connect", "timed out");

    } else if (link->state == ngx_pubsub_redis_link_t::kReady) {
        for (size_t i = 0; i < link->nnodes
                           && link->state == ngx_pubsub_redis_link_t::kReady;
             i++)
        {
            ngx_pubsub_redis_node_t  *n = link->nodes[i].get();

            if (n->up && !n->sent.empty()
                && ngx_current_msec - n->sent.front()
                   > NGX_PUBSUB_REDIS_COMMAND_TIMEOUT)
            {
                if (link->partial()) {
                    link->node_down(n, "command timed out", "");

                } else {
                    link->fail("command timed out", n->addr.c_str());
                }

            } else if (n->connecting
                       && ngx_current_msec - n->connect_start
                          > NGX_PUBSUB_REDIS_CONNECT_TIMEOUT)
            {
                link->node_down(n, "cannot connect", "timed out");
            }
        }

        /* a master is down: read the map again (with backoff) */
        if (link->state == ngx_pubsub_redis_link_t::kReady
            && link->repair_at != 0
            && (ngx_msec_int_t) (ngx_current_msec - link->repair_at) >= 0)
        {
            link->repair_attempts++;
            link->repair_at = ngx_current_msec
                              + ngx_pubsub_redis_backoff(link->repair_attempts,
                                    NGX_PUBSUB_REDIS_REPAIR_MAX);
            if (link->repair_at == 0) {
                link->repair_at = 1;
            }

            try {
                link->check_map();

            } catch (...) {
            }
        }
    }

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, NGX_PUBSUB_REDIS_WATCHDOG);
    }
}


/*
 * A cluster's slot map is read again every few seconds: a failover or a
 * resharding that no command of this worker ran into yet (a worker with
 * only subscribers) still makes it reconnect to the new masters.
 */
void
ngx_pubsub_redis_link_s::check_map()
{
    std::vector<std::string>  args = { "CLUSTER", "SLOTS" };
    ngx_uint_t                g = gen;

    if (state != kReady || !cluster || map_checking) {
        return;
    }

    map_checking = command(args, [this, g](const redisReply *r) {
        std::vector<pubsub::redis::SlotRange>  ranges;
        std::string                            reason;

        if (g != gen) {
            return;     /* answered by a closed connection */
        }

        map_checking = false;

        if (r == nullptr || state != kReady
            || !pubsub::redis::parseClusterSlots(r, &ranges, &reason))
        {
            return;     /* a failing connection is noticed elsewhere */
        }

        if (partial()) {
            apply_map(ranges);
            reopen_down();
            return;
        }

        for (const auto &range : ranges) {
            for (int s = range.first; s <= range.last; s++) {
                ngx_pubsub_redis_node_t  *n = slots[s];

                if (n == NULL || n->port != range.port
                    || n->host != range.host)
                {
                    fail("slot map changed", "reconnecting to the masters");
                    return;
                }
            }
        }
    });
}


void
ngx_pubsub_redis_tick_handler(ngx_event_t *ev)
{
    auto *link = static_cast<ngx_pubsub_redis_link_t *>(ev->data);

    if (++link->ticks % NGX_PUBSUB_REDIS_MAP_CHECK == 0) {
        try {
            link->check_map();

        } catch (...) {
        }
    }

    if (link->store) {
        try {
            link->store->tick();
            ngx_pubsub_stats_redis_engine(link->store->stats(),
                                          &link->reported);

        } catch (...) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "pubsub: redis maintenance failed");
        }
    }

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, 1000);
    }
}
