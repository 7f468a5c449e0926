/*
 * ngx_pubsub: the WebSocket connection object's life (ngx_pubsub_ws.h):
 * construction and destruction, the request's cleanups, finish(), detach()
 * (the HTTP request freed after the 101), the connection's own event
 * handlers, the timers (subscriber timeout, ping, linger) and the worker's
 * WebSocket state (init_process / exit_process).
 */

#include "ngx_pubsub_ws.h"




ngx_int_t
ngx_pubsub_ws_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_ws_worker_t  *wk;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    wk = new (std::nothrow) ngx_pubsub_ws_worker_t();
    if (wk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pubsub: cannot allocate the worker's websocket state");
        return NGX_ERROR;
    }

    ngx_queue_init(&wk->dirty);
    wk->ndirty = 0;
    ngx_memzero(&wk->flush_ev, sizeof(ngx_event_t));
    wk->flush_ev.handler = ngx_pubsub_ws_t::flush_dirty_handler;
    wk->flush_ev.log = cycle->log;
    wk->flush_ev.cancelable = 1;
    wk->spare = NULL;
    wk->nspare = 0;

    ngx_pubsub_worker->ws = wk;

    return NGX_OK;
}


/*
 * Connections still open are not destroyed at exit (the process ends):
 * they are only taken off the dirty list, which goes away here.
 */
void
ngx_pubsub_ws_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_ws_worker_t  *wk = ngx_pubsub_ws_worker;
    ngx_pubsub_ws_out_t     *o;
    ngx_queue_t             *q;

    (void) cycle;

    if (wk == NULL) {
        return;
    }

    ngx_pubsub_worker->ws = NULL;

    if (wk->flush_ev.posted) {
        ngx_delete_posted_event(&wk->flush_ev);
    }

    while (!ngx_queue_empty(&wk->dirty)) {
        q = ngx_queue_head(&wk->dirty);
        ngx_queue_remove(q);

        /* q is the first member of dirty_q_ */
        reinterpret_cast<decltype(ngx_pubsub_ws_t::dirty_q_) *>(q)->w->dirty_
            = false;
    }

    while (wk->spare) {
        o = wk->spare;
        wk->spare = o->next;
        delete o;
    }

    delete wk;
}


ngx_pubsub_ws_t::ngx_pubsub_ws_t(ngx_http_request_t *req,
    ngx_pubsub_loc_conf_t *conf)
    : r(req), c_(req->connection), plcf(conf), pub(NULL), subscriber(0),
      reply_info(0), upstream(0), sink_(this),
      subscription(req, conf, NGX_PUBSUB_SUB_WEBSOCKET, &sink_)
{
    ngx_memzero(&post_ev_, sizeof(ngx_event_t));
    ngx_memzero(&timeout_ev_, sizeof(ngx_event_t));
    ngx_memzero(&ping_ev_, sizeof(ngx_event_t));
}


ngx_pubsub_ws_t::~ngx_pubsub_ws_t()
{
    stop();

    if (dirty_) {
        ngx_queue_remove(&dirty_q_.q);
        dirty_ = false;
        ngx_pubsub_ws_worker->ndirty--;
    }

    if (self_) {
        *self_ = nullptr;
    }

    if (post_ev_.posted) {
        ngx_delete_posted_event(&post_ev_);
    }

    for (ngx_event_t *ev : { &timeout_ev_, &ping_ev_ }) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }

    /* upstream answers still to come are not wanted any more */
    while (in_head_) {
        ngx_pubsub_ws_in_t *in = in_head_;
        in_head_ = in->next;
        ngx_pubsub_hook_cancel(in->call);
        delete in;
    }

    while (head_) {
        ngx_pubsub_ws_out_t *o = head_;
        head_ = o->next;
        ngx_pubsub_ws_out_free(o);
    }
}


/* cln: a cleanup of r->pool that deletes the object until detach() */
ngx_int_t
ngx_pubsub_ws_t::init(ngx_pool_cleanup_t *cln)
{
    ngx_http_cleanup_t    *hcln;
    ngx_log_t             *log = c_->log;

    cln->handler = pool_cleanup;
    cln->data = this;
    pool_cln_ = cln;

    hcln = ngx_http_cleanup_add(r, 0);
    if (hcln == NULL) {
        return NGX_ERROR;
    }

    hcln->handler = request_cleanup;
    hcln->data = this;
    req_cln_ = hcln;

    struct {
        ngx_event_t          *ev;
        ngx_event_handler_pt  handler;
    } evs[] = {
        { &post_ev_, posted_handler },
        { &timeout_ev_, timeout_handler },
        { &ping_ev_, ping_handler },
    };

    for (auto &e : evs) {
        e.ev->handler = e.handler;
        e.ev->data = this;
        e.ev->log = log;
        e.ev->cancelable = 1;
    }

    return NGX_OK;
}


