/*
 * ngx_pubsub: the Redis engine on nginx's event loop.
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

#include "ngx_pubsub_redis.h"
#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_subscriber.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <new>
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

/* presence deltas of an event loop turn go out together, at its end */
static ngx_event_t  ngx_pubsub_redis_presence_flush_ev;

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


/* hiredis event hooks */

/* hiredis asks for (on) or drops interest in reads or writes */
static void
ngx_pubsub_redis_interest(void *privdata, ngx_uint_t write, ngx_uint_t on)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         privdata);
    ngx_event_t              *ev;
    ngx_int_t                 event;

    if (conn->c == NULL) {
        return;
    }

    ev = write ? conn->c->write : conn->c->read;
    event = write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        (void) ngx_add_event(ev, event, 0);

    } else if (!on && ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


static void
ngx_pubsub_redis_add_read(void *privdata)
{
    ngx_pubsub_redis_interest(privdata, 0, 1);
}


static void
ngx_pubsub_redis_del_read(void *privdata)
{
    ngx_pubsub_redis_interest(privdata, 0, 0);
}


static void
ngx_pubsub_redis_add_write(void *privdata)
{
    ngx_pubsub_redis_interest(privdata, 1, 1);
}


static void
ngx_pubsub_redis_del_write(void *privdata)
{
    ngx_pubsub_redis_interest(privdata, 1, 0);
}


/* hiredis frees the context (and closes the fd right after this) */
static void
ngx_pubsub_redis_cleanup(void *privdata)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         privdata);
    ngx_connection_t         *c = conn->c;

    if (c == NULL) {
        return;
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }
    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->fd = (ngx_socket_t) -1;   /* hiredis closes it; stale events skip */
    ngx_free_connection(c);

    conn->c = NULL;
    conn->ac = NULL;
}


static void
ngx_pubsub_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t         *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         c->data);

    /* the context may be freed inside: touch neither c nor ac after */
    if (conn->ac) {
        redisAsyncHandleRead(conn->ac);
    }
}


static void
ngx_pubsub_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t         *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         c->data);

    if (conn->ac) {
        redisAsyncHandleWrite(conn->ac);
    }
}



static void
ngx_pubsub_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         ac->data);

    if (conn == NULL) {
        return;     /* closed on purpose */
    }

    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns */
        conn->ac = NULL;
        conn->link->conn_failed(conn, "cannot connect", ac->errstr);
    }
}


static void
ngx_pubsub_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         ac->data);

    if (conn == NULL) {
        return;     /* closed on purpose */
    }

    conn->ac = NULL;

    if (!conn->link->closing
        && conn->link->state != ngx_pubsub_redis_link_t::kDown)
    {
        conn->link->conn_failed(conn, "connection lost",
                                status == REDIS_OK ? "closed" : ac->errstr);
    }
}


static bool
ngx_pubsub_redis_transient(const redisReply *r, const char *prefix)
{
    size_t  n = ngx_strlen(prefix);

    return r->len >= n && ngx_strncmp(r->str, prefix, n) == 0;
}


