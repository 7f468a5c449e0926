/*
 * ngx_pubsub: a stream that sheds its HTTP request (ngx_pubsub_subscriber.h).
 *
 * Once an EventSource, chunked, multipart or raw stream over HTTP/1.x has
 * its header and what it was owed written, nothing of the request is
 * needed any more: its pool (request struct, header lists, variables,
 * module contexts: 4-8 KB) and the client's header buffers are freed, as
 * for a WebSocket after the 101, and the connection is driven by the
 * subscriber alone.  From then on it frames the body itself (the chunked
 * coding nginx's chunked filter wrote until then: one chunk per write, or
 * nothing when the response is delimited by the connection's close), queues
 * its output on the heap, writes it with c->send_chain() and closes the
 * connection when the stream ends: no request follows a stream.
 *
 * Only a request that nothing else needs is freed: a body filter that
 * rewrites the stream (gzip, sub_filter, ssi, charset recoding, ...) keeps
 * a context in the request, and only the contexts known not to touch the
 * body are accepted; limit_rate paces the request's output, trailers come
 * with nginx's last chunk, and subrequests or pipelined input need the
 * request too.  Such requests stay whole (and work as before, just
 * bigger).  A slot of limit_conn, which the request holds until its pool
 * goes, moves to the connection's pool (ngx_pubsub_keep_conn_limits()).
 *
 * The access log line is written when the request is freed (status 200,
 * the bytes sent so far), as for a WebSocket after its 101.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>


/* what an item costs besides its bytes (the allocator's header) */
#define NGX_PUBSUB_STREAM_OUT_OVERHEAD  16

/* how long the end of a detached stream may take to be written */
#define NGX_PUBSUB_STREAM_END_WAIT      60000


/* one write of a detached stream: chunk header, data, chunk trailer */
struct ngx_pubsub_http_sub_t::out_t {
    out_t        *next;
    size_t        cost;
    ngx_buf_t     buf;
    ngx_chain_t   cl;
    u_char        data[1];
};


/*
 * Module contexts that may be set on a stream's request without a need for
 * it after the header: they hold nothing for the body.
 */
static const char  *ngx_pubsub_stream_ctx_ok[] = {
    "ngx_pubsub_module",
    "ngx_pubsub_hooks_module",
    "ngx_http_chunked_filter_module",   /* we write the chunks from then on */
    "ngx_http_copy_filter_module",      /* in-memory buffers pass through */
    "ngx_http_realip_module",
    "ngx_http_userid_filter_module",
    "ngx_http_auth_request_module",
    "ngx_http_header_count_module",     /* max_headers, some builds: input */
    NULL
};


/* whether zone is a shared memory zone of limit_conn */
static bool
ngx_pubsub_is_limit_conn_zone(void *zone, void *tag)
{
    ngx_cycle_t      *cycle = const_cast<ngx_cycle_t *>(ngx_cycle);
    ngx_list_part_t  *part = &cycle->shared_memory.part;
    ngx_shm_zone_t   *z = static_cast<ngx_shm_zone_t *>(part->elts);

    for (ngx_uint_t i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return false;
            }

            part = part->next;
            z = static_cast<ngx_shm_zone_t *>(part->elts);
            i = 0;
        }

        if (&z[i] == zone) {
            return z[i].tag == tag;
        }
    }
}


/*
 * limit_conn counts a request from its handler until its pool goes (a
 * cleanup of r->pool whose data starts with the zone): a request freed
 * early would give its slot back while its connection goes on.  The
 * cleanups move to the connection's pool, so the slot is held until the
 * connection closes.  NGX_ERROR: out of memory, nothing moved.
 */
ngx_int_t
ngx_pubsub_keep_conn_limits(ngx_http_request_t *r)
{
    static ngx_module_t  *limit_conn = NULL;
    static ngx_uint_t     looked;
    ngx_pool_cleanup_t   *cln, *moved;

    if (r->main->limit_conn_status == 0) {
        return NGX_OK;
    }

    if (!looked) {
        for (ngx_uint_t i = 0; ngx_cycle->modules[i]; i++) {
            if (ngx_strcmp(ngx_cycle->modules[i]->name,
                           "ngx_http_limit_conn_module") == 0)
            {
                limit_conn = ngx_cycle->modules[i];
            }
        }

        looked = 1;
    }

    if (limit_conn == NULL) {
        return NGX_OK;
    }

    /* a cleanup's data, when it has any, is an aligned pool allocation:
       its first pointer can be read whatever its size */
    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == NULL || cln->data == NULL
            || !ngx_pubsub_is_limit_conn_zone(
                   *static_cast<void **>(cln->data), limit_conn))
        {
            continue;
        }

        /* { shm_zone, node }: what its handler reads */
        moved = ngx_pool_cleanup_add(r->connection->pool, 2 * sizeof(void *));
        if (moved == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(moved->data, cln->data, 2 * sizeof(void *));
        moved->handler = cln->handler;
        cln->handler = NULL;
    }

    return NGX_OK;
}