/* the request went away with the object still tied to it */
void
ngx_pubsub_ws_t::pool_cleanup(void *data)
{
    delete static_cast<ngx_pubsub_ws_t *>(data);
}


/*
 * Runs when nginx terminates the request, including graceful shutdown
 * (reload, quit), which closes idle connections: say so to the client
 * with a best-effort close 1001 before the connection goes.
 */
void
ngx_pubsub_ws_t::request_cleanup(void *data)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(data);

    (void) ngx_pubsub_guard(w->c_->log, [w] {
        w->stop();

        if (w->started_ && w->c_->close && !w->close_sent_
            && !w->finishing_)
        {
            w->send_close(ws::close_code::kGoingAway, "server shutting down");
        }

        w->finishing_ = true;
        return NGX_OK;
    });
}


/* ends the connection from a posted event (never synchronously) */
void
ngx_pubsub_ws_t::finish()
{
    stop();

    if (finishing_) {
        return;
    }

    finishing_ = true;

    for (ngx_event_t *ev : { &timeout_ev_, &ping_ev_ }) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }

    post(POST_FINISH);
}


void
ngx_pubsub_ws_t::post(uint8_t what)
{
    posted_ |= what;

    if (!post_ev_.posted) {
        ngx_post_event(&post_ev_, &ngx_posted_events);
    }
}


/* a finish wins over whatever else was posted with it */
void
ngx_pubsub_ws_t::posted_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);
    uint8_t           what = w->posted_;

    w->posted_ = 0;

    if (what & POST_FINISH) {
        w->finish_now();
        return;
    }

    if (what & POST_DETACH) {
        w->guarded(ev->log, [w] { w->detach(); });

        if (w->posted_ & POST_FINISH) {
            return;   /* posted again: runs from the next turn */
        }
    }

    if (what & POST_RESUME) {
        w->guarded(ev->log, [w] { w->resume(); });

        if (w->r) {
            ngx_http_run_posted_requests(w->c_);
        }
    }
}


