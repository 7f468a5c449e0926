/*
 * ngx_pubsub: WebSocket output (ngx_pubsub_ws.h): the connection's queue of
 * frames, written with c->send_chain() from the worker's list of
 * connections with something to write (schedule_flush()), the bound on
 * what the queue holds, the closing handshake's linger, and data and
 * control frames sent at once (info replies, signals, ping, coalesced
 * pongs, close).
 */

#include "ngx_pubsub_ws.h"

#include <sys/socket.h>


/* a queue item, from the worker's spares when there are some */
ngx_pubsub_ws_out_t *
ngx_pubsub_ws_out_alloc()
{
    ngx_pubsub_ws_worker_t  *wk = ngx_pubsub_ws_worker;
    ngx_pubsub_ws_out_t     *o;

    if (wk == NULL || wk->spare == NULL) {
        return new (std::nothrow) ngx_pubsub_ws_out_t;
    }

    o = wk->spare;
    wk->spare = o->next;
    wk->nspare--;
    o->next = nullptr;

    return o;
}


void
ngx_pubsub_ws_out_free(ngx_pubsub_ws_out_t *o)
{
    ngx_pubsub_ws_worker_t  *wk = ngx_pubsub_ws_worker;

    if (wk == NULL || wk->nspare >= NGX_PUBSUB_WS_OUT_SPARE_MAX
        || o->extra.capacity() > 256)
    {
        delete o;
        return;
    }

    o->msg = pubsub::MessagePtr();
    o->shared.reset();
    o->extra.clear();
    o->nbufs = 0;
    o->size = 0;
    o->cost = 0;
    o->next = wk->spare;
    wk->spare = o;
    wk->nspare++;
}


/*
 * Deliveries are queued on the connection and written from an event of the
 * next event loop iteration (ngx_posted_next_events: after one non-blocking
 * look at the sockets), not from inside the fan-out, and about an eighth
 * of the waiting connections per iteration, oldest first.  The publisher
 * gets its answer before the fan-out's writes, new requests are
 * served between slices, and messages published meanwhile go out in the
 * same writev(): a busy channel costs about one system call per subscriber
 * per round through its subscribers rather than one per message.
 */


void
ngx_pubsub_ws_t::schedule_flush()
{
    ngx_pubsub_ws_worker_t  *wk = ngx_pubsub_ws_worker;

    if (dirty_) {
        return;
    }

    if (wk == NULL) {
        (void) flush();
        return;
    }

    dirty_q_.w = this;
    ngx_queue_insert_tail(&wk->dirty, &dirty_q_.q);
    dirty_ = true;
    wk->ndirty++;

    if (!wk->flush_ev.posted) {
        ngx_post_event(&wk->flush_ev, &ngx_posted_next_events);
    }
}


void
ngx_pubsub_ws_t::flush_dirty_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_worker_t  *wk = ngx_pubsub_ws_worker;
    ngx_uint_t               n, slice;
    ngx_queue_t             *q;
    ngx_pubsub_ws_t         *w;

    /*
     * An eighth of the waiting connections per turn (at least a slice): a
     * channel published to back to back then gets about eight messages per
     * write.  Larger parts coalesce less (one writev() per message and
     * subscriber is what limits a fan-out); smaller ones make a message
     * wait longer for its subscriber's turn.  Measured with 10,000
     * subscribers (bench/RESULTS.md): /2 about 2x nchan's deliveries/s,
     * /8 about 5x, a fixed 256 about 8x, all with a p99 latency 1.3-2.5x
     * nchan's, as the publisher is answered before the fan-out.
     */
    slice = ngx_max(NGX_PUBSUB_WS_FLUSH_SLICE, wk->ndirty / 8);
    n = 0;

    while (!ngx_queue_empty(&wk->dirty)) {

        if (n++ == slice) {
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }

        q = ngx_queue_head(&wk->dirty);
        ngx_queue_remove(q);

        /* q is the first member of dirty_q_ */
        w = reinterpret_cast<decltype(dirty_q_) *>(q)->w;
        w->dirty_ = false;
        wk->ndirty--;

        w->guarded(w->c_->log, [w] { (void) w->flush(); });
    }
}


/*
 * The frame's header into o->head and the buffers of header, o->extra and
 * payload, chained; the last one says flush (see flush()).
 */