/* command replies (a command connection's FIFO) */
static void
ngx_pubsub_redis_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    ngx_pubsub_redis_pending_t  *p = static_cast<ngx_pubsub_redis_pending_t *>(
                                         privdata);
    ngx_pubsub_redis_link_t     *link = p->link;
    redisReply                  *r = static_cast<redisReply *>(reply);

    if (p->counted) {
        p->counted = false;
        link->inflight--;
        if (p->gen == link->gen && p->ngen == p->node->gen
            && !p->node->sent.empty())
        {
            ngx_pubsub_stats_redis_rtt(ngx_current_msec
                                       - p->node->sent.front());
            p->node->sent.pop_front();
        }
    }

    if (r != NULL && !link->closing && link->cluster && p->fn
        && p->gen == link->gen && link->state == ngx_pubsub_redis_link_t::kReady
        && p->redirects < NGX_PUBSUB_REDIS_MAX_REDIRECTS)
    {
        pubsub::redis::Redirect  rd = pubsub::redis::parseRedirect(r);

        if (rd.kind != pubsub::redis::Redirect::kNone) {
            ngx_pubsub_redis_node_t  *n = link->node_at(rd.host, rd.port);

            if (n == NULL) {
                /* a master this worker does not know: read the map again */
                std::string  err(r->str, r->len);

                try {
                    p->fn(nullptr);

                } catch (...) {
                }

                delete p;

                if (link->partial()) {
                    link->check_map();   /* a replica took over? */

                } else {
                    link->fail("slot map changed", err.c_str());
                }
                return;
            }

            p->redirects++;

            if (rd.kind == pubsub::redis::Redirect::kMoved) {
                link->slots[rd.slot] = n;

            } else if (n->cmd.ac) {
                const char  *argv[1] = { "ASKING" };
                size_t       lens[1] = { 6 };

                (void) redisAsyncCommandArgv(n->cmd.ac, NULL, NULL, 1, argv,
                                             lens);
            }

            if (link->send(n, p, p->args)) {
                return;     /* answered later, on that node */
            }

            r = NULL;
        }
    }

    if (r != NULL && r->type == REDIS_REPLY_ERROR
        && (ngx_pubsub_redis_transient(r, "CLUSTERDOWN ")
            || ngx_pubsub_redis_transient(r, "TRYAGAIN ")
            || ngx_pubsub_redis_transient(r, "MASTERDOWN ")
            || ngx_pubsub_redis_transient(r, "LOADING ")))
    {
        r = NULL;   /* unavailable for now (503), like a lost connection */
    }

    if (!link->closing && p->fn) {
        try {
            p->fn(r);

        } catch (...) {
            ngx_log_error(NGX_LOG_ERR, link->log, 0,
                          "pubsub: redis reply handler failed");
        }
    }

    delete p;
}


/*
 * The subscribe connections: subscribe/unsubscribe confirmations, messages.
 * Sharded pub/sub: hiredis 0.14 knows neither SSUBSCRIBE nor "smessage"
 * pushes; it hands a push to the callback registered for its channel name
 * by a plain SUBSCRIBE, and only while the connection is in subscribe mode.
 * So each sharded channel is also SUBSCRIBEd (plainly, nothing is ever
 * PUBLISHed there) and every cluster subscribe connection also listens to
 * an anchor channel so that it never leaves subscribe mode.
 */
static void
ngx_pubsub_redis_on_pubsub(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         ac->data);
    redisReply               *reply = static_cast<redisReply *>(r);
    ngx_pubsub_redis_link_t  *link;

    if (reply == NULL || conn == NULL || conn->ac != ac) {
        return;
    }

    link = conn->link;

    if (link->closing || link->store == nullptr) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* e.g. MOVED for an SSUBSCRIBE: the slot map is stale */
        std::string  err(reply->str, reply->len);

        link->fail("subscribe refused", err.c_str());
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    std::string_view kind(reply->element[0]->str, reply->element[0]->len);
    std::string_view channel(reply->element[1]->str, reply->element[1]->len);
    bool             shard = link->shard;

    try {
        if ((kind == "message" || kind == "smessage")
            && reply->element[2]->type == REDIS_REPLY_STRING)
        {
            link->store->onMessage(channel,
                std::string_view(reply->element[2]->str,
                                 reply->element[2]->len));

        } else if (kind == (shard ? "ssubscribe" : "subscribe")) {
            link->store->onSubscribed(channel);

        } else if (kind == (shard ? "sunsubscribe" : "unsubscribe")) {
            link->store->onUnsubscribed(channel);
        }

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "pubsub: redis message handler failed");
    }
}


/* AUTH / SELECT / COMMAND INFO / PING replies while connecting */
static void
ngx_pubsub_redis_on_hello(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pubsub_redis_conn_t  *conn = static_cast<ngx_pubsub_redis_conn_t *>(
                                         privdata);
    redisReply               *reply = static_cast<redisReply *>(r);
    ngx_pubsub_redis_link_t  *link = conn->link;

    if (reply == NULL || link->closing || conn->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        std::string err(reply->str, reply->len);
        link->conn_failed(conn, "refused the connection", err.c_str());
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && conn->node && !conn->sub) {
        /* COMMAND INFO SPUBLISH: [nil] when the node does not have it */
        conn->node->sharded = reply->elements > 0
                              && reply->element[0]->type == REDIS_REPLY_ARRAY;
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS
        && std::string_view(reply->str, reply->len) == "PONG")
    {
        link->hello_done(conn);
    }
}


/* CLUSTER SLOTS on the discovery connection */
static void
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


