/*
 * ngx_pubsub: the Redis link's insides, shared by the files of src/redis
 * that implement it: ngx_pubsub_redis_conn.cpp (hiredis on nginx's event
 * loop, commands, subscriptions) and ngx_pubsub_redis_cluster.cpp (the
 * slot map, failures, reconnects, timers).
 *
 * Each worker keeps, per Redis upstream, two hiredis async connections per
 * Redis master: one for commands (Lua scripts) and one in subscribe mode
 * for the pubsub channels of the channels this worker has subscribers for.
 * A connect starts with a short discovery connection to a seed (the
 * pubsub_redis_server lines, then the nodes of the last slot map) that
 * asks CLUSTER SLOTS: a single server answers that cluster support is
 * disabled and is then the only node; a cluster gives the masters and
 * their slots, and each command goes to the master owning the hash slot of
 * its channel's key (MOVED updates the slot, ASK is followed once with
 * ASKING).  hiredis's fds are wrapped in ngx_connection_t and their
 * read/write interest goes through nginx's event module (level-triggered,
 * as hiredis reads once per event).  hiredis 0.14 has no timer hook, so a
 * watchdog timer enforces the connect and command timeouts.
 *
 * A single server (or a cluster without sharded pub/sub): a failure of any
 * connection drops them all, and the reconnect (with exponential backoff
 * and jitter) reads the slot map again.  A cluster with sharded pub/sub: a
 * failing master is dropped alone ("down"); only the channels of its slots
 * are refused (RedisLink::readyFor()) and lose their subscription, the
 * other masters go on.  The link then reads the slot map again with
 * backoff and jitter (and every 3 s anyway) through a master that is up:
 * when a replica took over the slots, it connects to it, and the store
 * re-subscribes those channels there (RedisStore::onNodesChanged()); while
 * the map still names the failed master, it tries to reconnect to it.
 * When no master is left up, the whole link fails and reconnects as for a
 * single server.
 */

#ifndef _NGX_PUBSUB_REDIS_LINK_H_INCLUDED_
#define _NGX_PUBSUB_REDIS_LINK_H_INCLUDED_

#include "ngx_pubsub_redis.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "pubsub/redis/redis_cluster.h"

extern "C" {
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
}


#define NGX_PUBSUB_REDIS_CONNECT_TIMEOUT  3000
#define NGX_PUBSUB_REDIS_COMMAND_TIMEOUT  5000
#define NGX_PUBSUB_REDIS_WATCHDOG         250
#define NGX_PUBSUB_REDIS_BACKOFF_MIN      100
#define NGX_PUBSUB_REDIS_BACKOFF_MAX      3000
#define NGX_PUBSUB_REDIS_REPAIR_MAX       3000    /* map reads, a master down */
#define NGX_PUBSUB_REDIS_MAX_INFLIGHT     20000
#define NGX_PUBSUB_REDIS_MAX_REDIRECTS    3
#define NGX_PUBSUB_REDIS_MAP_CHECK        3    /* seconds */

/* a plain channel every cluster subscribe connection listens to, see
 * ngx_pubsub_redis_link_s::subscribe() */
#define NGX_PUBSUB_REDIS_ANCHOR           "ngx_pubsub:anchor"


struct ngx_pubsub_redis_node_t;


struct ngx_pubsub_redis_conn_t {
    ngx_pubsub_redis_link_t  *link;
    ngx_pubsub_redis_node_t  *node;     /* NULL: the discovery connection */
    redisAsyncContext        *ac;
    ngx_connection_t         *c;
    bool                      sub;
    bool                      ok;       /* the hello (AUTH/SELECT/PING) passed */
};


/* a Redis master (or the single server); never freed before the link */
struct ngx_pubsub_redis_node_t {
    std::string               host;
    int                       port = 0;
    std::string               addr;     /* host:port, for logs */
    ngx_pubsub_redis_conn_t   cmd;
    ngx_pubsub_redis_conn_t   subc;
    std::deque<ngx_msec_t>    sent;     /* command send times, FIFO */
    bool                      sharded = false;  /* knows SPUBLISH */
    bool                      in_map = false;   /* a master of the map */
    bool                      up = false;       /* both hellos passed */
    bool                      connecting = false;
    bool                      mark = false;     /* scratch (apply_map) */
    ngx_uint_t                gen = 0;          /* of its connections */
    ngx_msec_t                connect_start = 0;
};


struct ngx_pubsub_redis_pending_t;

struct ngx_pubsub_redis_link_s final : public pubsub::RedisLink {
    enum state_e { kDown, kDiscovering, kConnecting, kReady };

    ngx_pubsub_redis_link_s(ngx_pubsub_redis_upstream_t *up, ngx_log_t *log);
    ~ngx_pubsub_redis_link_s() override;

