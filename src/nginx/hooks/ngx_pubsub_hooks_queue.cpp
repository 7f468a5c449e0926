/*
 * ngx_pubsub hooks: at-least-once delivery (docs/hooks.md, "Delivery: at
 * least once").  The unsubscribe and presence hooks and the Pusher
 * webhooks go through a queue in a shared-memory zone of their own
 * ("ngx_pubsub_hooks", pubsub_hook_queue_size): pubsub::HookQueue
 * (include/pubsub/hook_queue.h) holds each hook request, serialised so that
 * any worker of any later configuration can send it again (the server is
 * known by its position in the configuration, not by a pointer).
 *
 * A worker that queues a hook sends it at once (a posted event claims it);
 * every worker looks at the queue every NGX_PUBSUB_HOOKQ_TICK ms and sends
 * what is due.  A claim is one attempt by one worker: a 2xx answer removes
 * the entry, anything else (another status, no answer) makes it wait its
 * backoff.  A worker that exits gives its claims back; the claims of a
 * worker that died are taken back by the others (kill(pid, 0)).  A zone
 * that nginx keeps across a reload (same name and size) keeps its queue.
 */

#include "ngx_pubsub_hooks_internal.h"
#include "ngx_pubsub_hooks_queue.h"

#include <errno.h>
#include <signal.h>

#include <new>
#include <string>
#include <vector>

#include "pubsub/hook_queue.h"


#define NGX_PUBSUB_HOOKQ_TICK      500     /* ms: due entries */
#define NGX_PUBSUB_HOOKQ_REAP      4       /* ticks: dead owners */
#define NGX_PUBSUB_HOOKQ_INFLIGHT  256     /* attempts per worker */
#define NGX_PUBSUB_HOOKQ_VERSION   1


typedef struct {
    pubsub::HookQueueEntry       *entry;
    uint64_t                      seq;
    uint32_t                      attempts;
    int64_t                       owner;
} ngx_pubsub_hookq_claim_t;


static ngx_str_t         ngx_pubsub_hookq_zone_name =
    ngx_string("ngx_pubsub_hooks");

static ngx_slab_pool_t  *ngx_pubsub_hookq_shpool;
static ngx_uint_t        ngx_pubsub_hookq_ready;      /* the zone is ours */
static ngx_uint_t        ngx_pubsub_hookq_live;       /* ... and we send */
static ngx_uint_t        ngx_pubsub_hookq_inflight;
static ngx_uint_t        ngx_pubsub_hookq_ticks;
static ngx_uint_t        ngx_pubsub_hookq_unqueued;   /* since last logged */
static ngx_event_t       ngx_pubsub_hookq_tick_ev;
static ngx_event_t       ngx_pubsub_hookq_post_ev;


static void ngx_pubsub_hookq_dispatch(ngx_log_t *log);


static int64_t
ngx_pubsub_hookq_now(void)
{
    ngx_time_t  *tp = ngx_timeofday();

    return static_cast<int64_t>(tp->sec) * 1000 + tp->msec;
}


static pubsub::HookQueue
ngx_pubsub_hookq(void)
{
    return pubsub::HookQueue(
        static_cast<pubsub::HookQueueRoot *>(ngx_pubsub_hookq_shpool->data),
        ngx_pubsub_slab_allocator(ngx_pubsub_hookq_shpool));
}


/* configuration */