ngx_pubsub_redis_link_s::ngx_pubsub_redis_link_s(
    ngx_pubsub_redis_upstream_t *u, ngx_log_t *l)
    : up(u), log(l)
{
    server = static_cast<ngx_pubsub_redis_server_t *>(up->servers.elts);

    disc = ngx_pubsub_redis_conn_t{this, NULL, NULL, NULL, false, false};
    slots.assign(pubsub::redis::kClusterSlots, nullptr);

    ngx_memzero(&reconnect_ev, sizeof(ngx_event_t));
    ngx_memzero(&watchdog_ev, sizeof(ngx_event_t));
    ngx_memzero(&tick_ev, sizeof(ngx_event_t));
}


ngx_pubsub_redis_link_s::~ngx_pubsub_redis_link_s()
{
    closing = true;
    set_state(kDown);
    ngx_pubsub_stats_redis(-1, 0);

    for (ngx_event_t *ev : {&reconnect_ev, &watchdog_ev, &tick_ev}) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }

    close_all();
}


void
ngx_pubsub_redis_link_s::close_conn(ngx_pubsub_redis_conn_t *conn)
{
    redisAsyncContext  *ac = conn->ac;

    conn->ok = false;

    if (ac) {
        conn->ac = NULL;
        ac->data = NULL;    /* its disconnect callback does nothing */
        /* deferred by hiredis when inside one of its callbacks */
        redisAsyncFree(ac);
    }
}


void
ngx_pubsub_redis_link_s::close_all()
{
    close_conn(&disc);

    for (auto &n : nodes) {
        close_conn(&n->cmd);
        close_conn(&n->subc);
        n->sent.clear();
    }
}


bool
ngx_pubsub_redis_link_s::open(ngx_pubsub_redis_conn_t *conn,
    const std::string &host, int port)
{
    redisAsyncContext  *ac;
    ngx_connection_t   *c;

    ac = redisAsyncConnect(host.c_str(), port);
    if (ac == NULL) {
        conn_failed(conn, "cannot connect", "out of memory");
        return false;
    }

    if (ac->err) {
        std::string err(ac->errstr);
        redisAsyncFree(ac);
        conn_failed(conn, "cannot connect", err.c_str());
        return false;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        redisAsyncFree(ac);
        conn_failed(conn, "cannot connect", "no free worker connection");
        return false;
    }

    c->data = conn;
    c->log = log;
    c->read->handler = ngx_pubsub_redis_read_handler;
    c->write->handler = ngx_pubsub_redis_write_handler;
    c->read->log = log;
    c->write->log = log;

    conn->ac = ac;
    conn->c = c;
    conn->ok = false;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_pubsub_redis_add_read;
    ac->ev.delRead = ngx_pubsub_redis_del_read;
    ac->ev.addWrite = ngx_pubsub_redis_add_write;
    ac->ev.delWrite = ngx_pubsub_redis_del_write;
    ac->ev.cleanup = ngx_pubsub_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_pubsub_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_pubsub_redis_on_disconnect);

    hello(conn);

    return true;
}


void
ngx_pubsub_redis_link_s::hello(ngx_pubsub_redis_conn_t *conn)
{
    char         db[NGX_INT_T_LEN];
    const char  *argv[3];
    size_t       lens[3];

    if (server->password.len) {
        argv[0] = "AUTH";
        lens[0] = 4;
        argv[1] = reinterpret_cast<char *>(server->password.data);
        lens[1] = server->password.len;
        redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_hello, conn,
                              2, argv, lens);
    }

    if (conn->node == NULL) {
        argv[0] = "CLUSTER";
        lens[0] = 7;
        argv[1] = "SLOTS";
        lens[1] = 5;
        redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_discover, conn,
                              2, argv, lens);
        return;
    }

    if (server->db > 0 && !cluster) {
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = ngx_sprintf(reinterpret_cast<u_char *>(db), "%i",
                              server->db) - reinterpret_cast<u_char *>(db);
        redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_hello, conn,
                              2, argv, lens);
    }

    if (cluster && !conn->sub) {
        argv[0] = "COMMAND";
        lens[0] = 7;
        argv[1] = "INFO";
        lens[1] = 4;
        argv[2] = "SPUBLISH";
        lens[2] = 8;
        redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_hello, conn,
                              3, argv, lens);
    }

    argv[0] = "PING";
    lens[0] = 4;
    redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_hello, conn,
                          1, argv, lens);

    if (cluster && conn->sub) {
        argv[0] = "SUBSCRIBE";
        lens[0] = 9;
        argv[1] = NGX_PUBSUB_REDIS_ANCHOR;
        lens[1] = sizeof(NGX_PUBSUB_REDIS_ANCHOR) - 1;
        redisAsyncCommandArgv(conn->ac, ngx_pubsub_redis_on_pubsub, NULL,
                              2, argv, lens);
    }
}


