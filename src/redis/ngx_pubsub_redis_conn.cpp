/*
 * ngx_pubsub: the Redis link's connections on nginx's event loop - a
 * hiredis async adapter (hiredis's fds wrapped in ngx_connection_t, their
 * read/write interest through nginx's event module), the hello of each
 * connection (AUTH, SELECT, COMMAND INFO, PING), commands with their
 * replies (MOVED / ASK followed), and the subscribe connections.  The
 * slot map, failures and timers are in ngx_pubsub_redis_cluster.cpp; see
 * ngx_pubsub_redis_link.h for the whole picture.
 */

#include "ngx_pubsub_redis_link.h"

#include <new>
#include <string>
#include <vector>


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


/*
 * A cluster's redirect (MOVED, ASK) of a command: it is sent again to the
 * named master.  NGX_OK: taken care of (resent, or answered and freed);
 * NGX_DECLINED: not a redirect; NGX_ERROR: the resend failed (answer it
 * with no reply).
 */
static ngx_int_t
ngx_pubsub_redis_redirect(ngx_pubsub_redis_pending_t *p, const redisReply *r)
{
    ngx_pubsub_redis_link_t  *link = p->link;
    ngx_pubsub_redis_node_t  *n;
    pubsub::redis::Redirect   rd = pubsub::redis::parseRedirect(r);

    if (rd.kind == pubsub::redis::Redirect::kNone) {
        return NGX_DECLINED;
    }

    n = link->node_at(rd.host, rd.port);

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
        return NGX_OK;
    }

    p->redirects++;

    if (rd.kind == pubsub::redis::Redirect::kMoved) {
        link->slots[rd.slot] = n;

    } else if (n->cmd.ac) {
        const char  *argv[1] = { "ASKING" };
        size_t       lens[1] = { 6 };

        (void) redisAsyncCommandArgv(n->cmd.ac, NULL, NULL, 1, argv, lens);
    }

    if (link->send(n, p, p->args)) {
        return NGX_OK;      /* answered later, on that node */
    }

    return NGX_ERROR;
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
        switch (ngx_pubsub_redis_redirect(p, r)) {
        case NGX_OK:
            return;
        case NGX_ERROR:
            r = NULL;
            break;
        default:
            break;
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
void
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