static ngx_int_t
ngx_pubsub_hookq_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t        *shpool;
    pubsub::HookQueueRoot  *root;

    shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);

    /* `data`: the previous cycle's zone->data, when nginx kept the zone */
    if (data || shm_zone->shm.exists) {
        /* a reload that kept the zone: its queue goes on */
        root = static_cast<pubsub::HookQueueRoot *>(shpool->data);
        if (pubsub::HookQueue::compatible(root)) {
            shm_zone->data = root;
            return NGX_OK;
        }
    }

    shpool->log_nomem = 0;   /* a full queue is logged as such */

    ngx_shmtx_lock(&shpool->mutex);
    root = pubsub::HookQueue::createRoot(ngx_pubsub_slab_allocator(shpool),
                                         shm_zone->shm.size);
    ngx_shmtx_unlock(&shpool->mutex);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "pubsub: pubsub_hook_queue_size is too small");
        return NGX_ERROR;
    }

    shpool->data = root;
    shm_zone->data = root;

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_hookq_conf(ngx_conf_t *cf, size_t size)
{
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &ngx_pubsub_hookq_zone_name, size,
                                 &ngx_pubsub_hooks_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_pubsub_hookq_init_zone;
    zone->data = NULL;
    zone->noreuse = 0;

    return NGX_OK;
}


/* the payload: what a hook request needs, without pointers */

namespace {

class ngx_pubsub_hookq_writer_t {
public:
    void u32(uint32_t v) { out.append(reinterpret_cast<char *>(&v), 4); }

    void str(ngx_str_t s)
    {
        u32(static_cast<uint32_t>(s.len));
        out.append(reinterpret_cast<char *>(s.data), s.len);
    }

    void bytes(const void *p, size_t n)
    {
        u32(static_cast<uint32_t>(n));
        out.append(static_cast<const char *>(p), n);
    }

    std::string  out;
};


class ngx_pubsub_hookq_reader_t {
public:
    ngx_pubsub_hookq_reader_t(const std::string &s, ngx_pool_t *pool)
        : p(s.data()), end(s.data() + s.size()), pool(pool) {}

    bool u32(uint32_t *v)
    {
        if (end - p < 4) {
            return false;
        }

        ngx_memcpy(v, p, 4);
        p += 4;
        return true;
    }

    bool str(ngx_str_t *s)
    {
        uint32_t  n;

        if (!u32(&n) || static_cast<size_t>(end - p) < n) {
            return false;
        }

        s->len = n;
        s->data = static_cast<u_char *>(ngx_pnalloc(pool, n + 1));
        if (s->data == NULL) {
            return false;
        }

        ngx_memcpy(s->data, p, n);
        s->data[n] = '\0';
        p += n;
        return true;
    }

    const char  *p;
    const char  *end;
    ngx_pool_t  *pool;
};

}  /* namespace */


/*
 * The position of the server of `srv_conf` in the configuration; the first
 * server for a configuration above the servers (a directive at http level).
 */
static ngx_int_t
ngx_pubsub_hookq_server_index(void **main_conf, void **srv_conf)
{
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_core_srv_conf_t   **cscfp, *cscf;
    ngx_uint_t                   i;

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               main_conf[ngx_http_core_module.ctx_index]);
    cscf = static_cast<ngx_http_core_srv_conf_t *>(
               srv_conf[ngx_http_core_module.ctx_index]);
    cscfp = static_cast<ngx_http_core_srv_conf_t **>(cmcf->servers.elts);

    for (i = 0; i < cmcf->servers.nelts; i++) {
        if (cscfp[i] == cscf) {
            return (ngx_int_t) i;
        }
    }

    return cmcf->servers.nelts ? 0 : NGX_ERROR;
}


static std::string
ngx_pubsub_hookq_serialize(ngx_uint_t kind, uint32_t server,
    const ngx_pubsub_hook_req_t *q, ngx_str_t body, ngx_str_t ct)
{
    ngx_pubsub_hookq_writer_t  w;
    ngx_uint_t                 i;

    w.u32(NGX_PUBSUB_HOOKQ_VERSION);
    w.u32(static_cast<uint32_t>(kind));
    w.u32(server);
    w.u32(static_cast<uint32_t>(q->method));
    w.u32(static_cast<uint32_t>(q->http_version));

    for (ngx_str_t s : { q->uri, q->args, q->method_name, q->orig_uri,
                         q->orig_args, q->unparsed_uri, q->request_line,
                         q->server, q->addr_text, q->sub_type, q->pub_type,
                         q->msg_id, q->prev_id, q->presence_id, body, ct })
    {
        w.str(s);
    }

    w.bytes(q->sockaddr, q->sockaddr ? q->socklen : 0);
    w.bytes(q->local_sockaddr, q->local_sockaddr ? q->local_socklen : 0);

    w.u32(static_cast<uint32_t>(q->nheaders));
    for (i = 0; i < q->nheaders; i++) {
        w.str(q->headers[i].key);
        w.str(q->headers[i].value);
    }

    w.u32(static_cast<uint32_t>(q->nids));
    for (i = 0; i < q->nids; i++) {
        w.str(q->ids[i]);
    }

    return std::move(w.out);
}