void
ngx_pubsub_redis_link_s::hello_done(ngx_pubsub_redis_conn_t *conn)
{
    ngx_pubsub_redis_node_t  *n = conn->node;

    conn->ok = true;

    if (state == kReady && n != NULL && n->connecting) {
        /* a master that was down, or a replica that took over */
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

    for (const auto &range : ranges) {
        ngx_pubsub_redis_node_t  *n = node_at(range.host, range.port);

        if (n == NULL) {
            n = new_node(range.host, range.port);
        }

        for (int s = range.first; s <= range.last; s++) {
            slots[s] = n;
        }
    }

    /* the masters of the map first: connect() takes them as seeds */
    std::stable_partition(nodes.begin(), nodes.end(),
        [](const std::unique_ptr<ngx_pubsub_redis_node_t> &n) {
            return n->in_map;
        });
    nnodes = 0;
    while (nnodes < nodes.size() && nodes[nnodes]->in_map) {
        nnodes++;
    }

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
    bool  changed = false, dropped = false;

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

    /* masters no longer listed */
    for (size_t i = 0; i < nnodes; i++) {
        ngx_pubsub_redis_node_t  *n = nodes[i].get();

        if (n->mark) {
            continue;
        }

        if (n->up || n->connecting) {
            if (n->up && nodes_up() == 1) {
                fail("slot map changed", "no master of the map is up");
                return;
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
            return;
        }
    }

    for (size_t i = 0; i < nnodes; i++) {
        if (!nodes[i]->mark) {
            nodes[i]->in_map = false;
        }
    }

    for (const auto &range : ranges) {
        ngx_pubsub_redis_node_t  *n = node_at(range.host, range.port);

        if (n == NULL) {
            n = new_node(range.host, range.port);
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "pubsub: redis upstream \"%V\": slot map changed: "
                          "master %s joins", &up->name, n->addr.c_str());
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

    if (repair_at == 0 && nodes_up() < nnodes) {
        repair_attempts = 0;
        repair_at = ngx_current_msec + NGX_PUBSUB_REDIS_CONNECT_TIMEOUT;
    }

    /* slots that moved to a master already up */
    nodes_changed();
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


bool
ngx_pubsub_redis_link_s::send(ngx_pubsub_redis_node_t *n,
    ngx_pubsub_redis_pending_t *p, const std::vector<std::string> &args)
{
    std::vector<const char *>  argv;
    std::vector<size_t>        lens;

    if (n->cmd.ac == NULL) {
        return false;
    }

    try {
        argv.reserve(args.size());
        lens.reserve(args.size());

        for (const std::string &a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }

        n->sent.push_back(static_cast<ngx_msec_t>(ngx_current_msec));

    } catch (...) {
        return false;
    }

    inflight++;
    p->counted = true;
    p->node = n;
    p->gen = gen;
    p->ngen = n->gen;

    if (redisAsyncCommandArgv(n->cmd.ac, ngx_pubsub_redis_on_reply, p,
                              static_cast<int>(argv.size()), argv.data(),
                              lens.data())
        != REDIS_OK)
    {
        n->sent.pop_back();
        inflight--;
        p->counted = false;
        return false;
    }

    return true;
}


bool
ngx_pubsub_redis_link_s::command(const std::vector<std::string> &args,
    ReplyFn cb)
{
    ngx_pubsub_redis_node_t     *n;
    ngx_pubsub_redis_pending_t  *p;
    int                          slot;

    if (state != kReady || nnodes == 0
        || inflight >= NGX_PUBSUB_REDIS_MAX_INFLIGHT)
    {
        return false;
    }

    n = nodes[0].get();

    if (cluster) {
        slot = pubsub::redis::commandSlot(args);
        n = (slot >= 0 && slots[slot] != NULL) ? slots[slot] : first_up();
    }

    if (n == NULL || !n->up) {
        return false;   /* its master is down: fail fast (503) */
    }

    p = new (std::nothrow) ngx_pubsub_redis_pending_t{this, std::move(cb),
                                                      false, n, gen, 0, 0,
                                                      {}};
    if (p == NULL) {
        return false;
    }

    if (cluster) {
        try {
            p->args = args;

        } catch (...) {
            p->fn = nullptr;
            delete p;
            return false;
        }
    }

    if (!send(n, p, args)) {
        p->fn = nullptr;
        delete p;
        return false;
    }

    return true;
}


/* the subscribe connection of a pubsub channel */
ngx_pubsub_redis_node_t *
ngx_pubsub_redis_link_s::sub_node(const std::string &channel)
{
    ngx_pubsub_redis_node_t  *n;

    if (state != kReady || nnodes == 0) {
        return NULL;
    }

    /* sharded: the channel's master; plain: any node gets every PUBLISH */
    n = shard ? slots[pubsub::redis::keySlot(channel)] : nodes[0].get();

    return (n && n->up && n->subc.ac) ? n : NULL;
}


/*
 * SSUBSCRIBE / SUNSUBSCRIBE without a callback: hiredis 0.14 would keep a
 * callback record for each (on its list for commands sent in subscribe
 * mode) that no reply ever takes, for the connection's whole life.  Their
 * confirmations reach ngx_pubsub_redis_on_pubsub() through the channel's
 * plain subscription; a refusal (MOVED after a resharding) is dropped by
 * hiredis, and the periodic slot map check reconnects instead.
 */
static bool
ngx_pubsub_redis_send_bare(ngx_pubsub_redis_conn_t *conn, int argc,
    const char **argv, const size_t *lens)
{
    char  *cmd;
    int    len, rc;

    if (conn->ac == NULL) {
        return false;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        return false;
    }

    rc = redisAppendFormattedCommand(&conn->ac->c, cmd, len);
    redisFreeCommand(cmd);

    if (rc != REDIS_OK) {
        return false;
    }

    ngx_pubsub_redis_add_write(conn);

    return true;
}


bool
ngx_pubsub_redis_link_s::subscribe(const std::string &channel)
{
    const char               *argv[2] = { "SUBSCRIBE", channel.data() };
    size_t                    lens[2] = { 9, channel.size() };
    ngx_pubsub_redis_node_t  *n = sub_node(channel);

    if (n == NULL) {
        return false;
    }

    /* plain SUBSCRIBE first: see ngx_pubsub_redis_on_pubsub() */
    if (redisAsyncCommandArgv(n->subc.ac, ngx_pubsub_redis_on_pubsub, NULL,
                              2, argv, lens) != REDIS_OK)
    {
        return false;
    }

    if (!shard) {
        return true;
    }

    argv[0] = "SSUBSCRIBE";
    lens[0] = 10;

    return ngx_pubsub_redis_send_bare(&n->subc, 2, argv, lens);
}


bool
ngx_pubsub_redis_link_s::unsubscribe(const std::string &channel)
{
    const char               *argv[2] = { "SUNSUBSCRIBE", channel.data() };
    size_t                    lens[2] = { 12, channel.size() };
    ngx_pubsub_redis_node_t  *n = sub_node(channel);

    if (n == NULL) {
        return false;
    }

    if (shard && !ngx_pubsub_redis_send_bare(&n->subc, 2, argv, lens)) {
        return false;
    }

    argv[0] = "UNSUBSCRIBE";
    lens[0] = 11;

    return redisAsyncCommandArgv(n->subc.ac, ngx_pubsub_redis_on_pubsub, NULL,
                                 2, argv, lens) == REDIS_OK;
}


static void
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


static void
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


static void
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


/* configuration */

static ngx_pubsub_redis_upstream_t *
ngx_pubsub_redis_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_pubsub_main_conf_t        *pmcf;
    ngx_pubsub_redis_upstream_t  **ups, *up;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_pubsub_module));

    if (pmcf->redis_upstreams == NULL) {
        pmcf->redis_upstreams = ngx_array_create(cf->pool, 2, sizeof(void *));
        if (pmcf->redis_upstreams == NULL) {
            return NULL;
        }
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        if (ups[i]->uscf == uscf) {
            return ups[i];
        }
    }

    up = static_cast<ngx_pubsub_redis_upstream_t *>(
             ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_redis_upstream_t)));
    if (up == NULL) {
        return NULL;
    }

    if (ngx_array_init(&up->servers, cf->pool, 1,
                       sizeof(ngx_pubsub_redis_server_t))
        != NGX_OK)
    {
        return NULL;
    }

    up->uscf = uscf;
    up->name = uscf->host;
    up->index = pmcf->redis_upstreams->nelts;

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              ngx_array_push(pmcf->redis_upstreams));
    if (ups == NULL) {
        return NULL;
    }

    *ups = up;

    return up;
}