static void
ngx_pubsub_ws_out_frame(ngx_pubsub_ws_out_t *o, ws::Opcode op, bool rsv1,
    std::string_view payload)
{
    size_t  n;

    n = ws::writeFrameHeader(o->head, op, o->extra.size() + payload.size(),
                             true, rsv1);

    const u_char *parts[3] = {
        o->head,
        reinterpret_cast<const u_char *>(o->extra.data()),
        reinterpret_cast<const u_char *>(payload.data())
    };
    size_t sizes[3] = { n, o->extra.size(), payload.size() };

    o->nbufs = 0;
    o->size = 0;

    for (ngx_uint_t i = 0; i < 3; i++) {
        if (sizes[i] == 0) {
            continue;
        }

        ngx_buf_t *b = &o->buf[o->nbufs];
        ngx_memzero(b, sizeof(ngx_buf_t));
        b->pos = const_cast<u_char *>(parts[i]);
        b->last = b->pos + sizes[i];
        b->start = b->pos;
        b->end = b->last;
        b->memory = 1;

        o->cl[o->nbufs].buf = b;
        o->cl[o->nbufs].next = NULL;
        if (o->nbufs) {
            o->cl[o->nbufs - 1].next = &o->cl[o->nbufs];
        }

        o->nbufs++;
        o->size += sizes[i];
    }

    /* every frame is pushed to the socket (see flush()) */
    o->buf[o->nbufs - 1].flush = 1;
}


/*
 * What a queued item costs while it waits, which is what
 * pubsub_subscriber_max_pending bounds (not the bytes on the wire: an empty
 * pong is 2 bytes on the wire and some 400 in memory): the item, the bytes
 * it owns, and what it keeps alive, the message (header and data) or the
 * shared deflated copy, each heap block with the allocator's overhead.  A
 * message shared by several queues counts in each: any of them may be the
 * last to hold it.
 */
size_t
ngx_pubsub_ws_out_cost(const ngx_pubsub_ws_out_t *o)
{
    size_t       cost;
    const char  *p, *obj;

    cost = sizeof(ngx_pubsub_ws_out_t) + NGX_PUBSUB_WS_HEAP_OVERHEAD;

    /* owned bytes outside the string object itself (no short string) */
    p = o->extra.data();
    obj = reinterpret_cast<const char *>(&o->extra);

    if (p < obj || p >= obj + sizeof(o->extra)) {
        cost += o->extra.capacity() + 1 + NGX_PUBSUB_WS_HEAP_OVERHEAD;
    }

    if (o->msg) {
        cost += o->msg->memorySize() + NGX_PUBSUB_WS_HEAP_OVERHEAD;
    }

    if (o->shared) {
        /* the control block with the string, and its bytes */
        cost += 2 * sizeof(void *) + sizeof(std::string)
                + o->shared->capacity() + 1
                + 2 * NGX_PUBSUB_WS_HEAP_OVERHEAD;
    }

    return cost;
}


ngx_int_t
ngx_pubsub_ws_t::enqueue(ws::Opcode op, bool rsv1, std::string &&extra,
    std::string_view payload, const pubsub::MessagePtr &msg,
    std::shared_ptr<const std::string> shared)
{
    ngx_pubsub_ws_out_t  *o;

    o = ngx_pubsub_ws_out_alloc();
    if (o == nullptr) {
        return NGX_ERROR;
    }

    o->extra = std::move(extra);
    o->msg = msg;
    o->shared = std::move(shared);

    ngx_pubsub_ws_out_frame(o, op, rsv1, payload);

    link(o);

    return bound();
}


/* o at the end of the queue */
void
ngx_pubsub_ws_t::link(ngx_pubsub_ws_out_t *o)
{
    o->cost = ngx_pubsub_ws_out_cost(o);

    if (tail_) {
        tail_->cl[tail_->nbufs - 1].next = &o->cl[0];
        tail_->next = o;

    } else {
        head_ = o;
    }

    tail_ = o;
    pending_ += o->cost;
    unsent_ += o->size;
}


/*
 * pubsub_subscriber_max_pending, checked as each frame is queued, so that
 * a queue never holds more than the bound and one frame: over it, what the
 * socket takes is written at once, and a client still over it is dropped
 * (flush()).  NGX_ERROR: dropped.  The close frame goes past the bound.
 */