/*
 * The payload into call and q (*kind, *server: the hook and the position
 * of its server); NGX_DECLINED for a payload that does not read (another
 * version), NGX_ERROR out of memory.
 */
static ngx_int_t
ngx_pubsub_hookq_read(const std::string &payload, ngx_pubsub_hook_call_t *call,
    ngx_pubsub_hook_req_t *q, uint32_t *kind, uint32_t *server)
{
    ngx_pubsub_hookq_reader_t  r(payload, call->pool);
    ngx_str_t                  sa, lsa;
    uint32_t                   version, method, httpv, n, i;

    if (!r.u32(&version) || version != NGX_PUBSUB_HOOKQ_VERSION
        || !r.u32(kind) || *kind >= NGX_PUBSUB_HOOK_KINDS || !r.u32(server)
        || !r.u32(&method) || !r.u32(&httpv))
    {
        return NGX_DECLINED;
    }

    for (ngx_str_t *s : { &q->uri, &q->args, &q->method_name,
                          &q->orig_uri, &q->orig_args, &q->unparsed_uri,
                          &q->request_line, &q->server, &q->addr_text,
                          &q->sub_type, &q->pub_type, &q->msg_id,
                          &q->prev_id, &q->presence_id, &call->body,
                          &call->ct })
    {
        if (!r.str(s)) {
            return NGX_DECLINED;
        }
    }

    if (!r.str(&sa) || !r.str(&lsa) || !r.u32(&n)) {
        return NGX_DECLINED;
    }

    q->method = method;
    q->http_version = httpv;
    q->sockaddr = sa.len ? reinterpret_cast<struct sockaddr *>(sa.data)
                         : NULL;
    q->socklen = sa.len;
    q->local_sockaddr = lsa.len
                        ? reinterpret_cast<struct sockaddr *>(lsa.data)
                        : NULL;
    q->local_socklen = lsa.len;

    if (n > 1024) {
        return NGX_DECLINED;
    }

    q->headers = static_cast<ngx_table_elt_t *>(
        ngx_pcalloc(call->pool, sizeof(ngx_table_elt_t) * (n + 1)));
    if (q->headers == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (!r.str(&q->headers[i].key) || !r.str(&q->headers[i].value)) {
            return NGX_DECLINED;
        }
        q->headers[i].hash = 1;
    }

    q->nheaders = n;

    if (!r.u32(&n) || n > 1024) {
        return NGX_DECLINED;
    }

    q->ids = static_cast<ngx_str_t *>(
        ngx_pcalloc(call->pool, sizeof(ngx_str_t) * (n + 1)));
    if (q->ids == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (!r.str(&q->ids[i])) {
            return NGX_DECLINED;
        }
    }

    q->nids = n;

    return NGX_OK;
}


/*
 * A call from a payload; NULL when it cannot be sent now (out of memory)
 * or ever (*gone: a payload of another version, a server no longer there;
 * logged).
 */