void
ngx_pubsub_ws_t::finish_now()
{
    ngx_http_request_t  *req = r;
    ngx_connection_t    *c = c_;

    if (req == NULL) {
        /* detached: the connection is ours alone */
        delete this;
        ngx_http_close_connection(c);
        return;
    }

    /* the 101 was sent: no response can follow, the connection just goes */
    ngx_http_finalize_request(req, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


/* ---------------------------------------------------------------- detach */


/*
 * After the 101 nothing of the HTTP request is needed: its pool (request
 * struct, header lists, variables, module contexts: 4-8 KB) and the client
 * header buffers are freed, and the connection is driven by this object
 * alone (c->data = this, own event handlers).  Done from a posted event,
 * as the handler's caller still uses the request when the handler returns.
 * Connections with a publisher upstream hook keep the request: every
 * inbound message starts a hook from it.
 */
void
ngx_pubsub_ws_t::schedule_detach()
{
    if (upstream || r->http_version != NGX_HTTP_VERSION_11 || r != r->main
        || (posted_ & POST_DETACH))
    {
        return;
    }

    post(POST_DETACH);
}


void
ngx_pubsub_ws_t::detach()
{
    ngx_http_request_t     *req = r;
    ngx_connection_t       *c = c_;
    ngx_http_connection_t  *hc;

    if (req == NULL || finishing_ || c->close || in_head_ != nullptr) {
        return;
    }

    /* what is left of the 101 goes first, from the output queue */
    if (req->out) {
        detach_output();

        if (req->out) {
            return;   /* stays attached: still works, just bigger */
        }
    }

    /* limit_conn counts the connection, not the handshake */
    if (ngx_pubsub_keep_conn_limits(req) != NGX_OK) {
        return;   /* stays attached: still works, just bigger */
    }

    hc = req->http_connection;

    /* the request no longer owns the object, nor calls it */
    pool_cln_->handler = NULL;
    req_cln_->handler = NULL;
    r = NULL;
    subscription.r = NULL;   /* channels opened from now on: no request */

    c->data = this;
    c->read->handler = conn_read_handler;
    c->write->handler = conn_write_handler;

    ngx_http_free_request(req, 0);

    c->destroyed = 0;
    c->log->action = const_cast<char *>("websocket");

    ngx_pubsub_free_header_buffers(c, hc);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->idle = 1;
}


/* the unsent part of the 101 into the head of our queue; r->out emptied */
void
ngx_pubsub_ws_t::detach_output()
{
    ngx_chain_t          *cl;
    ngx_buf_t            *b;
    ngx_pubsub_ws_out_t  *o;

    o = ngx_pubsub_ws_out_alloc();
    if (o == nullptr) {
        return;
    }

    try {
        for (cl = r->out; cl; cl = cl->next) {
            if (ngx_buf_in_memory(cl->buf)) {
                o->extra.append(reinterpret_cast<char *>(cl->buf->pos),
                                cl->buf->last - cl->buf->pos);
            }
        }

    } catch (...) {
        ngx_pubsub_ws_out_free(o);
        return;
    }

    if (!o->extra.empty()) {
        b = &o->buf[0];
        ngx_memzero(b, sizeof(ngx_buf_t));
        b->pos = reinterpret_cast<u_char *>(&o->extra[0]);
        b->last = b->pos + o->extra.size();
        b->start = b->pos;
        b->end = b->last;
        b->memory = 1;
        b->flush = 1;
        o->cl[0].buf = b;
        o->cl[0].next = head_ ? &head_->cl[0] : NULL;
        o->nbufs = 1;
        o->size = o->extra.size();
        o->cost = ngx_pubsub_ws_out_cost(o);
        o->next = head_;
        head_ = o;
        if (tail_ == nullptr) {
            tail_ = o;
        }
        pending_ += o->cost;
        unsent_ += o->size;

    } else {
        ngx_pubsub_ws_out_free(o);
    }

    r->out = NULL;
    c_->buffered &= ~NGX_HTTP_WRITE_BUFFERED;
}


void
ngx_pubsub_ws_t::conn_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_ws_t   *w = static_cast<ngx_pubsub_ws_t *>(c->data);

    if (c->close) {
        /*
         * Graceful shutdown (reload, quit) closes idle connections: the
         * worker may exit before posted events run, so the connection
         * goes now (nothing is iterating here).
         */
        (void) ngx_pubsub_guard(c->log, [w] {
            w->shutdown_close();
            return NGX_OK;
        });

        delete w;
        ngx_http_close_connection(c);
        return;
    }

    if (w->finishing_) {
        return;
    }

    w->guarded(c->log, [w] { w->read(); });
}


void
ngx_pubsub_ws_t::conn_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_ws_t   *w = static_cast<ngx_pubsub_ws_t *>(c->data);

    if (w->finishing_) {
        return;
    }

    w->guarded(c->log, [w] { (void) w->flush(); });
}


/* nginx is shutting down: a best-effort close 1001, then the connection goes */
void
ngx_pubsub_ws_t::shutdown_close()
{
    stop();

    if (started_ && !close_sent_ && !finishing_) {
        send_close(ws::close_code::kGoingAway, "server shutting down");
    }

    finishing_ = true;
}


/* ---------------------------------------------------------------- timers */


void
ngx_pubsub_ws_t::timeout_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);

    if (w->lingering_) {
        /* no close reply in time */
        w->finish();
        return;
    }

    w->guarded(ev->log, [w] {
        w->send_close(ws::close_code::kNormal, "408 Request Timeout");
    });
}


void
ngx_pubsub_ws_t::ping_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);

    if (w->finishing_ || w->close_sent_) {
        return;
    }

    if (w->paused_ || w->close_deferred_) {
        w->heard_ = true;   /* we are not reading: no verdict */
    }

    if (!w->heard_) {
        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "pubsub: websocket peer did not answer a ping "
                      "within pubsub_ping_interval, closing");
        w->finish();
        return;
    }

    w->heard_ = false;

    if (ngx_pubsub_guard(ev->log, [w] {
            return w->send_control(ws::Opcode::Ping, "");
        }) != NGX_OK)
    {
        w->finish();
        return;
    }

    if (!w->finishing_ && !w->close_sent_) {
        ngx_add_timer(ev, w->plcf->ping_interval);
    }
}
