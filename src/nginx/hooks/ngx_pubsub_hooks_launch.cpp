/*
 * ngx_pubsub hooks: the launcher.  A hook is an in-memory, waited
 * subrequest to the hook URI, issued from a detached request: a fake
 * connection (no socket, fd -1; its events marked active so nginx never
 * registers them) holding a request built from the hook's snapshot of the
 * client's request (ngx_pubsub_hooks_request.cpp).  It starts from a posted
 * event (or a timer during a graceful shutdown); once the subrequest ended
 * (ngx_pubsub_hooks_answer.cpp records its answer), a posted event hands
 * the answer to the waiting client, if it is still there, and frees the
 * detached request.  Also: hooks whose answer goes to a client request
 * (authorize, publisher upstream).  docs/hooks.md, "How a hook is sent
 * when the client is gone".
 */

#include "ngx_pubsub_hooks_internal.h"


typedef struct {
    ngx_http_log_ctx_t            http;
    ngx_pubsub_hook_call_t       *call;
} ngx_pubsub_hook_log_ctx_t;


static void ngx_pubsub_hook_start_handler(ngx_event_t *ev);
static void ngx_pubsub_hook_finish_handler(ngx_event_t *ev);
static void ngx_pubsub_hook_parent_handler(ngx_http_request_t *r);
static void ngx_pubsub_hook_finish(ngx_pubsub_hook_call_t *call);


static u_char *
ngx_pubsub_hook_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                     *p = buf;
    ngx_pubsub_hook_log_ctx_t  *lctx;
    ngx_pubsub_hook_call_t     *call;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    lctx = reinterpret_cast<ngx_pubsub_hook_log_ctx_t *>(log->data);
    call = lctx->call;

    if (call && call->req) {
        p = ngx_snprintf(buf, len, ", pubsub %s hook \"%V\", client: %V",
                         ngx_pubsub_hook_names[call->kind], &call->req->uri,
                         &call->req->addr_text);
    }

    return p;
}


ngx_pubsub_hook_call_t *
ngx_pubsub_hook_call_alloc(ngx_uint_t kind, ngx_log_t *parent_log)
{
    ngx_pool_t              *pool;
    ngx_pubsub_hook_call_t  *call;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_log_error(NGX_LOG_ERR, parent_log, 0,
                      "pubsub: out of memory for a hook");
        return NULL;
    }

    call = static_cast<ngx_pubsub_hook_call_t *>(
               ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_call_t)));
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    call->pool = pool;
    call->kind = kind;

    return call;
}


/* frees a call: its detached request, its fake connection, its pool */
void
ngx_pubsub_hook_free(ngx_pubsub_hook_call_t *call)
{
    ngx_connection_t  *fc = call->fc;

    if (call->fr) {
        ngx_http_free_request(call->fr, 0);
    }

    /* nothing of nginx may still point at the fake connection's events */
    if (fc) {
        if (fc->read->timer_set) {
            ngx_del_timer(fc->read);
        }

        if (fc->write->timer_set) {
            ngx_del_timer(fc->write);
        }

        if (fc->read->posted) {
            ngx_delete_posted_event(fc->read);
        }

        if (fc->write->posted) {
            ngx_delete_posted_event(fc->write);
        }
    }

    ngx_destroy_pool(call->pool);
}