ngx_int_t
ngx_pubsub_ws_t::bound()
{
    if (pending_ <= plcf->max_pending || close_sent_ || flushing_) {
        return NGX_OK;
    }

    return flush() == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/* queues the frame the core chose (ngx_pubsub_ws_deliver.cpp) */
ngx_int_t
ngx_pubsub_ws_t::enqueue_plan(ws::FramePlan &plan,
    const pubsub::MessagePtr &msg)
{
    std::string_view  payload;

    switch (plan.payload) {

    case ws::FramePayload::kMessageData:
        return enqueue(plan.opcode, plan.rsv1, std::move(plan.head),
                       msg->data(), msg, nullptr);

    case ws::FramePayload::kSharedDeflated:
        payload = *plan.shared;   /* kept alive by the item */
        return enqueue(plan.opcode, plan.rsv1, std::move(plan.head), payload,
                       pubsub::MessagePtr(), std::move(plan.shared));

    default: /* kNone */
        return enqueue(plan.opcode, plan.rsv1, std::move(plan.head), {},
                       pubsub::MessagePtr(), nullptr);
    }
}


/*
 * Writes what the socket takes.  NGX_OK: everything is out; NGX_AGAIN:
 * waiting for the socket; NGX_ERROR: the connection is broken or the client
 * reads too slowly (finish() was called).
 */
ngx_int_t
ngx_pubsub_ws_t::flush()
{
    ngx_connection_t  *c = c_;
    ngx_chain_t       *in, *rest;

    if (finishing_ || flushing_) {
        return finishing_ ? NGX_ERROR : NGX_AGAIN;
    }

    /* the 101 itself may still sit in nginx's write filter */
    if (r && r->out) {
        if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
            finish();
            return NGX_ERROR;
        }

        if (r->out) {
            goto again;
        }
    }

    /*
     * Over TLS, c->send_chain() (ngx_ssl_send_chain) copies into the
     * connection's ssl_buffer_size buffer and writes it only when full or
     * when a buffer says flush: every frame's last buffer does (enqueue()),
     * so a frame never waits in nginx for more data.  What the buffer
     * still holds after a partial write is ours to push on the next write
     * event (c->send_chain() with no input flushes it): the frames copied
     * into it are released, but the connection is drained only once the
     * buffer is empty too.
     */
    if (written()) {
        drained();
        return NGX_OK;
    }

    in = NULL;

    if (head_) {
        for (ngx_uint_t i = 0; i < head_->nbufs; i++) {
            if (head_->buf[i].pos < head_->buf[i].last) {
                in = &head_->cl[i];
                break;
            }
        }

        if (in == NULL) {
            in = &head_->cl[head_->nbufs - 1];
        }
    }

    flushing_ = true;
    rest = c->send_chain(c, in, 0);
    flushing_ = false;

    if (rest == NGX_CHAIN_ERROR) {
        c->error = 1;
        finish();
        return NGX_ERROR;
    }

    if (flush_written() && written()) {
        drained();
        return NGX_OK;
    }

again:

    if (pending_ > plcf->max_pending && !close_sent_) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pubsub: websocket client dropped: %uz bytes unsent, "
                      "%uz bytes held (pubsub_subscriber_max_pending)",
                      unsent_, pending_);
        finish();
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        finish();
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* releases the items written whole; true when the queue is empty */
bool
ngx_pubsub_ws_t::flush_written()
{
    while (head_) {
        ngx_pubsub_ws_out_t *o = head_;
        bool done = true;

        for (ngx_uint_t i = 0; i < o->nbufs; i++) {
            if (o->buf[i].pos < o->buf[i].last) {
                done = false;
                break;
            }
        }

        if (!done) {
            break;
        }

        head_ = o->next;
        if (head_ == nullptr) {
            tail_ = nullptr;
        }

        if (o == pong_) {
            pong_ = nullptr;
        }

        pending_ -= o->cost;
        unsent_ -= o->size;
        ngx_pubsub_ws_out_free(o);
    }

    return head_ == nullptr;
}


/* everything queued is written */
void
ngx_pubsub_ws_t::drained()
{
#if (NGX_SSL)
    /*
     * The TLS write buffer (ssl_buffer_size, 16k by default) is empty: give
     * it back, as nginx does for idle keep-alive connections, so that an
     * idle wss:// subscriber costs what a ws:// one does; the next write
     * allocates it again.
     */
    if (c_->ssl && c_->ssl->buf && !(c_->buffered & NGX_SSL_BUFFERED)) {
        ngx_ssl_free_buffer(c_);
    }
#endif

    if (!close_sent_ || finishing_) {
        return;
    }

    if (close_received_ || c_->close) {
        finish();
        return;
    }

    /*
     * Our close went first: send FIN (nothing else will be written) and
     * wait a little for the client's reply or EOF, reading and discarding,
     * so that a close() with unread input does not reset the connection
     * before the client got the close frame.
     */
    if (!lingering_) {
        lingering_ = true;
        if (timeout_ev_.timer_set) {
            ngx_del_timer(&timeout_ev_);
        }
        ngx_add_timer(&timeout_ev_, NGX_PUBSUB_WS_LINGER);

#if (NGX_SSL)
        if (c_->ssl == NULL)
#endif
        {
            (void) shutdown(c_->fd, SHUT_WR);
        }
    }
}


void
ngx_pubsub_ws_t::write_handler(ngx_http_request_t *r)
{
    ngx_pubsub_ws_t  *w = of(r);

    if (w != NULL) {
        w->guarded(w->c_->log, [w] { (void) w->flush(); });
    }
}