static ngx_int_t
ngx_pubsub_redis_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    /* the upstream holds Redis servers, not HTTP peers: nothing to set up */
    return NGX_OK;
}


/* redis://[:password@]host:port[/db] */
static const char *
ngx_pubsub_redis_parse_url(ngx_conf_t *cf, ngx_str_t url,
    ngx_pubsub_redis_server_t *s)
{
    u_char     *p, *last, *at, *colon, *slash;
    ngx_int_t   port;

    ngx_memzero(s, sizeof(ngx_pubsub_redis_server_t));
    s->url = url;

    p = url.data;
    last = url.data + url.len;

    if (url.len < 8 || ngx_strncmp(p, "redis://", 8) != 0) {
        return "must start with \"redis://\"";
    }

    p += 8;

    at = NULL;
    for (u_char *q = p; q < last; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at) {
        if (*p != ':') {
            return "has a user name; only \":password@\" is supported";
        }
        s->password.len = at - p - 1;
        s->password.data = static_cast<u_char *>(
                               ngx_pnalloc(cf->pool, s->password.len + 1));
        if (s->password.data == NULL) {
            return "cannot be stored (out of memory)";
        }
        ngx_memcpy(s->password.data, p + 1, s->password.len);
        s->password.data[s->password.len] = '\0';
        p = at + 1;
    }

    slash = static_cast<u_char *>(ngx_strlchr(p, last, '/'));
    if (slash == NULL) {
        slash = last;
    }

    colon = NULL;
    for (u_char *q = p; q < slash; q++) {
        if (*q == ':') {
            colon = q;
        }
    }

    if (colon == NULL) {
        colon = slash;
        port = 6379;

    } else {
        port = ngx_atoi(colon + 1, slash - colon - 1);
        if (port < 1 || port > 65535) {
            return "has an invalid port";
        }
    }

    if (colon == p) {
        return "has no host";
    }

    s->port = static_cast<in_port_t>(port);
    s->host.len = colon - p;
    s->host.data = static_cast<u_char *>(ngx_pnalloc(cf->pool,
                                                     s->host.len + 1));
    if (s->host.data == NULL) {
        return "cannot be stored (out of memory)";
    }
    ngx_memcpy(s->host.data, p, s->host.len);
    s->host.data[s->host.len] = '\0';

    s->db = 0;
    if (slash < last && slash + 1 < last) {
        s->db = ngx_atoi(slash + 1, last - slash - 1);
        if (s->db < 0) {
            return "has an invalid database number";
        }
    }

    return NULL;
}