static ngx_pubsub_hook_call_t *
ngx_pubsub_hookq_call(const std::string &payload, ngx_log_t *log,
    ngx_uint_t *gone)
{
    ngx_pubsub_hook_call_t      *call;
    ngx_pubsub_hook_req_t       *q;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_core_srv_conf_t   **cscfp;
    ngx_http_conf_ctx_t         *ctx;
    uint32_t                     kind, server;

    kind = NGX_PUBSUB_HOOK_UNSUBSCRIBE;
    if (payload.size() >= 8) {
        ngx_memcpy(&kind, payload.data() + 4, 4);
    }

    call = ngx_pubsub_hook_call_alloc(kind < NGX_PUBSUB_HOOK_KINDS ? kind : 0,
                                      log);
    if (call == NULL) {
        return NULL;
    }

    q = static_cast<ngx_pubsub_hook_req_t *>(
            ngx_pcalloc(call->pool, sizeof(ngx_pubsub_hook_req_t)));
    if (q == NULL) {
        goto failed;
    }

    switch (ngx_pubsub_hookq_read(payload, call, q, &kind, &server)) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        goto bad;
    default:
        goto failed;
    }

    /* the server at the same position in this configuration */

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_http_core_module));
    if (cmcf == NULL || server >= cmcf->servers.nelts) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pubsub: a queued %s hook to \"%V\" was dropped: its "
                      "server is no longer in the configuration",
                      ngx_pubsub_hook_names[kind], &q->uri);
        ngx_pubsub_hook_free(call);
        *gone = 1;
        return NULL;
    }

    cscfp = static_cast<ngx_http_core_srv_conf_t **>(cmcf->servers.elts);
    ctx = cscfp[server]->ctx;

    q->conf = *ctx;
    q->addr_conf = NULL;

    call->kind = kind;
    call->req = q;
    call->post = call->ct.len || call->body.len ? 1 : 0;

    return call;

bad:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "pubsub: a queued hook of an older version was dropped");
    ngx_pubsub_hook_free(call);
    *gone = 1;
    return NULL;

failed:

    ngx_pubsub_hook_free(call);
    return NULL;
}


/* queueing */

static void
ngx_pubsub_hookq_kick(void)
{
    if (!ngx_pubsub_hookq_live || ngx_pubsub_hookq_post_ev.posted
        || ngx_pubsub_hookq_post_ev.timer_set)
    {
        return;
    }

    /* a worker shutting down would exit before posted events run */
    if (ngx_exiting) {
        ngx_add_timer(&ngx_pubsub_hookq_post_ev, 1);
    } else {
        ngx_post_event(&ngx_pubsub_hookq_post_ev, &ngx_posted_events);
    }
}