ngx_int_t
ngx_pubsub_ws_t::send_data(ws::Opcode op, std::string &&extra,
    std::string_view payload, const pubsub::MessagePtr &msg)
{
    if (enqueue(op, false, std::move(extra), payload, msg, nullptr)
        != NGX_OK)
    {
        finish();
        return NGX_ERROR;
    }

    return flush() == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/*
 * The answer to a ping.  A pong already queued and not begun takes the new
 * ping's payload instead of a second pong being queued (RFC 6455 5.5.3
 * allows answering only the most recent ping): a client that sends pings
 * and never reads holds one pong, not one per ping.
 */
ngx_int_t
ngx_pubsub_ws_t::send_pong(std::string_view payload)
{
    ngx_pubsub_ws_out_t  *o = pong_;

    if (payload.size() > ws::kMaxControlPayload) {
        payload = payload.substr(0, ws::kMaxControlPayload);
    }

    if (o && o->buf[0].pos == o->buf[0].start) {
        pending_ -= o->cost;
        unsent_ -= o->size;

        try {
            o->extra.assign(payload);

        } catch (...) {
            finish();
            return NGX_ERROR;
        }

        ngx_pubsub_ws_out_frame(o, ws::Opcode::Pong, false, {});
        o->cl[o->nbufs - 1].next = o->next ? &o->next->cl[0] : NULL;
        o->cost = ngx_pubsub_ws_out_cost(o);
        pending_ += o->cost;
        unsent_ += o->size;

        return NGX_OK;
    }

    o = ngx_pubsub_ws_out_alloc();
    if (o == nullptr) {
        finish();
        return NGX_ERROR;
    }

    try {
        o->extra.assign(payload);

    } catch (...) {
        ngx_pubsub_ws_out_free(o);
        finish();
        return NGX_ERROR;
    }

    ngx_pubsub_ws_out_frame(o, ws::Opcode::Pong, false, {});
    link(o);
    pong_ = o;

    if (bound() != NGX_OK) {
        return NGX_ERROR;
    }

    return flush() == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


ngx_int_t
ngx_pubsub_ws_t::send_control(ws::Opcode op, std::string_view payload)
{
    if (payload.size() > ws::kMaxControlPayload) {
        payload = payload.substr(0, ws::kMaxControlPayload);
    }

    if (enqueue(op, false, std::string(payload), {}, pubsub::MessagePtr(),
                nullptr) != NGX_OK)
    {
        finish();
        return NGX_ERROR;
    }

    return flush() == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/*
 * Starts the closing handshake: nothing but the close goes out after it,
 * the subscription ends, and the connection is closed once the close is
 * written and the client answered (or did not, within a few seconds).
 */
void
ngx_pubsub_ws_t::send_close(uint16_t code, std::string_view reason)
{
    u_char  frame[ws::kMaxControlFrameSize];
    size_t  n;

    if (close_sent_ || finishing_) {
        return;
    }

    stop();

    for (ngx_event_t *ev : { &timeout_ev_, &ping_ev_ }) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }

    close_sent_ = true;

    /* reading was paused (upstream queue full): read again, discarding
       messages, to see the client's close reply */
    if (paused_) {
        post(POST_RESUME);
    }

    /* the payload of the encoded frame (a close frame has a 2-byte header) */
    n = ws::writeCloseFrame(frame, code, reason);

    std::string payload(reinterpret_cast<const char *>(frame) + 2, n - 2);

    if (enqueue(ws::Opcode::Close, false, std::move(payload), {},
                pubsub::MessagePtr(), nullptr) != NGX_OK)
    {
        finish();
        return;
    }

    (void) flush();
}


/*
 * A protocol's text frame: now (an answer: written at once) or queued
 * with the deliveries of this event loop turn.
 */
ngx_int_t
ngx_pubsub_ws_t::send_text(std::string &&text, bool now)
{
    if (finishing_ || close_sent_) {
        return NGX_DECLINED;
    }

    if (now) {
        return send_data(ws::Opcode::Text, std::move(text), {},
                         pubsub::MessagePtr());
    }

    if (enqueue(ws::Opcode::Text, false, std::move(text), {},
                pubsub::MessagePtr(), nullptr) != NGX_OK)
    {
        finish();
        return NGX_ERROR;
    }

    schedule_flush();

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_ws_t::send_shared(std::shared_ptr<const std::string> text)
{
    std::string_view  payload;

    if (finishing_ || close_sent_) {
        return NGX_DECLINED;
    }

    payload = *text;   /* kept alive by the item */

    if (enqueue(ws::Opcode::Text, false, std::string(), payload,
                pubsub::MessagePtr(), std::move(text)) != NGX_OK)
    {
        finish();
        return NGX_ERROR;
    }

    schedule_flush();

    return NGX_OK;
}


void
ngx_pubsub_ws_t::close(uint16_t code, std::string_view reason)
{
    send_close(code, reason);
}