char *
ngx_pubsub_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                     *value = static_cast<ngx_str_t *>(
                                               cf->args->elts);
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_pubsub_redis_upstream_t   *up;
    ngx_pubsub_redis_server_t     *s;
    const char                    *err;

    uscf = static_cast<ngx_http_upstream_srv_conf_t *>(
               ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module));

    up = ngx_pubsub_redis_upstream(cf, uscf);
    if (up == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    s = static_cast<ngx_pubsub_redis_server_t *>(ngx_array_push(&up->servers));
    if (s == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    err = ngx_pubsub_redis_parse_url(cf, value[1], s);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_redis_server \"%V\" %s", &value[1], err);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    uscf->peer.init_upstream = ngx_pubsub_redis_init_upstream;

    /*
     * nginx refuses an upstream block without servers: list the Redis
     * server there too (never used as an HTTP peer, see init_upstream)
     */
    if (uscf->servers) {
        ngx_http_upstream_server_t  *us;

        us = static_cast<ngx_http_upstream_server_t *>(
                 ngx_array_push(uscf->servers));
        if (us == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->name = value[1];
        us->weight = 1;
    }

    return NGX_CONF_OK;
}


char *
ngx_pubsub_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t         *plcf = static_cast<ngx_pubsub_loc_conf_t *>(
                                              conf);
    ngx_str_t                     *value = static_cast<ngx_str_t *>(
                                               cf->args->elts);
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_url_t                      u;

    if (plcf->redis != NGX_CONF_UNSET_PTR) {
        return const_cast<char *>("is duplicate");
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        plcf->redis = NULL;
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    uscf = ngx_http_upstream_add(cf, &u, 0);
    if (uscf == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    plcf->redis = ngx_pubsub_redis_upstream(cf, uscf);
    if (plcf->redis == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


char *
ngx_pubsub_redis_check_conf(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf)
{
    ngx_pubsub_redis_upstream_t  **ups;

    if (pmcf->redis_upstreams == NULL) {
        return NGX_CONF_OK;
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        if (ups[i]->servers.nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                "pubsub_redis_pass \"%V\": no upstream with that name has "
                "a pubsub_redis_server", &ups[i]->name);
            return static_cast<char *>(NGX_CONF_ERROR);
        }

    }

    return NGX_CONF_OK;
}


/* per worker */

ngx_int_t
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


void
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

    if (ngx_pubsub_redis_presence_flush_ev.posted) {
        ngx_delete_posted_event(&ngx_pubsub_redis_presence_flush_ev);
    }

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        /* the link first: its pending callbacks are dropped, not run */
        delete ups[i]->link;
        ups[i]->link = NULL;
        delete ups[i]->store;
        ups[i]->store = NULL;
    }
}


pubsub::Store *
ngx_pubsub_store_for(ngx_pubsub_loc_conf_t *plcf)
{
    auto *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->redis);

    if (up != NULL) {
        return up->store;
    }

    return ngx_pubsub_store();
}