/* sends a hook once, not queued (no queue, or a full one) */
static ngx_int_t
ngx_pubsub_hookq_send_once(ngx_uint_t kind, const ngx_pubsub_hook_req_t *q,
    ngx_str_t body, ngx_str_t ct)
{
    ngx_pubsub_hook_call_t  *call;

    call = ngx_pubsub_hook_call_alloc(kind, ngx_cycle->log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->req = ngx_pubsub_hook_req_copy(call->pool, q, q->nheaders);
    call->post = ct.len ? 1 : 0;

    if (call->req == NULL
        || ngx_pubsub_hook_dup(call->pool, &call->body, body) != NGX_OK
        || ngx_pubsub_hook_dup(call->pool, &call->ct, ct) != NGX_OK
        || ngx_pubsub_hook_launch(call) != NGX_OK)
    {
        ngx_pubsub_hook_free(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_hookq_push(ngx_uint_t kind, const ngx_pubsub_hook_req_t *q,
    ngx_str_t body, ngx_str_t ct, std::string_view order)
{
    ngx_int_t  server;
    bool       queued = false;

    server = ngx_pubsub_hookq_server_index(q->conf.main_conf,
                                           q->conf.srv_conf);

    if (ngx_pubsub_hookq_ready && server != NGX_ERROR) {
        try {
            std::string payload = ngx_pubsub_hookq_serialize(
                                      kind, static_cast<uint32_t>(server), q,
                                      body, ct);
            std::string key;

            if (!order.empty()) {
                key.append(ngx_pubsub_hook_names[kind]);
                key.push_back('\n');
                key.append(ngx_pubsub_sv(q->uri));
                key.push_back('\n');
                key.append(order);
            }

            ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
            queued = ngx_pubsub_hookq().push(payload,
                                             pubsub::hookOrderKey(key),
                                             ngx_pubsub_hookq_now());
            ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);

        } catch (...) {
            queued = false;
        }
    }

    if (queued) {
        ngx_pubsub_hookq_kick();
        return NGX_OK;
    }

    /* the guarantee is lost for this one: sent once, counted, logged */
    ngx_pubsub_hookq_unqueued++;

    if (server == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (!ngx_pubsub_hookq_ready) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pubsub: the hook queue is not available: a %s hook "
                      "is sent once, without retry",
                      ngx_pubsub_hook_names[kind]);
        ngx_pubsub_hookq_unqueued = 0;
    }

    {
        ngx_pubsub_hook_req_t        v = *q;
        ngx_http_core_main_conf_t   *cmcf;
        ngx_http_core_srv_conf_t   **cscfp;

        cmcf = static_cast<ngx_http_core_main_conf_t *>(
                   q->conf.main_conf[ngx_http_core_module.ctx_index]);
        cscfp = static_cast<ngx_http_core_srv_conf_t **>(
                    cmcf->servers.elts);

        v.conf.main_conf = cscfp[server]->ctx->main_conf;
        v.conf.srv_conf = cscfp[server]->ctx->srv_conf;
        if (cscfp[server]->ctx->srv_conf != q->conf.srv_conf) {
            v.conf.loc_conf = cscfp[server]->ctx->loc_conf;
        }

        return ngx_pubsub_hookq_send_once(kind, &v, body, ct);
    }
}


/* attempts */

static void
ngx_pubsub_hookq_done(ngx_pubsub_hook_call_t *call,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_hookq_claim_t  *cl = static_cast<ngx_pubsub_hookq_claim_t *>(
                                        call->idata);
    pubsub::HookOutcome        o;
    ngx_uint_t                 ok;
    int64_t                    now, at = 0;

    ngx_pubsub_hookq_inflight--;

    /*
     * Delivered: the backend answered 2xx.  Its body is not used by these
     * hooks: an answer too big or cut short after a 2xx status line still
     * counts (the backend took the request).
     */
    ok = (!res->failed && res->status >= 200 && res->status < 300)
         || (res->backend_status >= 200 && res->backend_status < 300);
    now = ngx_pubsub_hookq_now();

    if (!ngx_pubsub_hookq_live) {
        return;   /* exit_process gave the claims back */
    }

    ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
    o = ngx_pubsub_hookq().finish(cl->entry, cl->seq, cl->owner, ok, now,
                                  &at);
    ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);

    switch (o) {

    case pubsub::HookOutcome::kRetry:
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "pubsub: %s hook attempt %uD failed (%ui), "
                      "retried in %L ms",
                      ngx_pubsub_hook_names[call->kind], cl->attempts + 1,
                      res->status, at - now);
        break;

    case pubsub::HookOutcome::kGivenUp:
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "pubsub: %s hook given up after %uD attempts in "
                      "%L ms: the backend never accepted it",
                      ngx_pubsub_hook_names[call->kind], cl->attempts + 1,
                      (int64_t) pubsub::HookQueue::kGiveUpMs);
        break;

    default:
        break;
    }

    /* what waited behind it (its order key) goes now */
    ngx_pubsub_hookq_kick();
}