    bool ready() const override { return state == kReady; }
    bool readyFor(std::string_view key) const override
    {
        ngx_pubsub_redis_node_t  *n;

        if (state != kReady) {
            return false;
        }
        if (!cluster) {
            return true;
        }
        n = slots[pubsub::redis::keySlot(key)];
        return n != NULL && n->up;
    }
    /* one master may fail alone (else any failure drops the link) */
    bool partial() const { return cluster && shard; }

    /* every change of state goes here: pubsub_status counts ready links */
    void set_state(state_e to)
    {
        if ((state == kReady) != (to == kReady)) {
            ngx_pubsub_stats_redis(0, to == kReady ? 1 : -1);
        }
        state = to;
    }
    bool command(const std::vector<std::string> &args, ReplyFn cb) override;
    bool subscribe(const std::string &channel) override;
    bool unsubscribe(const std::string &channel) override;
    bool sharded() const override { return state == kReady && shard; }

    void connect();
    void check_map();
    void discovered(const redisReply *r);
    void fail(const char *what, const char *detail);
    void conn_failed(ngx_pubsub_redis_conn_t *conn, const char *what,
                     const char *detail);
    void node_down(ngx_pubsub_redis_node_t *n, const char *what,
                   const char *detail);
    void close_node(ngx_pubsub_redis_node_t *n);
    void apply_map(const std::vector<pubsub::redis::SlotRange> &ranges);
    bool drop_unlisted();
    void adopt_map(const std::vector<pubsub::redis::SlotRange> &ranges,
                   bool changed);
    void reopen_down();
    void nodes_changed();
    ngx_pubsub_redis_node_t *new_node(const std::string &host, int port);
    ngx_pubsub_redis_node_t *first_up();
    size_t nodes_up();
    void schedule_reconnect();
    bool open(ngx_pubsub_redis_conn_t *conn, const std::string &host,
              int port);
    void close_conn(ngx_pubsub_redis_conn_t *conn);
    void close_all();
    void hello(ngx_pubsub_redis_conn_t *conn);
    void hello_done(ngx_pubsub_redis_conn_t *conn);
    void node_up(ngx_pubsub_redis_node_t *n);
    bool send(ngx_pubsub_redis_node_t *n, ngx_pubsub_redis_pending_t *p,
              const std::vector<std::string> &args);
    ngx_pubsub_redis_node_t *node_at(const std::string &host, int port);
    ngx_pubsub_redis_node_t *sub_node(const std::string &channel);

    ngx_pubsub_redis_upstream_t  *up;
    ngx_pubsub_redis_server_t    *server;   /* credentials (the first seed) */
    ngx_log_t                    *log;
    pubsub::RedisStore           *store = nullptr;
    pubsub::RedisStoreStats       reported;   /* store counters in the status */
    state_e                       state = kDown;
    bool                          closing = false;
    bool                          was_ready = false;
    bool                          cluster = false;
    bool                          shard = false;
    ngx_uint_t                    attempts = 0;
    ngx_uint_t                    candidate = 0;  /* next discovery target */
    ngx_uint_t                    gen = 0;        /* connection generation */
    ngx_uint_t                    ticks = 0;
    ngx_msec_t                    connect_start = 0;
    ngx_msec_t                    repair_at = 0;  /* a master is down */
    ngx_uint_t                    repair_attempts = 0;
    bool                          map_checking = false;
    size_t                        inflight = 0;
    std::string                   where;          /* discovery target */
    ngx_pubsub_redis_conn_t       disc;
    std::vector<std::unique_ptr<ngx_pubsub_redis_node_t>>  nodes;
    size_t                        nnodes = 0;     /* of the current map */
    std::vector<ngx_pubsub_redis_node_t *>                 slots;
    ngx_event_t                   reconnect_ev;
    ngx_event_t                   watchdog_ev;
    ngx_event_t                   tick_ev;
};


struct ngx_pubsub_redis_pending_t {
    ngx_pubsub_redis_link_t          *link;
    pubsub::RedisLink::ReplyFn        fn;
    bool                              counted;
    ngx_pubsub_redis_node_t          *node;
    ngx_uint_t                        gen;
    ngx_uint_t                        ngen;   /* node->gen when sent */
    int                               redirects;
    std::vector<std::string>          args;   /* cluster: kept for MOVED/ASK */
};


/* ngx_pubsub_redis_conn.cpp */
void ngx_pubsub_redis_on_pubsub(redisAsyncContext *ac, void *r,
    void *privdata);

/* ngx_pubsub_redis_cluster.cpp */
void ngx_pubsub_redis_on_discover(redisAsyncContext *ac, void *r,
    void *privdata);
void ngx_pubsub_redis_reconnect_handler(ngx_event_t *ev);
void ngx_pubsub_redis_watchdog_handler(ngx_event_t *ev);
void ngx_pubsub_redis_tick_handler(ngx_event_t *ev);

#endif /* _NGX_PUBSUB_REDIS_LINK_H_INCLUDED_ */