/* presence in Redis mode (ngx_pubsub_presence.cpp decides, this sends) */

/* this worker's Redis upstreams (their number in *n) */
static ngx_pubsub_redis_upstream_t **
ngx_pubsub_redis_all(ngx_uint_t *n)
{
    ngx_pubsub_main_conf_t  *pmcf;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_pubsub_module));
    if (pmcf == NULL || pmcf->redis_upstreams == NULL) {
        *n = 0;
        return NULL;
    }

    *n = pmcf->redis_upstreams->nelts;

    return static_cast<ngx_pubsub_redis_upstream_t **>(
               pmcf->redis_upstreams->elts);
}


static ngx_pubsub_redis_upstream_t *
ngx_pubsub_redis_upstream_at(ngx_uint_t index)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    return index < n ? ups[index] : NULL;
}


ngx_uint_t
ngx_pubsub_redis_index(ngx_pubsub_loc_conf_t *plcf)
{
    auto  *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->redis);

    return up ? up->index + 1 : 0;
}


pubsub::RedisStore *
ngx_pubsub_redis_store(ngx_pubsub_loc_conf_t *plcf)
{
    auto  *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->redis);

    return up ? up->store : NULL;
}


/* an instance's part of a channel is valid for half the ttl: refreshed
 * every quarter, a dead instance's members leave within the ttl */
static uint64_t
ngx_pubsub_redis_valid_ms(uint32_t ttl)
{
    return ttl >= 2000 ? ttl / 2 : 1000;
}


static void
ngx_pubsub_redis_presence_flush(ngx_event_t *ev)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->store == NULL) {
            continue;
        }

        try {
            (void) ups[i]->store->presenceFlush();

        } catch (...) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "pubsub: redis presence update failed");
        }
    }
}


void
ngx_pubsub_redis_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance)
{
    ngx_pubsub_redis_upstream_t  *up;
    ngx_uint_t                    queued = 0;

    for (const pubsub::PresenceDelta &d : deltas) {
        up = ngx_pubsub_redis_upstream_at(d.redis - 1);
        if (up == NULL || up->store == NULL) {
            continue;
        }
        up->store->presenceDelta(instance, d,
            ngx_pubsub_redis_valid_ms(static_cast<uint32_t>(up->presence_ttl)));
        queued = 1;
    }

    if (queued && !ngx_pubsub_redis_presence_flush_ev.posted) {
        ngx_pubsub_redis_presence_flush_ev.handler =
            ngx_pubsub_redis_presence_flush;
        ngx_pubsub_redis_presence_flush_ev.log = ngx_cycle->log;
        ngx_post_event(&ngx_pubsub_redis_presence_flush_ev, &ngx_posted_events);
    }
}