static void
ngx_pubsub_hookq_send(const pubsub::HookClaim &c, ngx_log_t *log)
{
    ngx_pubsub_hook_call_t    *call;
    ngx_pubsub_hookq_claim_t  *cl;
    ngx_uint_t                 gone = 0;

    call = ngx_pubsub_hookq_call(c.payload, log, &gone);

    if (call || !gone) {
        cl = call ? static_cast<ngx_pubsub_hookq_claim_t *>(
                        ngx_palloc(call->pool,
                                   sizeof(ngx_pubsub_hookq_claim_t)))
                  : NULL;

        if (cl) {
            cl->entry = c.entry;
            cl->seq = c.seq;
            cl->attempts = c.attempts;
            cl->owner = ngx_pid;

            call->internal = ngx_pubsub_hookq_done;
            call->idata = cl;

            if (ngx_pubsub_hook_launch(call) == NGX_OK) {
                ngx_pubsub_hookq_inflight++;
                return;
            }
        }

        if (call) {
            ngx_pubsub_hook_free(call);
        }

        /* out of memory: an attempt that failed */
        ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
        (void) ngx_pubsub_hookq().finish(c.entry, c.seq, ngx_pid, false,
                                         ngx_pubsub_hookq_now());
        ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);
        return;
    }

    /* a payload that cannot be sent any more (logged): it goes */
    ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
    (void) ngx_pubsub_hookq().finish(c.entry, c.seq, ngx_pid, true,
                                     ngx_pubsub_hookq_now());
    ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);
}


static bool
ngx_pubsub_hookq_alive(int64_t pid)
{
    return !(kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH);
}


static void
ngx_pubsub_hookq_dispatch(ngx_log_t *log)
{
    std::vector<pubsub::HookClaim>  claims;
    pubsub::HookQueueRoot          *root;
    size_t                          room, n;

    root = static_cast<pubsub::HookQueueRoot *>(
               ngx_pubsub_hookq_shpool->data);

    if (root->entries == 0
        || ngx_pubsub_hookq_inflight >= NGX_PUBSUB_HOOKQ_INFLIGHT)
    {
        return;
    }

    room = NGX_PUBSUB_HOOKQ_INFLIGHT - ngx_pubsub_hookq_inflight;

    ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);

    try {
        pubsub::HookQueue  q = ngx_pubsub_hookq();

        if (ngx_pubsub_hookq_ticks % NGX_PUBSUB_HOOKQ_REAP == 0) {
            size_t  assumed = 0;

            n = q.reclaim(ngx_pubsub_hookq_alive, &assumed);
            if (n || assumed) {
                ngx_log_error(NGX_LOG_NOTICE, log, 0,
                              "pubsub: a worker that is gone was sending "
                              "%uz hooks: %uz retries are sent again, %uz "
                              "first attempts are taken as delivered",
                              n + assumed, n, assumed);
            }
        }

        (void) q.claim(ngx_pid, ngx_pubsub_hookq_now(), room, &claims);

    } catch (...) {
        /* the claims made so far are sent */
    }

    ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);

    for (const pubsub::HookClaim &c : claims) {
        ngx_pubsub_hookq_send(c, log);
    }
}


static void
ngx_pubsub_hookq_post_handler(ngx_event_t *ev)
{
    if (!ngx_pubsub_hookq_live) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [ev] {
        ngx_pubsub_hookq_dispatch(ev->log);
        return NGX_OK;
    });
}


static void
ngx_pubsub_hookq_tick(ngx_event_t *ev)
{
    pubsub::HookQueueRoot  *root;

    if (!ngx_pubsub_hookq_live) {
        return;
    }

    ngx_pubsub_hookq_ticks++;

    if (ngx_pubsub_hookq_unqueued) {
        root = static_cast<pubsub::HookQueueRoot *>(
                   ngx_pubsub_hookq_shpool->data);
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "pubsub: the hook queue is full: %ui hooks were not "
                      "queued, sent once without retry (%uL in all; raise "
                      "pubsub_hook_queue_size)", ngx_pubsub_hookq_unqueued,
                      root->dropped);
        ngx_pubsub_hookq_unqueued = 0;
    }

    (void) ngx_pubsub_guard(ev->log, [ev] {
        ngx_pubsub_hookq_dispatch(ev->log);
        return NGX_OK;
    });

    /* due entries wait for the workers that stay */
    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_PUBSUB_HOOKQ_TICK);
    }
}