/* the header buffers, as nginx frees them for an idle keep-alive connection */
void
ngx_pubsub_free_header_buffers(ngx_connection_t *c, ngx_http_connection_t *hc)
{
    ngx_chain_t  *cl, *ln;
    ngx_buf_t    *b;

    b = c->buffer;
    if (b && b->start && ngx_pfree(c->pool, b->start) == NGX_OK) {
        b->start = NULL;
        b->pos = NULL;
        b->last = NULL;
        b->end = NULL;
    }

    for (ngx_chain_t **list : { &hc->free, &hc->busy }) {
        for (cl = *list; cl; /* void */) {
            ln = cl;
            cl = cl->next;
            ngx_pfree(c->pool, ln->buf->start);
            ngx_free_chain(c->pool, ln);
        }

        *list = NULL;
    }

    hc->nbusy = 0;
}


/* from the handler: the request is checked once the handler returned */
void
ngx_pubsub_http_sub_t::schedule_detach()
{
    if (r != NULL && !pooled_ && r == r->main
        && r->http_version <= NGX_HTTP_VERSION_11)
    {
        post(POST_DETACH);
    }
}


/* whether nothing but this subscriber needs the request any more */
bool
ngx_pubsub_http_sub_t::detachable()
{
    ngx_module_t  *m;

    if (r != r->main || r->http_version > NGX_HTTP_VERSION_11
        || r->header_only || r->count != 1 || r->posted_requests
        || r->postponed || r->limit_rate
        || r->discard_body || r->reading_body
        || r->headers_out.trailers.part.nelts != 0)
    {
        return false;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return false;
    }
#endif

    /* pipelined input would be lost with the header buffers */
    if (r->header_in && r->header_in->pos != r->header_in->last) {
        return false;
    }

    for (ngx_uint_t i = 0; ngx_cycle->modules[i]; i++) {
        m = ngx_cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE || r->ctx[m->ctx_index] == NULL) {
            continue;
        }

        bool ok = false;

        for (const char **n = ngx_pubsub_stream_ctx_ok; *n; n++) {
            if (ngx_strcmp(m->name, *n) == 0) {
                ok = true;
                break;
            }
        }

        if (!ok) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "pubsub: stream keeps its request (%s)", m->name);
            return false;
        }
    }

    return true;
}


void
ngx_pubsub_http_sub_t::detach()
{
    ngx_http_request_t     *req = r;
    ngx_http_connection_t  *hc;
    ngx_pool_cleanup_t     *cln;

    if (req == NULL || finishing || c->close || c->error) {
        return;
    }

    /* the header or a message still in nginx's filters: once written */
    if (busy_ || req->out || c->buffered) {
        detach_wanted_ = 1;
        return;
    }

    if (!detachable() || on_detach() != NGX_OK
        || ngx_pubsub_keep_conn_limits(req) != NGX_OK)
    {
        return;
    }

    hc = req->http_connection;
    chunked_ = req->chunked;

    /* the request no longer owns the subscriber, nor calls it */
    for (cln = req->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == cleanup && cln->data == this) {
            cln->handler = NULL;
        }
    }

    ngx_http_set_ctx(req, NULL, ngx_pubsub_module);

    r = NULL;
    subscription.r = NULL;   /* channels opened from now on: no request */

    /* buffers of the request's pool (busy_ is empty) */
    out_head_ = NULL;
    out_tail_ = NULL;
    busy_tail_ = NULL;
    held_ = 0;

    c->data = this;
    c->read->handler = detached_read_handler;
    c->write->handler = detached_write_handler;

    ngx_http_free_request(req, 0);

    c->destroyed = 0;
    c->log->action = const_cast<char *>("streaming to a subscriber");

    ngx_pubsub_free_header_buffers(c, hc);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->idle = 1;   /* closed on graceful shutdown */

    drained();
}