/* how often this instance refreshes its presence parts (0: no presence
 * in any Redis location, or none of them connected in this worker) */
ngx_msec_t
ngx_pubsub_redis_presence_interval(void)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;
    ngx_msec_t                     ttl = 0;
    ngx_uint_t                     ready = 0;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->presence && (ttl == 0 || ups[i]->presence_ttl < ttl)) {
            ttl = ups[i]->presence_ttl;
        }
        if (ups[i]->presence && ups[i]->link && ups[i]->link->ready()) {
            ready = 1;
        }
    }

    /* a worker without Redis leaves the refresh to one that has it */
    return ttl && ready ? ngx_max(ttl / 4, 250) : 0;
}


void
ngx_pubsub_redis_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->store == NULL || !ups[i]->presence) {
            continue;
        }

        std::vector<pubsub::PresenceChannelSnapshot>  mine;

        for (const pubsub::PresenceChannelSnapshot &s : snaps) {
            if (s.redis == i + 1) {
                mine.push_back(s);
            }
        }

        ngx_msec_t ttl = ups[i]->presence_ttl;
        uint64_t valid = ngx_pubsub_redis_valid_ms(static_cast<uint32_t>(ttl));

        ups[i]->store->presenceRefresh(instance, mine, valid, ttl / 4);
    }
}


/* subscriber requests: snapshot first, then the handler */

typedef struct {
    ngx_http_request_t   *r;
    ngx_int_t           (*handler)(ngx_http_request_t *r);
    ngx_pubsub_redis_upstream_t  *up;
    bool                  alive;
} ngx_pubsub_redis_prep_t;


ngx_int_t
ngx_pubsub_redis_prepare(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_int_t (*handler)(ngx_http_request_t *r))
{
    auto                   *up = static_cast<ngx_pubsub_redis_upstream_t *>(
                                     plcf->redis);
    ngx_pubsub_channels_t  *ch;
    const char             *err;
    ngx_uint_t              sub;

    if (up == NULL || up->store == NULL) {
        return NGX_DECLINED;
    }

    /* only subscriber requests subscribe */
    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_DECLINED;
    }

    if (ngx_pubsub_is_websocket(r)) {
        sub = plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET;

    } else {
        sub = plcf->sub_roles
              ? ngx_pubsub_pick_transport(r, plcf->sub_roles) : 0;
    }

    if (!sub) {
        return NGX_DECLINED;
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_ERROR;
    }

    if (ngx_pubsub_channels_eval(r, plcf, 0, ch, &err) != NGX_OK) {
        return NGX_DECLINED;   /* the handler answers the error */
    }

    std::vector<std::string> keys;
    keys.reserve(ch->n);
    for (ngx_uint_t i = 0; i < ch->n; i++) {
        keys.emplace_back(ngx_pubsub_sv(ch->key[i]));
    }

    pubsub::RedisStore *store = up->store;

    /* where a one-channel subscriber starts: owed nothing, no snapshot read */
    pubsub::StartSpec   spec;
    ngx_uint_t          hint;

    hint = ch->n == 1 && ngx_pubsub_resume_hint(r, plcf, &spec);

    /*
     * `sync` tells whether prepare() answered before returning (Redis is
     * down or the queue is full): then the handler runs here, as usual.
     */
    auto sync = std::make_shared<int>(1);
    auto early = std::make_shared<pubsub::RedisStore::PreparedPtr>();

    /* with the location's group limits (nothing more without them) */
    store->prepare(keys, [r, handler, store, sync, early](
                             pubsub::RedisStore::PreparedPtr prepared) {
        ngx_int_t          rc;
        ngx_connection_t  *c;

        if (*sync) {
            *early = std::move(prepared);
            return;
        }

        store->usePrepared(prepared.get());

        rc = ngx_pubsub_guard(r->connection->log, [r, handler] {
            return handler(r);
        });

        store->usePrepared(nullptr);

        c = r->connection;
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }, ngx_pubsub_group_limits(plcf), plcf->existing_only != 0,
       hint ? &spec : nullptr);

    if (*early) {
        *sync = 0;
        store->usePrepared(early->get());
        ngx_int_t rc = handler(r);
        store->usePrepared(nullptr);
        return rc;
    }

    *sync = 0;
    r->main->count++;

    return NGX_DONE;
}