static ngx_int_t
ngx_pubsub_hook_push_header(ngx_http_request_t *fr, ngx_str_t key,
    ngx_str_t value)
{
    ngx_table_elt_t            *h;
    ngx_http_header_t          *hh;
    ngx_http_core_main_conf_t  *cmcf;

    h = static_cast<ngx_table_elt_t *>(ngx_list_push(&fr->headers_in.headers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key = key;
    h->value = value;
    h->lowcase_key = static_cast<u_char *>(ngx_pnalloc(fr->pool, key.len + 1));
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(h->lowcase_key, key.data, key.len);
    h->hash = ngx_hash_key(h->lowcase_key, key.len);

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_get_module_main_conf(fr, ngx_http_core_module));

    hh = static_cast<ngx_http_header_t *>(
             ngx_hash_find(&cmcf->headers_in_hash, h->hash, h->lowcase_key,
                           h->key.len));

    if (hh && hh->handler(fr, h, hh->offset) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the fake connection's events never fire: no socket, no timer of ours */
static void
ngx_pubsub_hook_fc_handler(ngx_event_t *ev)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "pubsub hook: fake connection event, timedout: %d",
                   ev->timedout);
}


/* the detached request's log: its errors name the hook and the client */
static ngx_log_t *
ngx_pubsub_hook_fake_log(ngx_pubsub_hook_call_t *call)
{
    ngx_log_t                  *log;
    ngx_pubsub_hook_log_ctx_t  *lctx;

    log = static_cast<ngx_log_t *>(ngx_palloc(call->pool, sizeof(ngx_log_t)));
    lctx = static_cast<ngx_pubsub_hook_log_ctx_t *>(
               ngx_pcalloc(call->pool, sizeof(ngx_pubsub_hook_log_ctx_t)));
    if (log == NULL || lctx == NULL) {
        return NULL;
    }

    *log = *ngx_cycle->log;
    log->handler = ngx_pubsub_hook_log_error;
    log->data = &lctx->http;
    log->action = NULL;

    lctx->call = call;

    call->log = log;
    call->pool->log = log;

    return log;
}


/* the fake connection, with the client's addresses and configuration */
static ngx_connection_t *
ngx_pubsub_hook_fake_connection(ngx_pubsub_hook_call_t *call)
{
    ngx_pool_t             *pool = call->pool;
    ngx_pubsub_hook_req_t  *q = call->req;
    ngx_connection_t       *fc;
    ngx_http_connection_t  *hc;
    ngx_http_conf_ctx_t    *conf_ctx;
    ngx_log_t              *log;

    fc = static_cast<ngx_connection_t *>(
             ngx_pcalloc(pool, sizeof(ngx_connection_t)));
    hc = static_cast<ngx_http_connection_t *>(
             ngx_pcalloc(pool, sizeof(ngx_http_connection_t)));
    conf_ctx = static_cast<ngx_http_conf_ctx_t *>(
                   ngx_pcalloc(pool, sizeof(ngx_http_conf_ctx_t)));
    log = ngx_pubsub_hook_fake_log(call);

    if (fc == NULL || hc == NULL || conf_ctx == NULL || log == NULL) {
        return NULL;
    }

    fc->read = static_cast<ngx_event_t *>(
                   ngx_pcalloc(pool, sizeof(ngx_event_t)));
    fc->write = static_cast<ngx_event_t *>(
                    ngx_pcalloc(pool, sizeof(ngx_event_t)));
    fc->buffer = ngx_create_temp_buf(pool, 1);

    if (fc->read == NULL || fc->write == NULL || fc->buffer == NULL) {
        return NULL;
    }

    reinterpret_cast<ngx_pubsub_hook_log_ctx_t *>(log->data)->http.connection
        = fc;

    /*
     * Never registered with the event module: no epoll call.  Always
     * "writable": nothing is ever written to it (the hook's answer is
     * captured by ngx_pubsub_hooks_body_filter), and a writable downstream
     * lets an upstream pass the answer on as it arrives instead of
     * buffering it to a temporary file or arming a send timeout.
     */
    fc->fd = (ngx_socket_t) -1;
    fc->pool = pool;
    fc->log = log;
    fc->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    fc->read->data = fc;
    fc->read->log = log;
    fc->read->active = 1;
    fc->read->handler = ngx_pubsub_hook_fc_handler;
    fc->write->data = fc;
    fc->write->log = log;
    fc->write->write = 1;
    fc->write->active = 1;
    fc->write->ready = 1;
    fc->write->handler = ngx_pubsub_hook_fc_handler;
    fc->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    fc->sockaddr = q->sockaddr;
    fc->socklen = q->socklen;
    fc->local_sockaddr = q->local_sockaddr;
    fc->local_socklen = q->local_socklen;
    fc->addr_text = q->addr_text;
    fc->log_error = NGX_ERROR_INFO;

    *conf_ctx = q->conf;
    hc->conf_ctx = conf_ctx;
    hc->addr_conf = q->addr_conf;
    fc->data = hc;

    return fc;
}


/* the hook's headers: the client's, then pubsub's own */
static ngx_int_t
ngx_pubsub_hook_fake_headers(ngx_pubsub_hook_call_t *call,
    ngx_http_request_t *fr)
{
    ngx_pubsub_hook_req_t  *q = call->req;
    ngx_uint_t              i;
    ngx_str_t               none = ngx_null_string;

    const struct {
        const char  *name;
        ngx_str_t    value;
        ngx_uint_t   always;
    } own[] = {
        { "X-Subscriber-Type", q->sub_type, 0 },
        { "X-Publisher-Type", q->pub_type, 0 },
        { "X-Original-URI", q->unparsed_uri, 1 },
        { "X-Original-Method", q->method_name, 1 },
        { "X-Presence-Id", q->presence_id, 0 },
        { "Content-Type", call->post ? call->ct : none, 0 },
    };

    if (ngx_list_init(&fr->headers_in.headers, fr->pool, q->nheaders + 12,
                      sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < q->nheaders; i++) {
        if (ngx_pubsub_hook_push_header(fr, q->headers[i].key,
                                        q->headers[i].value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < q->nids; i++) {
        if (ngx_pubsub_hook_push_header(fr,
                ngx_pubsub_hook_cstr("X-Channel-Id"), q->ids[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (const auto &h : own) {
        if ((h.value.len || h.always)
            && ngx_pubsub_hook_push_header(fr, ngx_pubsub_hook_cstr(h.name),
                                           h.value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the fake main request: the client's request, as far as hooks see */
static ngx_http_request_t *
ngx_pubsub_hook_fake_request(ngx_pubsub_hook_call_t *call,
    ngx_connection_t *fc)
{
    ngx_pubsub_hook_req_t  *q = call->req;
    ngx_pubsub_hook_ctx_t  *vctx;
    ngx_http_request_t     *fr;

    fr = ngx_http_create_request(fc);
    if (fr == NULL) {
        return NULL;
    }

    call->fc = fc;
    call->fr = fr;

    fr->logged = 1;
    fr->method = q->method;
    fr->method_name = q->method_name;
    fr->uri = q->orig_uri;
    fr->args = q->orig_args;
    fr->unparsed_uri = q->unparsed_uri;
    fr->request_line = q->request_line;
    fr->http_version = q->http_version;
    fr->headers_in.server = q->server;
    fr->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;
    fr->write_event_handler = ngx_pubsub_hook_parent_handler;
    fr->read_event_handler = ngx_http_block_reading;

    if (ngx_pubsub_hook_fake_headers(call, fr) != NGX_OK) {
        return NULL;
    }

    /* variables of the hook subrequest */

    vctx = static_cast<ngx_pubsub_hook_ctx_t *>(
               ngx_pcalloc(fr->pool, sizeof(ngx_pubsub_hook_ctx_t)));
    if (vctx == NULL) {
        return NULL;
    }

    vctx->nids = q->nids;
    vctx->ids = q->ids;
    vctx->sub_type = q->sub_type;
    vctx->pub_type = q->pub_type;
    vctx->msg_id = q->msg_id;
    vctx->prev_id = q->prev_id;
    vctx->ident.presence_id = q->presence_id;
    vctx->has_ident = q->presence_id.len ? 1 : 0;
    vctx->call = call;
    vctx->detached = 1;

    ngx_http_set_ctx(fr, vctx, ngx_pubsub_hooks_module);

    fc->data = fr;

    return fr;
}


/* builds the fake connection and request; the subrequest starts posted */
ngx_int_t
ngx_pubsub_hook_launch(ngx_pubsub_hook_call_t *call)
{
    ngx_connection_t  *fc;

    fc = ngx_pubsub_hook_fake_connection(call);
    if (fc == NULL || ngx_pubsub_hook_fake_request(call, fc) == NULL) {
        return NGX_ERROR;
    }

    call->start_ev.handler = ngx_pubsub_hook_start_handler;
    call->start_ev.data = call;
    call->start_ev.log = call->log;
    call->finish_ev.handler = ngx_pubsub_hook_finish_handler;
    call->finish_ev.data = call;
    call->finish_ev.log = call->log;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->calls[call->kind], 1);
    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->in_flight, 1);

    /*
     * A graceful shutdown (reload, quit) closes the idle connections and
     * then exits at once unless a timer that is not cancelable is pending:
     * posted events would not run first.  A hook started then (the
     * unsubscribe of a streaming or WebSocket subscriber being closed)
     * starts from such a timer instead; its upstream timers keep the worker
     * alive until it is answered.
     */
    if (ngx_exiting) {
        ngx_add_timer(&call->start_ev, 1);
    } else {
        ngx_post_event(&call->start_ev, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_pubsub_hook_start_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_call_t      *call = static_cast<ngx_pubsub_hook_call_t *>(
                                            ev->data);
    ngx_http_request_t          *sr;
    ngx_http_request_body_t     *rb;
    ngx_chain_t                 *cl;
    ngx_buf_t                   *b;
    ngx_int_t                    rc;
    ngx_pubsub_hook_req_t       *q = call->req;
    static ngx_str_t             post = ngx_string("POST");

    call->ps.handler = ngx_pubsub_hook_sr_done;
    call->ps.data = call;

    rc = ngx_http_subrequest(call->fr, &q->uri, q->args.len ? &q->args : NULL,
                             &sr, &call->ps,
                             NGX_HTTP_SUBREQUEST_IN_MEMORY
                             |NGX_HTTP_SUBREQUEST_WAITED);

    if (rc == NGX_ERROR) {
        call->answered = 1;
        call->res.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        call->res.failed = 1;
        (void) ngx_atomic_fetch_add(
                   &ngx_pubsub_hook_stats->failures[call->kind], 1);
        ngx_pubsub_hook_finish(call);
        return;
    }

    call->sr = sr;

    sr->request_body = NULL;
    sr->headers_in.content_length_n = -1;

    if (call->post) {
        rb = static_cast<ngx_http_request_body_t *>(
                 ngx_pcalloc(call->fr->pool, sizeof(ngx_http_request_body_t)));
        if (rb == NULL) {
            goto failed;
        }

        if (call->body.len) {
            b = static_cast<ngx_buf_t *>(ngx_calloc_buf(call->fr->pool));
            cl = ngx_alloc_chain_link(call->fr->pool);
            if (b == NULL || cl == NULL) {
                goto failed;
            }

            b->pos = call->body.data;
            b->last = call->body.data + call->body.len;
            b->start = b->pos;
            b->end = b->last;
            b->memory = 1;
            b->last_buf = 1;
            b->last_in_chain = 1;

            cl->buf = b;
            cl->next = NULL;
            rb->bufs = cl;
        }

        sr->method = NGX_HTTP_POST;
        sr->method_name = post;
        sr->request_body = rb;
        sr->headers_in.content_length_n = call->body.len;
    }

    ngx_http_run_posted_requests(call->fc);
    return;

failed:

    /* the posted subrequest runs and answers; make it an empty GET */
    sr->request_body = NULL;
    ngx_http_run_posted_requests(call->fc);
}


/* the detached request's main request wakes up when its subrequest ended */
static void
ngx_pubsub_hook_parent_handler(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    ctx = static_cast<ngx_pubsub_hook_ctx_t *>(
              ngx_http_get_module_ctx(r, ngx_pubsub_hooks_module));

    if (ctx == NULL || ctx->call == NULL || !ctx->call->answered) {
        return;
    }

    ngx_pubsub_hook_finish(ctx->call);
}


static void
ngx_pubsub_hook_finish(ngx_pubsub_hook_call_t *call)
{
    if (call->finishing) {
        return;
    }

    call->finishing = 1;
    ngx_post_event(&call->finish_ev, &ngx_posted_events);
}


static void
ngx_pubsub_hook_finish_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_call_t  *call = static_cast<ngx_pubsub_hook_call_t *>(
                                        ev->data);
    ngx_http_request_t      *r;
    ngx_connection_t        *c;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->in_flight, -1);

    if (call->internal) {
        (void) ngx_pubsub_guard(call->log, [call] {
            call->internal(call, &call->res);
            return NGX_OK;
        });
    }

    if (call->r && call->done) {
        r = call->r;
        c = r->connection;
        call->r = NULL;

        if (call->cln) {
            call->cln->handler = NULL;
        }

        ngx_http_set_log_request(c->log, r);

        (void) ngx_pubsub_guard(c->log, [call, r] {
            call->done(r, call->data, &call->res);
            return NGX_OK;
        });

        ngx_http_run_posted_requests(c);
    }

    ngx_pubsub_hook_free(call);
}


static void
ngx_pubsub_hook_cancel_cleanup(void *data)
{
    ngx_pubsub_hook_call_t  *call = static_cast<ngx_pubsub_hook_call_t *>(data);

    call->r = NULL;
    call->cln = NULL;
}


void
ngx_pubsub_hook_cancel(ngx_pubsub_hook_call_t *call)
{
    if (call == NULL) {
        return;
    }

    call->r = NULL;

    if (call->cln) {
        call->cln->handler = NULL;
        call->cln = NULL;
    }
}


/* a hook whose answer goes to the client request r */
ngx_pubsub_hook_call_t *
ngx_pubsub_hook_start_for(ngx_http_request_t *r, ngx_uint_t kind,
    ngx_http_complex_value_t *cv, ngx_uint_t nids, ngx_str_t *ids,
    ngx_str_t sub_type, ngx_str_t pub_type, ngx_str_t *body, ngx_str_t *ct,
    ngx_uint_t bind, ngx_pubsub_hook_done_pt done, void *data)
{
    ngx_pubsub_hook_call_t  *call;

    call = ngx_pubsub_hook_call_alloc(kind, r->connection->log);
    if (call == NULL) {
        return NULL;
    }

    call->req = ngx_pubsub_hook_snapshot(r, call->pool, nids, ids, sub_type,
                                         pub_type);
    if (call->req == NULL
        || ngx_pubsub_hook_target(r, cv, call->pool, &call->req->uri,
                                  &call->req->args) != NGX_OK)
    {
        goto failed;
    }

    if (body) {
        call->post = 1;

        if (ngx_pubsub_hook_dup(call->pool, &call->body, *body) != NGX_OK
            || ngx_pubsub_hook_dup(call->pool, &call->ct, *ct) != NGX_OK)
        {
            goto failed;
        }
    }

    if (bind) {
        call->cln = ngx_pool_cleanup_add(r->pool, 0);
        if (call->cln == NULL) {
            goto failed;
        }

        call->cln->handler = ngx_pubsub_hook_cancel_cleanup;
        call->cln->data = call;
    }

    call->r = r;
    call->done = done;
    call->data = data;

    if (ngx_pubsub_hook_launch(call) != NGX_OK) {
        if (call->cln) {
            call->cln->handler = NULL;
        }
        goto failed;
    }

    return call;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "pubsub: could not start the %s hook",
                  ngx_pubsub_hook_names[kind]);

    ngx_pubsub_hook_free(call);

    return NULL;
}


/* publisher upstream */

ngx_uint_t
ngx_pubsub_hook_has_upstream(ngx_http_request_t *r)
{
    return ngx_pubsub_hook_active(ngx_pubsub_hooks_conf(r)->upstream);
}


ngx_pubsub_hook_call_t *
ngx_pubsub_hook_publish_upstream(ngx_http_request_t *r,
    ngx_pubsub_channels_t *ch, ngx_str_t body, ngx_str_t ct,
    ngx_str_t publisher_type, ngx_uint_t bind, ngx_pubsub_hook_done_pt done,
    void *data)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);

    if (!ngx_pubsub_hook_active(hlcf->upstream)) {
        return NULL;
    }

    return ngx_pubsub_hook_start_for(r, NGX_PUBSUB_HOOK_UPSTREAM,
                                     hlcf->upstream, ch->n, ch->id,
                                     ngx_pubsub_hook_cstr(""), publisher_type,
                                     &body, &ct, bind, done, data);
}