void
ngx_pubsub_hook_queue_stats(ngx_pubsub_hook_queue_stats_t *st)
{
    pubsub::HookQueueRoot  *root;

    ngx_memzero(st, sizeof(ngx_pubsub_hook_queue_stats_t));

    if (!ngx_pubsub_hookq_ready) {
        return;
    }

    root = static_cast<pubsub::HookQueueRoot *>(
               ngx_pubsub_hookq_shpool->data);

    ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
    st->pending = root->entries;
    st->queued = root->queued;
    st->delivered = root->delivered;
    st->retried = root->retried;
    st->given_up = root->givenUp;
    st->dropped = root->dropped;
    ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);
}


ngx_int_t
ngx_pubsub_hookq_init_process(ngx_cycle_t *cycle)
{
    ngx_shm_zone_t   *zone;
    ngx_list_part_t  *part;
    ngx_uint_t        i;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    part = &cycle->shared_memory.part;
    zone = static_cast<ngx_shm_zone_t *>(part->elts);

    for (i = 0; /* void */ ; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }
            part = part->next;
            zone = static_cast<ngx_shm_zone_t *>(part->elts);
            i = 0;
        }

        if (zone[i].tag == &ngx_pubsub_hooks_module
            && zone[i].shm.name.len == ngx_pubsub_hookq_zone_name.len
            && ngx_strncmp(zone[i].shm.name.data,
                           ngx_pubsub_hookq_zone_name.data,
                           ngx_pubsub_hookq_zone_name.len) == 0)
        {
            break;
        }
    }

    ngx_pubsub_hookq_shpool = reinterpret_cast<ngx_slab_pool_t *>(
                                  zone[i].shm.addr);

    if (!pubsub::HookQueue::compatible(
            static_cast<pubsub::HookQueueRoot *>(
                ngx_pubsub_hookq_shpool->data)))
    {
        return NGX_OK;
    }

    ngx_memzero(&ngx_pubsub_hookq_tick_ev, sizeof(ngx_event_t));
    ngx_pubsub_hookq_tick_ev.handler = ngx_pubsub_hookq_tick;
    ngx_pubsub_hookq_tick_ev.data = &ngx_pubsub_dumb_conn;
    ngx_pubsub_hookq_tick_ev.log = cycle->log;
    ngx_pubsub_hookq_tick_ev.cancelable = 1;

    ngx_memzero(&ngx_pubsub_hookq_post_ev, sizeof(ngx_event_t));
    ngx_pubsub_hookq_post_ev.handler = ngx_pubsub_hookq_post_handler;
    ngx_pubsub_hookq_post_ev.data = &ngx_pubsub_dumb_conn;
    ngx_pubsub_hookq_post_ev.log = cycle->log;

    ngx_pubsub_hookq_ready = 1;
    ngx_pubsub_hookq_live = 1;

    ngx_add_timer(&ngx_pubsub_hookq_tick_ev, NGX_PUBSUB_HOOKQ_TICK);

    /* what the workers before this one left: at once */
    ngx_pubsub_hookq_kick();

    return NGX_OK;
}


void
ngx_pubsub_hookq_exit_process(ngx_cycle_t *cycle)
{
    size_t  n;

    if (!ngx_pubsub_hookq_live) {
        return;
    }

    if (ngx_pubsub_hookq_tick_ev.timer_set) {
        ngx_del_timer(&ngx_pubsub_hookq_tick_ev);
    }

    if (ngx_pubsub_hookq_post_ev.timer_set) {
        ngx_del_timer(&ngx_pubsub_hookq_post_ev);
    }

    if (ngx_pubsub_hookq_post_ev.posted) {
        ngx_delete_posted_event(&ngx_pubsub_hookq_post_ev);
    }

    /* hooks queued from now on (other modules' exits) stay for the next */
    ngx_pubsub_hookq_live = 0;

    /* attempts still in flight: the next workers send them again */
    ngx_shmtx_lock(&ngx_pubsub_hookq_shpool->mutex);
    n = ngx_pubsub_hookq().release(ngx_pid);
    ngx_shmtx_unlock(&ngx_pubsub_hookq_shpool->mutex);

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "pubsub: %uz hooks in flight at exit are left to the "
                      "next workers", n);
    }
}