/* one write, framed as a chunk when chunk is set */
ngx_int_t
ngx_pubsub_http_sub_t::queue(std::string_view a, std::string_view b,
    std::string_view cc, bool chunk)
{
    u_char  *p, head[NGX_OFF_T_LEN + 2];
    size_t   size, hlen, len;
    out_t   *o;

    size = a.size() + b.size() + cc.size();
    hlen = chunk ? ngx_sprintf(head, "%xz\r\n", size) - head : 0;
    len = hlen + size + (chunk ? 2 : 0);

    o = static_cast<out_t *>(ngx_alloc(offsetof(out_t, data) + len, c->log));
    if (o == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(o->data, head, hlen);
    p = ngx_cpymem(p, a.data(), a.size());
    p = ngx_cpymem(p, b.data(), b.size());
    p = ngx_cpymem(p, cc.data(), cc.size());

    if (chunk) {
        *p++ = CR;
        *p++ = LF;
    }

    ngx_memzero(&o->buf, sizeof(ngx_buf_t));
    o->buf.start = o->data;
    o->buf.pos = o->data;
    o->buf.last = p;
    o->buf.end = p;
    o->buf.memory = 1;
    o->buf.flush = 1;
    o->cl.buf = &o->buf;
    o->cl.next = NULL;
    o->next = NULL;
    o->cost = offsetof(out_t, data) + len + NGX_PUBSUB_STREAM_OUT_OVERHEAD;

    if (out_tail_) {
        out_tail_->next = o;
        out_tail_->cl.next = &o->cl;
    } else {
        out_head_ = o;
    }

    out_tail_ = o;
    held_ += o->cost;

    return flush_detached();
}


/* NGX_OK: written, or waiting for the socket; NGX_ERROR: finish */
ngx_int_t
ngx_pubsub_http_sub_t::flush_detached()
{
    ngx_chain_t  *rest;
    out_t        *o;

    if (out_head_ || (c->buffered & NGX_LOWLEVEL_BUFFERED)) {
        rest = c->send_chain(c, out_head_ ? &out_head_->cl : NULL, 0);

        if (rest == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        while (out_head_ && out_head_->buf.pos == out_head_->buf.last) {
            o = out_head_;
            out_head_ = o->next;
            held_ -= o->cost;
            ngx_free(o);
        }

        if (out_head_ == NULL) {
            out_tail_ = NULL;
        }
    }

    if (out_head_ == NULL && !(c->buffered & NGX_LOWLEVEL_BUFFERED)) {
        drained();
        return NGX_OK;
    }

    if (held_ > plcf->max_pending) {
        size_t  unsent = 0;

        for (o = out_head_; o; o = o->next) {
            unsent += o->buf.last - o->buf.pos;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pubsub: subscriber dropped: %uz bytes unsent, "
                      "%uz bytes held (pubsub_subscriber_max_pending)",
                      unsent, held_);
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* detached: what was not written goes (the destructor) */
void
ngx_pubsub_http_sub_t::free_output()
{
    out_t  *o;

    if (r != NULL) {
        return;   /* buffers of the request's pool */
    }

    while (out_head_) {
        o = out_head_;
        out_head_ = o->next;
        ngx_free(o);
    }

    out_tail_ = NULL;
    held_ = 0;
}


/* everything is written */
void
ngx_pubsub_http_sub_t::drained()
{
#if (NGX_SSL)
    /* the TLS write buffer goes back, as for an idle keep-alive connection */
    if (c->ssl && c->ssl->buf && !(c->buffered & NGX_SSL_BUFFERED)) {
        ngx_ssl_free_buffer(c);
    }
#endif

    if (ending_ && !finishing) {
        finish(NGX_OK);
    }
}


/* the stream's end (write_last()): the last chunk, then the connection goes */
void
ngx_pubsub_http_sub_t::end_detached()
{
    stop();

    if (ending_) {
        return;
    }

    ending_ = 1;

    timeout_at_ = 0;
    ping_at_ = 0;
    timer_ev_.cancelable = 0;
    ngx_add_timer(&timer_ev_, NGX_PUBSUB_STREAM_END_WAIT);

    if ((chunked_ ? queue("0\r\n\r\n", {}, {}, false) : flush_detached())
        != NGX_OK)
    {
        finish(NGX_ERROR);
    }
}


/*
 * The client may only close (as ngx_http_test_reading() sees it); a
 * graceful shutdown (reload, quit, worker_shutdown_timeout) sets c->close
 * and calls this: the stream ends now, as the worker may exit before
 * posted events run.
 */
void
ngx_pubsub_http_sub_t::detached_read_handler(ngx_event_t *rev)
{
    ngx_connection_t       *c = static_cast<ngx_connection_t *>(rev->data);
    ngx_pubsub_http_sub_t  *sub = static_cast<ngx_pubsub_http_sub_t *>(c->data);
    ngx_err_t               err;
    ssize_t                 n;
    char                    buf[1];

    if (c->close) {
        if (!sub->finishing) {
            (void) ngx_pubsub_guard(c->log, [sub] {
                sub->on_shutdown();
                return NGX_OK;
            });
        }

        delete sub;
        ngx_http_close_connection(c);
        return;
    }

    if (sub->finishing) {
        return;
    }

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {

        if (!rev->pending_eof) {
            return;
        }

        rev->eof = 1;
        c->error = 1;
        sub->finish(NGX_ERROR);
        return;
    }

#endif


    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == 0) {
        rev->eof = 1;
        c->error = 1;
        sub->finish(NGX_ERROR);
        return;
    }

    if (n == -1) {
        err = ngx_socket_errno;

        if (err != NGX_EAGAIN) {
            rev->eof = 1;
            c->error = 1;
            sub->finish(NGX_ERROR);
            return;
        }
    }

    /* input the client should not send is left unread */

    if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            sub->finish(NGX_ERROR);
        }
    }
}


void
ngx_pubsub_http_sub_t::detached_write_handler(ngx_event_t *wev)
{
    ngx_connection_t       *c = static_cast<ngx_connection_t *>(wev->data);
    ngx_pubsub_http_sub_t  *sub = static_cast<ngx_pubsub_http_sub_t *>(c->data);

    if (sub->finishing) {
        return;
    }

    if (sub->flush_detached() != NGX_OK) {
        sub->finish(NGX_ERROR);
    }
}
