/*
 * ngx_pubsub: WebSocket subscribers and publishers (RFC 6455).
 *
 * The handshake is checked and the channels, resume id and subscription are
 * settled before the 101, so that bad input gets an HTTP status.  After the
 * 101 the connection is ours: raw c->recv() feeds the core's FrameParser,
 * frames go out through c->send_chain() from a queue whose payload buffers
 * point into the shared, refcounted messages (one copy per worker).  Framing
 * logic lives in the core (pubsub/websocket.h); this file only moves bytes.
 *
 * Memory and speed: once the 101 is out, the HTTP request is freed and the
 * connection is driven by the (heap) ngx_pubsub_ws_t alone (detach()), so
 * an idle subscriber costs its connection, this object and its hub slot.
 * Deliveries are queued and written from the next event loop turn, a part
 * of the waiting connections at a time, so that messages published
 * meanwhile share a writev() (schedule_flush()).
 */

#include "ngx_pubsub_subscriber.h"
#include "ngx_pubsub_hooks.h"

#include <sys/socket.h>

#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "pubsub/codec/websocket.h"


namespace ws = pubsub::ws;


#define NGX_PUBSUB_WS_READ_BUF      16384

/*
 * One read buffer per worker, shared by every WebSocket: feed() consumes
 * all it is given before the next recv() (the parser keeps what a partial
 * frame needs), so an idle connection holds no read buffer at all.
 */
static u_char  ngx_pubsub_ws_read_buf[NGX_PUBSUB_WS_READ_BUF];
#define NGX_PUBSUB_WS_READ_ROUNDS   32       /* reads per event, then yield */
#define NGX_PUBSUB_WS_LINGER        3000     /* ms to wait for a close reply */
#define NGX_PUBSUB_WS_FLUSH_SLICE   256      /* least connections per turn */

/*
 * pubsub_publisher_upstream_request: inbound messages waiting for (or
 * holding) the backend's answer; at this many the socket is not read any
 * more until the oldest one is answered (back-pressure).
 */
#define NGX_PUBSUB_WS_UPSTREAM_QUEUE  16

/* permessage-deflate: a small window keeps a connection's zlib state cheap */
#define NGX_PUBSUB_WS_WINDOW_BITS   10
#define NGX_PUBSUB_WS_MEM_LEVEL     5

/* the gap signal and other in-band events on ws+meta.nchan connections */
#define NGX_PUBSUB_WS_EVENT_TYPE    "application/vnd.pubsub+json"


namespace {

/*
 * One queued frame: header, owned bytes (meta prefix, deflated data,
 * control payload), and a payload borrowed from a shared message or a
 * shared deflated copy, which the item keeps alive until written.
 */
struct ngx_pubsub_ws_out_t {
    ngx_pubsub_ws_out_t                *next = nullptr;
    pubsub::MessagePtr                  msg;
    std::shared_ptr<const std::string>  shared;
    std::string                         extra;
    u_char                              head[ws::kMaxServerHeaderSize];
    ngx_buf_t                           buf[3];
    ngx_chain_t                         cl[3];
    ngx_uint_t                          nbufs = 0;
    size_t                              size = 0;
};


/*
 * Spare queue items, so that a delivery allocates nothing: a fan-out
 * queues one item per subscriber, written and released moments later.
 */
constexpr size_t  ngx_pubsub_ws_out_spare_max = 4096;

ngx_pubsub_ws_out_t  *ngx_pubsub_ws_out_spare;
size_t                ngx_pubsub_ws_out_nspare;


ngx_pubsub_ws_out_t *
ngx_pubsub_ws_out_alloc()
{
    ngx_pubsub_ws_out_t  *o = ngx_pubsub_ws_out_spare;

    if (o == nullptr) {
        return new (std::nothrow) ngx_pubsub_ws_out_t;
    }

    ngx_pubsub_ws_out_spare = o->next;
    ngx_pubsub_ws_out_nspare--;
    o->next = nullptr;

    return o;
}


void
ngx_pubsub_ws_out_free(ngx_pubsub_ws_out_t *o)
{
    if (ngx_pubsub_ws_out_nspare >= ngx_pubsub_ws_out_spare_max
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
    o->next = ngx_pubsub_ws_out_spare;
    ngx_pubsub_ws_out_spare = o;
    ngx_pubsub_ws_out_nspare++;
}


/*
 * Per-worker cache of what is the same for every subscriber of a message:
 * whether it is valid UTF-8 (text frame or binary) and its pre-deflated
 * copy (pubsub_deflate_message_for_websocket).  The hub hands one message
 * to all subscribers of a channel in a row, so a few entries suffice; each
 * holds a reference, so a cached Message* is never reused for another one.
 */
struct ngx_pubsub_ws_cache_entry_t {
    pubsub::MessagePtr                  msg;
    bool                                utf8 = false;
    bool                                deflate_tried = false;
    std::shared_ptr<const std::string>  deflated;
};

constexpr size_t  ngx_pubsub_ws_cache_size = 8;

ngx_pubsub_ws_cache_entry_t  ngx_pubsub_ws_cache[ngx_pubsub_ws_cache_size];
size_t                       ngx_pubsub_ws_cache_next;


ngx_pubsub_ws_cache_entry_t *
ngx_pubsub_ws_cached(const pubsub::MessagePtr &msg)
{
    for (ngx_pubsub_ws_cache_entry_t &e : ngx_pubsub_ws_cache) {
        if (e.msg.get() == msg.get()) {
            return &e;
        }
    }

    ngx_pubsub_ws_cache_entry_t &e =
        ngx_pubsub_ws_cache[ngx_pubsub_ws_cache_next++
                            % ngx_pubsub_ws_cache_size];

    e.msg = msg;
    e.utf8 = pubsub::isValidUtf8(msg->data());
    e.deflate_tried = false;
    e.deflated.reset();

    return &e;
}


ws::DeflateOptions
ngx_pubsub_ws_deflate_options()
{
    ws::DeflateOptions  o;

    o.windowBits = NGX_PUBSUB_WS_WINDOW_BITS;
    o.memLevel = NGX_PUBSUB_WS_MEM_LEVEL;

    return o;
}


class ngx_pubsub_ws_t;


/* connections with queued frames, written by ngx_pubsub_ws_flush_ev */
ngx_queue_t  ngx_pubsub_ws_dirty;
ngx_uint_t   ngx_pubsub_ws_ndirty;
ngx_event_t  ngx_pubsub_ws_flush_ev;


/*
 * A publishing connection's channel keys and request values, copied out
 * of the request so that they outlive it.
 */
struct ngx_pubsub_ws_pub_t {
    std::vector<std::string>            keys;
    std::string                         text_type;
    std::string                         event;
    /* per key: its channel_publish event, evaluated at the handshake */
    std::vector<std::shared_ptr<const ngx_pubsub_chev_t>>  chev;
};


/*
 * An inbound message sent to pubsub_publisher_upstream_request.  Messages
 * are published (or dropped, or refused) in the order they arrived, each
 * once its own answer and those of all the earlier ones are there.
 */
struct ngx_pubsub_ws_in_t {
    ngx_pubsub_ws_in_t                 *next = nullptr;
    ngx_pubsub_ws_t                    *w = nullptr;
    std::string                         data;
    std::string                         ct;
    ngx_pubsub_hook_call_t             *call = nullptr;
    bool                                answered = false;
    bool                                failed = false;
    ngx_uint_t                          status = 0;
    std::string                         res_body;
    std::string                         res_ct;
};


class ngx_pubsub_ws_t final : public pubsub::Subscriber,
                              public pubsub::MultiplexSink {
public:
    ngx_pubsub_ws_t(ngx_http_request_t *req, ngx_pubsub_loc_conf_t *conf);
    ~ngx_pubsub_ws_t() override;

    ngx_int_t init(ngx_pool_cleanup_t *cln);
    ngx_int_t start(const pubsub::SubscribeReply *reply,
                    const pubsub::MsgId &resume);

    void deliver(const pubsub::MessagePtr &msg) override;
    void gap() override;
    void channelDeleted() override;
    void presenceEvent(const pubsub::PresenceEvent &ev) override;

    /* multiplexed subscriptions (see the section below) */
    void deliver(size_t channel, const pubsub::MessagePtr &msg,
                 std::string_view id) override;
    void gap(size_t channel) override;
    void channelDeleted(size_t channel) override;
    void channelPresence(size_t channel,
                         const pubsub::PresenceEvent &ev) override;
    ngx_int_t mux_subscribe(ngx_pubsub_channels_t *ch,
                            const std::vector<pubsub::StartSpec> &specs,
                            pubsub::SubscribeReply *failed);
    void mux_hooks_open(ngx_pubsub_channels_t *ch);
    void mux_start();
    void mux_stop();

    /*
     * A multiplexed subscription: the adapters, and per channel its hook
     * session and presence join; all heap memory, none of the request's.
     * The channels (r->pool) and the backlog are only used until start().
     */
    std::unique_ptr<pubsub::Multiplexer>                mux;
    std::vector<ngx_pubsub_hook_session_t *>            mux_hooks;
    std::vector<pubsub::PresenceConn *>                 mux_presence;
    ngx_pubsub_channels_t                              *mux_ch = nullptr;
    std::vector<std::vector<pubsub::MessagePtr>>        mux_backlog;
    bool                                                mux_gap = false;
    /* the compound id of the message or signal being sent */
    std::string_view                                    mux_id;

    void stop();
    void finish();

    /* the handshake request; NULL once detach() freed it */
    ngx_http_request_t                 *r;
    ngx_connection_t                   *c_;
    ngx_pubsub_loc_conf_t              *plcf;

    ngx_str_t                           sub_key;
    ngx_pubsub_sub_count_t              count;    /* pubsub_status */
    ngx_pubsub_channels_t              *pub;     /* NULL: not publishing */
    pubsub::PublishInput                pub_in;  /* buffer length, ttl, event */
    std::string_view                    text_type;  /* handshake Content-Type */
    pubsub::InfoFormat                  info_fmt = pubsub::InfoFormat::kText;

    unsigned                            subscriber:1;
    unsigned                            reply_info:1;
    unsigned                            meta:1;
    unsigned                            deflate:1;
    unsigned                            upstream:1;  /* publisher hook */

    /* subscribe/unsubscribe hooks: ended by stop(), exactly once */
    ngx_pubsub_hook_session_t          *hook_session = nullptr;
    /* channel events: the dequeues stop() sends */
    ngx_pubsub_chev_list_t              chev_pending;

    /* what a publishing connection keeps of its request (see detach()) */
    std::unique_ptr<ngx_pubsub_ws_pub_t>  pub_own;

    ws::DeflateParams                   dparams;
    bool                                negotiated_deflate = false;
    /* created when the first byte arrives: idle connections have none */
    std::unique_ptr<ws::FrameParser>    parser;

    void schedule_detach();
    void schedule_flush();
    static void flush_dirty_handler(ngx_event_t *ev);

private:
    static void read_handler(ngx_http_request_t *r);
    static void write_handler(ngx_http_request_t *r);
    static void conn_read_handler(ngx_event_t *ev);
    static void conn_write_handler(ngx_event_t *ev);
    static void detach_handler(ngx_event_t *ev);
    static void finish_handler(ngx_event_t *ev);
    static void timeout_handler(ngx_event_t *ev);
    static void ping_handler(ngx_event_t *ev);
    static void linger_handler(ngx_event_t *ev);
    static void pool_cleanup(void *data);
    static void request_cleanup(void *data);
    static void resume_handler(ngx_event_t *ev);
    static void upstream_done(ngx_http_request_t *r, void *data,
        ngx_pubsub_hook_result_t *res);

    void detach();
    void shutdown_close();
    void read();
    void feed(const u_char *p, size_t len);
    void on_message(ws::Event &ev);
    void publish(std::string_view data, std::string_view ct);
    void queue_upstream(ws::Event &ev);
    void drain_upstream();
    void apply_upstream(ngx_pubsub_ws_in_t *in);
    void resume();
    void published(pubsub::PublishReply &&last, ngx_uint_t failed);

    void send_gap(const pubsub::MsgId &at);
    ngx_int_t enqueue(ws::Opcode op, bool rsv1, std::string &&extra,
        std::string_view payload, const pubsub::MessagePtr &msg,
        std::shared_ptr<const std::string> shared);
    ngx_int_t send_data(ws::Opcode op, std::string &&extra,
        std::string_view payload, const pubsub::MessagePtr &msg);
    ngx_int_t send_control(ws::Opcode op, std::string_view payload);
    void send_close(uint16_t code, std::string_view reason);
    ngx_int_t flush();
    void drained();

    ngx_event_t                         finish_ev_;
    ngx_event_t                         timeout_ev_;
    ngx_event_t                         ping_ev_;
    ngx_event_t                         linger_ev_;
    ngx_event_t                         resume_ev_;
    ngx_event_t                         detach_ev_;

    ngx_pool_cleanup_t                 *pool_cln_ = nullptr;
    ngx_http_cleanup_t                 *req_cln_ = nullptr;

    /* publisher upstream: the inbound queue and the input it holds back */
    ngx_pubsub_ws_in_t                 *in_head_ = nullptr;
    ngx_pubsub_ws_in_t                 *in_tail_ = nullptr;
    ngx_uint_t                          in_count_ = 0;
    const u_char                       *stash_ = nullptr;
    size_t                              stash_len_ = 0;
    bool                                paused_ = false;
    bool                                close_deferred_ = false;
    uint16_t                            deferred_code_ = 0;
    std::string                         deferred_reason_;

    /* in the worker's list of connections with deliveries to write */
    struct {
        ngx_queue_t                     q;
        ngx_pubsub_ws_t                *w;
    }                                   dirty_q_;
    bool                                dirty_ = false;

    ngx_pubsub_ws_out_t                *head_ = nullptr;
    ngx_pubsub_ws_out_t                *tail_ = nullptr;
    size_t                              pending_ = 0;

    std::unique_ptr<ws::Deflater>       deflater_;

    pubsub::PresenceConn               *presence_ = nullptr;

    /* cleared by the destructor: late store callbacks check it */
    std::shared_ptr<ngx_pubsub_ws_t *>  self_;

    bool                                started_ = false;
    bool                                finishing_ = false;
    bool                                close_sent_ = false;
    bool                                close_received_ = false;
    bool                                lingering_ = false;
    bool                                heard_ = true;   /* input since ping */
    bool                                flushing_ = false;
};


ngx_pubsub_ws_t::ngx_pubsub_ws_t(ngx_http_request_t *req,
    ngx_pubsub_loc_conf_t *conf)
    : r(req), c_(req->connection), plcf(conf), pub(NULL), subscriber(0),
      reply_info(0), meta(0), deflate(0), upstream(0)
{
    sub_key.len = 0;
    sub_key.data = NULL;
    ngx_memzero(&finish_ev_, sizeof(ngx_event_t));
    ngx_memzero(&timeout_ev_, sizeof(ngx_event_t));
    ngx_memzero(&ping_ev_, sizeof(ngx_event_t));
    ngx_memzero(&linger_ev_, sizeof(ngx_event_t));
    ngx_memzero(&resume_ev_, sizeof(ngx_event_t));
    ngx_memzero(&detach_ev_, sizeof(ngx_event_t));
}


ngx_pubsub_ws_t::~ngx_pubsub_ws_t()
{
    stop();

    if (dirty_) {
        ngx_queue_remove(&dirty_q_.q);
        dirty_ = false;
        ngx_pubsub_ws_ndirty--;
    }

    ngx_pubsub_presence_leave(presence_);
    presence_ = nullptr;

    for (pubsub::PresenceConn *&pc : mux_presence) {
        ngx_pubsub_presence_leave(pc);
        pc = nullptr;
    }

    if (self_) {
        *self_ = nullptr;
    }

    for (ngx_event_t *ev : { &finish_ev_, &resume_ev_, &detach_ev_ }) {
        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }
    }

    for (ngx_event_t *ev : { &timeout_ev_, &ping_ev_, &linger_ev_ }) {
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
        { &finish_ev_, finish_handler },
        { &timeout_ev_, timeout_handler },
        { &ping_ev_, ping_handler },
        { &linger_ev_, linger_handler },
        { &resume_ev_, resume_handler },
        { &detach_ev_, detach_handler },
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


/*
 * Ends the subscription (if any) and its hook session: whatever ends a
 * WebSocket subscriber comes through here (close sent or received, channel
 * deleted, timeout, dead peer, reset, shutdown, the pool going away), and
 * the session pointer makes the unsubscribe hook go out exactly once.
 */
void
ngx_pubsub_ws_t::stop()
{
    pubsub::Store              *store;
    ngx_pubsub_hook_session_t  *s;

    count.end();

    if (attached()) {
        store = ngx_pubsub_store_for(plcf);
        if (store) {
            store->unsubscribe(this);
        }
    }

    if (hook_session) {
        s = hook_session;
        hook_session = nullptr;
        ngx_pubsub_hook_unsubscribed(s);   /* sent later, from an event */
    }

    mux_stop();

    /* queued: published from a posted event */
    ngx_pubsub_chev_unsubscribed(&chev_pending);
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

    for (ngx_event_t *ev : { &timeout_ev_, &ping_ev_, &linger_ev_ }) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }

    ngx_post_event(&finish_ev_, &ngx_posted_events);
}


void
ngx_pubsub_ws_t::finish_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t     *w = static_cast<ngx_pubsub_ws_t *>(ev->data);
    ngx_http_request_t  *r = w->r;
    ngx_connection_t    *c = w->c_;

    if (r == NULL) {
        /* detached: the connection is ours alone */
        delete w;
        ngx_http_close_connection(c);
        return;
    }

    /* the 101 was sent: no response can follow, the connection just goes */
    ngx_http_finalize_request(r, NGX_ERROR);
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
        || detach_ev_.posted)
    {
        return;
    }

    ngx_post_event(&detach_ev_, &ngx_posted_events);
}


void
ngx_pubsub_ws_t::detach_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);

    if (ngx_pubsub_guard(ev->log, [w] {
            w->detach();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }
}


void
ngx_pubsub_ws_t::detach()
{
    ngx_http_request_t     *req = r;
    ngx_connection_t       *c = c_;
    ngx_http_connection_t  *hc;
    ngx_chain_t            *cl, *ln;
    ngx_buf_t              *b;
    ngx_pubsub_ws_out_t    *o;

    if (req == NULL || finishing_ || c->close || in_head_ != nullptr) {
        return;
    }

    /* what is left of the 101 goes first, from the output queue */
    if (req->out) {
        o = ngx_pubsub_ws_out_alloc();
        if (o == nullptr) {
            return;   /* stays attached: still works, just bigger */
        }

        try {
            for (cl = req->out; cl; cl = cl->next) {
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
            o->cl[0].buf = b;
            o->cl[0].next = head_ ? &head_->cl[0] : NULL;
            o->nbufs = 1;
            o->size = o->extra.size();
            o->next = head_;
            head_ = o;
            if (tail_ == nullptr) {
                tail_ = o;
            }
            pending_ += o->size;

        } else {
            ngx_pubsub_ws_out_free(o);
        }

        req->out = NULL;
        c->buffered &= ~NGX_HTTP_WRITE_BUFFERED;
    }

    hc = req->http_connection;

    /* the request no longer owns the object, nor calls it */
    pool_cln_->handler = NULL;
    req_cln_->handler = NULL;
    r = NULL;

    c->data = this;
    c->read->handler = conn_read_handler;
    c->write->handler = conn_write_handler;

    ngx_http_free_request(req, 0);

    c->destroyed = 0;
    c->log->action = const_cast<char *>("websocket");

    /* the header buffers, as for an idle keep-alive connection */
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

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->idle = 1;
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

    if (ngx_pubsub_guard(c->log, [w] {
            w->read();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }
}


void
ngx_pubsub_ws_t::conn_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_ws_t   *w = static_cast<ngx_pubsub_ws_t *>(c->data);

    if (w->finishing_) {
        return;
    }

    if (ngx_pubsub_guard(c->log, [w] {
            (void) w->flush();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }
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


/* ---------------------------------------------------------------- output */


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
    if (dirty_) {
        return;
    }

    if (ngx_pubsub_ws_flush_ev.handler == NULL) {
        ngx_queue_init(&ngx_pubsub_ws_dirty);
        ngx_pubsub_ws_flush_ev.handler = flush_dirty_handler;
        ngx_pubsub_ws_flush_ev.log = ngx_cycle->log;
        ngx_pubsub_ws_flush_ev.cancelable = 1;
    }

    dirty_q_.w = this;
    ngx_queue_insert_tail(&ngx_pubsub_ws_dirty, &dirty_q_.q);
    dirty_ = true;
    ngx_pubsub_ws_ndirty++;

    if (!ngx_pubsub_ws_flush_ev.posted) {
        ngx_post_event(&ngx_pubsub_ws_flush_ev, &ngx_posted_next_events);
    }
}


void
ngx_pubsub_ws_t::flush_dirty_handler(ngx_event_t *ev)
{
    ngx_uint_t        n, slice;
    ngx_queue_t      *q;
    ngx_pubsub_ws_t  *w;

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
    slice = ngx_max(NGX_PUBSUB_WS_FLUSH_SLICE, ngx_pubsub_ws_ndirty / 8);
    n = 0;

    while (!ngx_queue_empty(&ngx_pubsub_ws_dirty)) {

        if (n++ == slice) {
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }

        q = ngx_queue_head(&ngx_pubsub_ws_dirty);
        ngx_queue_remove(q);

        /* q is the first member of dirty_q_ */
        w = reinterpret_cast<decltype(dirty_q_) *>(q)->w;
        w->dirty_ = false;
        ngx_pubsub_ws_ndirty--;

        if (ngx_pubsub_guard(w->c_->log, [w] {
                (void) w->flush();
                return NGX_OK;
            }) != NGX_OK)
        {
            w->finish();
        }
    }
}


ngx_int_t
ngx_pubsub_ws_t::enqueue(ws::Opcode op, bool rsv1, std::string &&extra,
    std::string_view payload, const pubsub::MessagePtr &msg,
    std::shared_ptr<const std::string> shared)
{
    ngx_pubsub_ws_out_t  *o;
    size_t                n;

    o = ngx_pubsub_ws_out_alloc();
    if (o == nullptr) {
        return NGX_ERROR;
    }

    o->extra = std::move(extra);
    o->msg = msg;
    o->shared = std::move(shared);

    n = ws::writeFrameHeader(o->head, op, o->extra.size() + payload.size(),
                             true, rsv1);

    const u_char *parts[3] = {
        o->head,
        reinterpret_cast<const u_char *>(o->extra.data()),
        reinterpret_cast<const u_char *>(payload.data())
    };
    size_t sizes[3] = { n, o->extra.size(), payload.size() };

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

    if (tail_) {
        tail_->cl[tail_->nbufs - 1].next = &o->cl[0];
        tail_->next = o;

    } else {
        head_ = o;
    }

    tail_ = o;
    pending_ += o->size;

    return NGX_OK;
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

    if (head_ == nullptr) {
        drained();
        return NGX_OK;
    }

    in = NULL;
    for (ngx_uint_t i = 0; i < head_->nbufs; i++) {
        if (head_->buf[i].pos < head_->buf[i].last) {
            in = &head_->cl[i];
            break;
        }
    }

    if (in == NULL) {
        in = &head_->cl[head_->nbufs - 1];
    }

    flushing_ = true;
    rest = c->send_chain(c, in, 0);
    flushing_ = false;

    if (rest == NGX_CHAIN_ERROR) {
        c->error = 1;
        finish();
        return NGX_ERROR;
    }

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

        pending_ -= o->size;
        ngx_pubsub_ws_out_free(o);
    }

    if (head_ == nullptr) {
        drained();
        return NGX_OK;
    }

again:

    if (pending_ > plcf->max_pending && !close_sent_) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pubsub: websocket client dropped: %uz bytes unsent "
                      "(pubsub_subscriber_max_pending)", pending_);
        finish();
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        finish();
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* everything queued is written */
void
ngx_pubsub_ws_t::drained()
{
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
        ngx_add_timer(&linger_ev_, NGX_PUBSUB_WS_LINGER);

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
    ngx_pubsub_ws_t  *w;

    w = static_cast<ngx_pubsub_ws_t *>(
            ngx_http_get_module_ctx(r, ngx_pubsub_module));
    if (w == NULL || w->finishing_) {
        return;
    }

    if (ngx_pubsub_guard(w->c_->log, [w] {
            (void) w->flush();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
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
    if (paused_ && !resume_ev_.posted) {
        ngx_post_event(&resume_ev_, &ngx_posted_events);
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


/* ---------------------------------------------------------------- input */


void
ngx_pubsub_ws_t::read_handler(ngx_http_request_t *r)
{
    ngx_pubsub_ws_t  *w;

    w = static_cast<ngx_pubsub_ws_t *>(
            ngx_http_get_module_ctx(r, ngx_pubsub_module));
    if (w == NULL || w->finishing_) {
        return;
    }

    if (ngx_pubsub_guard(w->c_->log, [w] {
            w->read();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }
}


void
ngx_pubsub_ws_t::read()
{
    ngx_connection_t  *c = c_;
    ssize_t            n;
    ngx_uint_t         rounds = 0;

    while (!finishing_) {

        /* back-pressure, or a close waiting for the upstream answers */
        if (paused_ || close_deferred_) {
            return;
        }

        /* a client that sends without pause must not starve the others */
        if (++rounds > NGX_PUBSUB_WS_READ_ROUNDS) {
            ngx_post_event(c->read, &ngx_posted_events);
            return;
        }

        n = c->recv(c, ngx_pubsub_ws_read_buf, NGX_PUBSUB_WS_READ_BUF);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                finish();
            }
            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* the client went away (or closed after our close) */
            c->error = (n == NGX_ERROR);
            finish();
            return;
        }

        heard_ = true;
        feed(ngx_pubsub_ws_read_buf, n);
    }
}


void
ngx_pubsub_ws_t::feed(const u_char *p, size_t len)
{
    ws::Event  ev;
    size_t     n;

    while (len > 0 && !finishing_) {

        if (!parser) {
            parser.reset(new (std::nothrow) ws::FrameParser(
                ws::ParserConfig::forServer(plcf->ws_max_message_size,
                    negotiated_deflate ? &dparams : nullptr)));
            if (!parser) {
                finish();
                return;
            }
        }

        if (lingering_ && parser->failed()) {
            return;   /* discard until the client closes */
        }

        /* too many messages wait for the upstream hook: read no more */
        if (in_count_ >= NGX_PUBSUB_WS_UPSTREAM_QUEUE && !close_sent_) {
            stash_ = p;
            stash_len_ = len;
            paused_ = true;
            return;
        }

        n = parser->feed(p, len, ev);
        p += n;
        len -= n;

        switch (ev.type) {

        case ws::EventType::None:
            return;

        case ws::EventType::Message:
            if (!close_sent_) {
                on_message(ev);
            }
            break;

        case ws::EventType::Ping:
            if (!close_sent_) {
                (void) send_control(ws::Opcode::Pong, ev.payload);
            }
            break;

        case ws::EventType::Pong:
            break;

        case ws::EventType::Close:
            close_received_ = true;

            if (!close_sent_ && in_head_ != nullptr) {
                /*
                 * A clean close right behind messages: publish them first
                 * (their upstream answers are bounded by the hook
                 * location's timeouts), then answer the close.
                 */
                close_deferred_ = true;
                deferred_code_ = (ev.code == ws::close_code::kNoStatus)
                                 ? 0 : ev.code;
                deferred_reason_ = ev.payload;
                return;
            }

            if (close_sent_) {
                /* the reply to our close */
                if (head_ == nullptr) {
                    finish();
                }
                return;
            }

            /* echo the client's code and reason */
            send_close(ev.code == ws::close_code::kNoStatus ? 0 : ev.code,
                       ev.payload);
            return;

        case ws::EventType::Error:
            ngx_log_error(NGX_LOG_INFO, c_->log, 0,
                          "pubsub: websocket protocol error %ud: %*s",
                          (unsigned) ev.code, ev.reason.size(),
                          ev.reason.data());

            if (close_sent_) {
                finish();
                return;
            }

            send_close(ev.code, ev.reason);
            return;
        }
    }
}


void
ngx_pubsub_ws_t::on_message(ws::Event &ev)
{
    if (!pub_own) {
        send_close(ws::close_code::kPolicyViolation, "Publishing not allowed.");
        return;
    }

    if (upstream) {
        queue_upstream(ev);
        return;
    }

    publish(ev.payload, (ev.opcode == ws::Opcode::Binary)
                        ? std::string_view("application/octet-stream")
                        : text_type);
}


/* ---------------------------------------------------------------- upstream */


/* sends a message to pubsub_publisher_upstream_request, in arrival order */
void
ngx_pubsub_ws_t::queue_upstream(ws::Event &ev)
{
    ngx_pubsub_ws_in_t  *in;
    ngx_str_t            body, ct, type;

    in = new (std::nothrow) ngx_pubsub_ws_in_t;
    if (in == nullptr) {
        finish();
        return;
    }

    in->w = this;
    in->data = std::move(ev.payload);
    in->ct.assign((ev.opcode == ws::Opcode::Binary)
                  ? std::string_view("application/octet-stream")
                  : text_type);

    if (in_tail_) {
        in_tail_->next = in;
    } else {
        in_head_ = in;
    }

    in_tail_ = in;
    in_count_++;

    body.data = reinterpret_cast<u_char *>(&in->data[0]);
    body.len = in->data.size();
    ct.data = reinterpret_cast<u_char *>(&in->ct[0]);
    ct.len = in->ct.size();
    ngx_str_set(&type, "websocket");

    /* bind = 0: the destructor cancels what is still in flight */
    in->call = ngx_pubsub_hook_publish_upstream(r, pub, body, ct, type, 0,
                                                upstream_done, in);

    if (in->call == nullptr) {
        /* in order: the messages before it are still published */
        in->answered = true;
        in->failed = true;
        in->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        drain_upstream();
    }
}


void
ngx_pubsub_ws_t::upstream_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_ws_in_t  *in = static_cast<ngx_pubsub_ws_in_t *>(data);
    ngx_pubsub_ws_t     *w = in->w;

    (void) r;

    in->call = nullptr;
    in->answered = true;
    in->failed = res->failed ? true : false;
    in->status = res->status;

    try {
        if (!in->failed && res->status >= 200 && res->status < 300
            && res->status != NGX_HTTP_NO_CONTENT)
        {
            in->res_body.assign(ngx_pubsub_sv(res->body));
            in->res_ct.assign(ngx_pubsub_sv(res->content_type));

        } else if (!in->failed && res->status >= 300
                   && res->status != NGX_HTTP_NOT_MODIFIED)
        {
            in->res_body.assign(ngx_pubsub_sv(res->body));
        }

        w->drain_upstream();

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, w->c_->log, 0,
                      "pubsub: websocket upstream answer failed "
                      "(out of memory)");
        w->finish();
    }
}


/* applies the answered messages at the head of the queue, in order */
void
ngx_pubsub_ws_t::drain_upstream()
{
    while (in_head_ && in_head_->answered && !finishing_ && !close_sent_) {
        ngx_pubsub_ws_in_t *in = in_head_;

        in_head_ = in->next;
        if (in_head_ == nullptr) {
            in_tail_ = nullptr;
        }

        in_count_--;

        apply_upstream(in);
        delete in;
    }

    if (finishing_) {
        return;
    }

    if (close_sent_) {
        return;
    }

    if (in_head_ == nullptr && close_deferred_) {
        close_deferred_ = false;
        send_close(deferred_code_, deferred_reason_);
        return;
    }

    if (paused_ && in_count_ < NGX_PUBSUB_WS_UPSTREAM_QUEUE
        && !resume_ev_.posted)
    {
        ngx_post_event(&resume_ev_, &ngx_posted_events);
    }
}


/*
 * The backend's answer: 2xx publishes its body and Content-Type, 204
 * nothing, 304 the original message; any other answer refuses the message
 * and ends the connection with close 1008 "<status> <body>" (1011 when the
 * hook got no answer), so nothing after a refused message is published.
 */
void
ngx_pubsub_ws_t::apply_upstream(ngx_pubsub_ws_in_t *in)
{
    char  text[64];
    int   n;

    if (in->failed) {
        ngx_log_error(NGX_LOG_WARN, c_->log, 0,
                      "pubsub: websocket publisher upstream hook failed "
                      "with status %ui", in->status);
        n = snprintf(text, sizeof(text),
                     "%u publisher upstream hook failed",
                     static_cast<unsigned>(in->status));
        send_close(ws::close_code::kInternalError, std::string_view(text, n));
        return;
    }

    if (in->status == NGX_HTTP_NO_CONTENT) {
        return;
    }

    if (in->status == NGX_HTTP_NOT_MODIFIED) {
        publish(in->data, in->ct);
        return;
    }

    if (in->status >= 200 && in->status < 300) {
        publish(in->res_body, in->res_ct);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c_->log, 0,
                  "pubsub: websocket message refused by the publisher "
                  "upstream hook with status %ui", in->status);

    n = snprintf(text, sizeof(text), "%u",
                 static_cast<unsigned>(in->status));

    std::string reason(text, n);
    std::string_view body = in->res_body;

    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'
                             || body.back() == ' ' || body.back() == '\t'))
    {
        body.remove_suffix(1);
    }

    if (!body.empty() && pubsub::isValidUtf8(body)) {
        reason += ' ';
        reason += body;   /* cut to 123 bytes by writeCloseFrame() */
    }

    send_close(ws::close_code::kPolicyViolation, reason);
}


void
ngx_pubsub_ws_t::resume_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);

    if (ngx_pubsub_guard(ev->log, [w] {
            w->resume();
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }

    if (w->r) {
        ngx_http_run_posted_requests(w->c_);
    }
}


/* the queue has room again: the held-back input, then the socket */
void
ngx_pubsub_ws_t::resume()
{
    const u_char  *p;
    size_t         len;

    if (!paused_ || finishing_) {
        return;
    }

    paused_ = false;
    heard_ = true;    /* pongs were not read while paused */

    p = stash_;
    len = stash_len_;
    stash_ = nullptr;
    stash_len_ = 0;

    if (len) {
        feed(p, len);
    }

    if (!paused_ && !finishing_) {
        read();
    }
}


void
ngx_pubsub_ws_t::publish(std::string_view data, std::string_view ct)
{
    struct state_t {
        std::shared_ptr<ngx_pubsub_ws_t *>  self;
        ngx_uint_t                          left = 0;
        ngx_uint_t                          failed = 0;
        pubsub::PublishReply                last;
    };

    pubsub::PublishInput  in = pub_in;

    in.data = data;
    in.contentType = ct;

    if (!self_) {
        self_ = std::make_shared<ngx_pubsub_ws_t *>(this);
    }

    auto st = std::make_shared<state_t>();
    st->self = self_;
    st->left = pub_own->keys.size();

    /*
     * The store copies the input before publish() returns; its replies may
     * come later (Redis), when this connection may be gone: self says.
     */
    for (size_t i = 0; i < pub_own->keys.size(); i++) {
        std::shared_ptr<const ngx_pubsub_chev_t>  chev;

        if (i < pub_own->chev.size()) {
            chev = pub_own->chev[i];
        }

        ngx_pubsub_store_for(plcf)->publish(pub_own->keys[i], in,
            [st, chev](pubsub::PublishReply &&reply) {
                if (reply.status != pubsub::StoreResult::kOk) {
                    st->failed++;
                    st->last = std::move(reply);

                } else {
                    /* queued only: published later from a posted event */
                    ngx_pubsub_chev_emit(chev.get());

                    if (!st->failed) {
                        st->last = std::move(reply);
                    }
                }

                if (--st->left == 0 && *st->self != nullptr) {
                    ngx_pubsub_ws_t *w = *st->self;

                    try {
                        w->published(std::move(st->last), st->failed);

                    } catch (...) {
                        w->finish();
                    }
                }
            });
    }
}


void
ngx_pubsub_ws_t::published(pubsub::PublishReply &&last, ngx_uint_t failed)
{
    if (finishing_ || close_sent_) {
        return;
    }

    if (failed) {
        ngx_log_error(NGX_LOG_WARN, c_->log, 0,
                      "pubsub: websocket publish failed: %s",
                      last.reason.c_str());

        /* refusals are policy, everything else is the server's fault */
        uint16_t code = (last.status == pubsub::StoreResult::kNotFound)
                        ? ws::close_code::kPolicyViolation
                        : ws::close_code::kInternalError;
        std::string reason = last.reason.empty() ? "Publish failed."
                                                 : last.reason;

        send_close(code, reason);
        return;
    }

    if (!reply_info) {
        return;
    }

    std::string info = pubsub::formatChannelInfo(last.info, info_fmt,
                                                 ngx_time());

    (void) send_data(ws::Opcode::Text, std::move(info), {},
                     pubsub::MessagePtr());
}


/* ---------------------------------------------------------------- timers */


void
ngx_pubsub_ws_t::timeout_handler(ngx_event_t *ev)
{
    ngx_pubsub_ws_t  *w = static_cast<ngx_pubsub_ws_t *>(ev->data);

    if (ngx_pubsub_guard(ev->log, [w] {
            w->send_close(ws::close_code::kNormal, "408 Request Timeout");
            return NGX_OK;
        }) != NGX_OK)
    {
        w->finish();
    }
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


void
ngx_pubsub_ws_t::linger_handler(ngx_event_t *ev)
{
    static_cast<ngx_pubsub_ws_t *>(ev->data)->finish();
}


/* ---------------------------------------------------------------- delivery */


void
ngx_pubsub_ws_t::deliver(const pubsub::MessagePtr &msg)
{
    if (finishing_ || close_sent_) {
        return;
    }

    try {
        ngx_pubsub_ws_cache_entry_t *ce = ngx_pubsub_ws_cached(msg);
        std::string_view ct = msg->contentType();
        std::string prefix;

        bool binary = (ct == "application/octet-stream") || !ce->utf8;

        if (meta) {
            char buf[pubsub::kMaxMsgIdText];
            std::string_view id = mux_id;

            if (id.empty()) {
                id = std::string_view(buf, pubsub::writeMsgId(buf, msg->id()));
            }

            if (!pubsub::isValidUtf8(ct)) {
                binary = true;
            }

            prefix.resize(ws::metaPrefixSize(id, ct));
            ws::writeMetaPrefix(&prefix[0], id, ct);
        }

        ws::Opcode op = binary ? ws::Opcode::Binary : ws::Opcode::Text;

        if (deflate) {
            ws::DeflateOptions opts = ngx_pubsub_ws_deflate_options();

            /* one pre-deflated copy per message and worker, shared */
            if (plcf->deflate_for_websocket
                && ws::canSharePredeflated(dparams, opts.windowBits))
            {
                if (!ce->deflate_tried) {
                    ce->deflate_tried = true;
                    auto s = std::make_shared<std::string>();
                    if (ws::deflateNoContext(msg->data(), *s, opts)) {
                        ce->deflated = std::move(s);
                    }
                }

                std::string head;
                if (ce->deflated
                    && (prefix.empty()
                        || ws::deflateNoContext(prefix, head, opts, true)))
                {
                    if (enqueue(op, true, std::move(head), *ce->deflated,
                                pubsub::MessagePtr(), ce->deflated) != NGX_OK)
                    {
                        finish();
                        return;
                    }

                    if (deflater_ && !dparams.serverNoContextTakeover) {
                        deflater_->resetContext();
                    }

                    schedule_flush();
                    goto sent;
                }
            }

            if (!deflater_) {
                deflater_ = ws::makeServerDeflater(dparams, opts);
            }

            std::string out;
            std::string_view parts[2] = { prefix, msg->data() };

            if (deflater_ && deflater_->deflateMessage(parts, 2, out)) {
                if (enqueue(op, true, std::move(out), {}, pubsub::MessagePtr(),
                            nullptr) != NGX_OK)
                {
                    finish();
                    return;
                }

                schedule_flush();
                goto sent;
            }

            /* zlib failed: send this and later messages uncompressed */
            deflate = 0;
        }

        if (enqueue(op, false, std::move(prefix), msg->data(), msg, nullptr)
            != NGX_OK)
        {
            finish();
            return;
        }

        schedule_flush();

    sent:

        ngx_pubsub_stats_delivered(1);

        if (timeout_ev_.timer_set) {
            ngx_add_timer(&timeout_ev_, plcf->subscriber_timeout);
        }

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, c_->log, 0,
                      "pubsub: websocket delivery failed (out of memory)");
        finish();
    }
}


/*
 * Messages were missed.  Only ws+meta.nchan connections can be told in
 * band: a frame with content type application/vnd.pubsub+json and a JSON
 * body; its id is the position before the gap, so a client that resumes
 * from it is told again.  A plain connection cannot tell a signal from
 * data and gets nothing (see docs/protocol.md).
 */
void
ngx_pubsub_ws_t::send_gap(const pubsub::MsgId &at)
{
    if (!meta || finishing_ || close_sent_) {
        return;
    }

    try {
        char buf[pubsub::kMaxMsgIdText];
        std::string_view id = mux_id;
        if (id.empty() && !at.isNull()) {
            id = std::string_view(buf, pubsub::writeMsgId(buf, at));
        }
        std::string_view ct = NGX_PUBSUB_WS_EVENT_TYPE;
        std::string frame;

        frame.resize(ws::metaPrefixSize(id, ct));
        ws::writeMetaPrefix(&frame[0], id, ct);
        frame += "{\"event\":\"pubsub.gap\",\"reason\":\"messages were "
                 "dropped before they could be delivered\"}";

        (void) send_data(ws::Opcode::Text, std::move(frame), {},
                         pubsub::MessagePtr());

    } catch (...) {
        finish();
    }
}


void
ngx_pubsub_ws_t::gap()
{
    send_gap(cursor());
}


/*
 * Join / leave (pubsub_presence_events): like the gap signal, a meta frame
 * of content type application/vnd.pubsub+json on ws+meta.nchan connections;
 * its id is the current position, so resuming from it loses nothing.  Plain
 * connections cannot tell it from data and get nothing (docs/presence.md).
 */
void
ngx_pubsub_ws_t::presenceEvent(const pubsub::PresenceEvent &ev)
{
    if (!plcf->presence_events || !meta || finishing_ || close_sent_) {
        return;
    }

    try {
        std::string json = pubsub::presenceEventJson(
                               ev, ngx_pubsub_presence_channel_id(ev.channel));
        if (json.empty()) {
            return;
        }

        char buf[pubsub::kMaxMsgIdText];
        pubsub::MsgId at = cursor();
        std::string_view id = mux_id;
        if (id.empty() && !at.isNull()) {
            id = std::string_view(buf, pubsub::writeMsgId(buf, at));
        }
        std::string_view ct = NGX_PUBSUB_WS_EVENT_TYPE;
        std::string frame;

        frame.resize(ws::metaPrefixSize(id, ct));
        ws::writeMetaPrefix(&frame[0], id, ct);
        frame += json;

        (void) send_data(ws::Opcode::Text, std::move(frame), {},
                         pubsub::MessagePtr());

    } catch (...) {
        finish();
    }
}


void
ngx_pubsub_ws_t::channelDeleted()
{
    try {
        send_close(ws::close_code::kNormal, "410 Gone");

    } catch (...) {
        finish();
    }
}


/* ---------------------------------------------------------------- start */


/* After the 101 went into nginx's output: take the connection over. */
ngx_int_t
ngx_pubsub_ws_t::start(const pubsub::SubscribeReply *reply,
    const pubsub::MsgId &resume)
{
    ngx_connection_t          *c = r->connection;
    ngx_buf_t                 *hb;
    ngx_http_core_loc_conf_t  *clcf;

    started_ = true;

    if (subscriber) {
        count.start(NGX_PUBSUB_SUB_WEBSOCKET);   /* stop() ends it */
    }

    r->read_event_handler = read_handler;
    r->write_event_handler = write_handler;
    r->keepalive = 0;
    r->lingering_close = 0;
    c->idle = 1;    /* closed (with a 1001) on graceful shutdown */

    /* frames are written whole: no reason to wait for ACKs (as proxied
       upgraded connections do) */
    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        finish();
        return NGX_OK;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (subscriber && attached()) {
        presence_ = ngx_pubsub_presence_join(r, plcf, sub_key);
    }

    if (mux) {
        mux_start();
    }

    if (reply) {
        if (reply->gap) {
            send_gap(resume);
        }

        for (const pubsub::MessagePtr &m : reply->backlog) {
            deliver(m);
        }
    }

    if (finishing_ || close_sent_) {
        return NGX_OK;
    }

    if (subscriber && plcf->subscriber_timeout) {
        ngx_add_timer(&timeout_ev_, plcf->subscriber_timeout);
    }

    if (plcf->ping_interval) {
        ngx_add_timer(&ping_ev_, plcf->ping_interval);
    }

    (void) flush();

    /* frames the client sent right behind its handshake */
    hb = r->header_in;
    if (hb && hb->pos < hb->last && !finishing_) {
        const u_char *p = hb->pos;
        size_t len = hb->last - hb->pos;
        hb->pos = hb->last;
        feed(p, len);
    }

    if (!finishing_) {
        read();
    }

    if (!finishing_) {
        schedule_detach();
    }

    return NGX_OK;
}


/* ---------------------------------------------------------------- multiplexed */


/*
 * Several channels on one connection (docs/multiplexing.md): one adapter
 * per channel delivers through deliver(channel, msg, id), where id is the
 * compound id ws+meta.nchan frames carry; a deleted channel closes the
 * connection; one hook session and one presence join per channel.
 */
void
ngx_pubsub_ws_t::deliver(size_t, const pubsub::MessagePtr &msg,
    std::string_view id)
{
    mux_id = id;
    deliver(msg);
    mux_id = {};
}


void
ngx_pubsub_ws_t::gap(size_t)
{
    try {
        std::string id = mux->compoundId(mux->size());

        mux_id = id;
        send_gap(pubsub::MsgId{});
        mux_id = {};

    } catch (...) {
        mux_id = {};
        finish();
    }
}


void
ngx_pubsub_ws_t::channelDeleted(size_t)
{
    channelDeleted();
}


void
ngx_pubsub_ws_t::channelPresence(size_t, const pubsub::PresenceEvent &ev)
{
    try {
        std::string id = mux->compoundTime() ? mux->compoundId(mux->size())
                                             : std::string();

        mux_id = id;
        presenceEvent(ev);
        mux_id = {};

    } catch (...) {
        mux_id = {};
        finish();
    }
}


/* NGX_OK, or NGX_ERROR with the store's refusal in *failed */
ngx_int_t
ngx_pubsub_ws_t::mux_subscribe(ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, pubsub::SubscribeReply *failed)
{
    pubsub::SubscribeRequest  req;

    try {
        mux_backlog.assign(ch->n, {});
        mux_hooks.assign(ch->n, nullptr);
        mux_presence.assign(ch->n, nullptr);

    } catch (...) {
        failed->status = pubsub::StoreResult::kNoMemory;
        failed->reason = "out of memory";
        return NGX_ERROR;
    }

    mux_ch = ch;

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        pubsub::SubscribeReply  reply;

        if (specs[i].kind == pubsub::StartSpec::kAfter) {
            mux->setPosition(i, specs[i].after);
        }

        req.key = ngx_pubsub_sv(ch->key[i]);
        req.start = specs[i];
        req.existingOnly = plcf->existing_only;
        req.limits = ngx_pubsub_group_limits(plcf);

        ngx_pubsub_store_for(plcf)->subscribe(mux->subscriber(i), req,
            [&reply](pubsub::SubscribeReply &&rep) { reply = std::move(rep); });

        if (reply.status != pubsub::StoreResult::kOk) {
            mux_stop();
            *failed = std::move(reply);
            return NGX_ERROR;
        }

        mux_gap = mux_gap || reply.gap;
        mux_backlog[i] = std::move(reply.backlog);
    }

    return NGX_OK;
}


/* subscribed, and the client will know: one subscribe hook per channel */
void
ngx_pubsub_ws_t::mux_hooks_open(ngx_pubsub_channels_t *ch)
{
    for (ngx_uint_t i = 0; i < ch->n && i < mux_hooks.size(); i++) {
        mux_hooks[i] = ngx_pubsub_hook_subscribed(r, ch->id[i],
                                                  NGX_PUBSUB_SUB_WEBSOCKET);
        ngx_pubsub_chev_subscribed(r, plcf, ch->id[i], ch->key[i],
                                   &chev_pending);
    }
}


/* from start(): presence joins, then the merged backlog */
void
ngx_pubsub_ws_t::mux_start()
{
    std::vector<std::vector<pubsub::MessagePtr>>  backlog;

    for (ngx_uint_t i = 0; mux_ch && i < mux_ch->n; i++) {
        if (i < mux_presence.size()) {
            mux_presence[i] = ngx_pubsub_presence_join(r, plcf,
                                                       mux_ch->key[i]);
        }
    }

    mux_ch = nullptr;   /* r->pool: not to be used after start() */
    backlog.swap(mux_backlog);

    if (mux_gap) {
        gap(0);
    }

    mux->deliverBacklog(backlog);
}


/* unsubscribes every channel; ends every hook session once */
void
ngx_pubsub_ws_t::mux_stop()
{
    pubsub::Store  *store = ngx_pubsub_store_for(plcf);

    if (mux && store) {
        for (size_t i = 0; i < mux->size(); i++) {
            if (mux->subscriber(i)->attached()) {
                store->unsubscribe(mux->subscriber(i));
            }
        }
    }

    for (ngx_pubsub_hook_session_t *&s : mux_hooks) {
        ngx_pubsub_hook_session_t *t = s;
        s = nullptr;
        ngx_pubsub_hook_unsubscribed(t);   /* NULL is fine */
    }
}


ngx_int_t ngx_pubsub_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view text);


/*
 * The start positions of the channels, and the multiplexer: NGX_OK, or
 * NGX_DECLINED with what the handler returns in *rc.
 */
ngx_int_t
ngx_pubsub_ws_mux_specs(ngx_http_request_t *r, ngx_pubsub_ws_t *w,
    ngx_pubsub_channels_t *ch, const pubsub::StartSpec &spec,
    const pubsub::ParsedMsgId &full, std::vector<pubsub::StartSpec> *specs,
    ngx_int_t *rc)
{
    std::string  reason;

    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    try {
        specs->assign(ch->n, spec);

    } catch (...) {
        return NGX_DECLINED;
    }

    if (spec.kind == pubsub::StartSpec::kAfter
        && !pubsub::Multiplexer::resumeSpecs(full, ch->n, specs, &reason))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: invalid message id: %s", reason.c_str());
        *rc = ngx_pubsub_ws_refuse(r, NGX_HTTP_BAD_REQUEST,
                                   "Message ID invalid.\n");
        return NGX_DECLINED;
    }

    w->mux = pubsub::Multiplexer::create(
                 static_cast<pubsub::MultiplexSink *>(w), ch->n);
    if (!w->mux) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* ---------------------------------------------------------------- handshake */


/* every value of a request header, joined with ", " (empty when absent) */
std::string_view
ngx_pubsub_ws_header(ngx_http_request_t *r, std::string_view name)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;
    std::string_view  first;
    std::string       joined;
    ngx_uint_t        count = 0;

    part = &r->headers_in.headers.part;
    h = static_cast<ngx_table_elt_t *>(part->elts);

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = static_cast<ngx_table_elt_t *>(part->elts);
            i = 0;
        }

        if (h[i].key.len != name.size()
            || ngx_strncasecmp(h[i].key.data,
                   reinterpret_cast<u_char *>(const_cast<char *>(name.data())),
                   name.size()) != 0)
        {
            continue;
        }

        if (count++ == 0) {
            first = ngx_pubsub_sv(h[i].value);
            continue;
        }

        if (count == 2) {
            joined.assign(first);
        }

        joined += ", ";
        joined += ngx_pubsub_sv(h[i].value);
    }

    if (count < 2) {
        return first;
    }

    ngx_str_t s = ngx_pubsub_pstr(r->pool, joined);

    return ngx_pubsub_sv(s);
}


ngx_int_t
ngx_pubsub_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view text)
{
    ngx_http_discard_request_body(r);

    return ngx_pubsub_respond_text(r, status, "text/plain", text);
}


ngx_int_t
ngx_pubsub_ws_handshake(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t subscribe, ngx_uint_t publish)
{
    ngx_int_t                 rc;
    ngx_pool_cleanup_t       *cln;
    ngx_pubsub_ws_t          *w;
    ngx_pubsub_channels_t    *sch = NULL;
    ws::UpgradeRequest        up;
    ws::HandshakeError        err;
    pubsub::StartSpec         spec;
    pubsub::ParsedMsgId       full;
    pubsub::SubscribeReply    reply;
    pubsub::SubscribeRequest  req;
    std::vector<pubsub::StartSpec>  specs;
    char                      accept[ws::kAcceptKeySize];

    up.method = ngx_pubsub_sv(r->method_name);
    up.httpVersion = r->http_version;
    up.upgrade = ngx_pubsub_ws_header(r, "Upgrade");
    up.connection = ngx_pubsub_ws_header(r, "Connection");
    up.version = ngx_pubsub_ws_header(r, "Sec-WebSocket-Version");
    up.key = ngx_pubsub_ws_header(r, "Sec-WebSocket-Key");

    err = ws::validateUpgrade(up);

    if (err != ws::HandshakeError::None) {
        std::string text(ws::handshakeErrorText(err));

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: bad websocket handshake: %s", text.c_str());

        if ((err == ws::HandshakeError::MissingVersion
             || err == ws::HandshakeError::UnsupportedVersion)
            && ngx_pubsub_set_header(r, "Sec-WebSocket-Version", "13")
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_pubsub_ws_refuse(r, NGX_HTTP_BAD_REQUEST, text + ".\n");
    }

    rc = ngx_pubsub_cors(r, plcf, subscribe ? 1 : 0);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_ws_refuse(r, NGX_HTTP_FORBIDDEN,
                                    "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the object is the request's until detach() gives it the connection */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = new (std::nothrow) ngx_pubsub_ws_t(r, plcf);
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (w->init(cln) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->subscriber = subscribe ? 1 : 0;

    /* channels, resume id and publishing parameters: all before the 101 */

    if (subscribe) {
        sch = static_cast<ngx_pubsub_channels_t *>(
                  ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
        if (sch == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_pubsub_channels(r, plcf, 0, sch) != NGX_OK) {
            return sch->rc;
        }

        if (ngx_pubsub_resume_id(r, plcf, &spec, &full, &rc) != NGX_OK) {
            return rc;
        }

        if (sch->n > 1) {
            if (ngx_pubsub_ws_mux_specs(r, w, sch, spec, full, &specs, &rc)
                != NGX_OK)
            {
                return rc;
            }
        }

        w->sub_key = sch->key[0];
    }

    if (publish) {
        w->pub = static_cast<ngx_pubsub_channels_t *>(
                     ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
        if (w->pub == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_pubsub_channels(r, plcf, 1, w->pub) != NGX_OK) {
            return w->pub->rc;
        }

        if (ngx_pubsub_publish_params(r, plcf, &w->pub_in) != NGX_OK) {
            return ngx_pubsub_ws_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                       "Invalid message buffer length or timeout.\n");
        }

        try {
            w->pub_own.reset(new ngx_pubsub_ws_pub_t);

            for (ngx_uint_t i = 0; i < w->pub->n; i++) {
                w->pub_own->keys.emplace_back(ngx_pubsub_sv(w->pub->key[i]));
            }

            if (r->headers_in.content_type) {
                w->pub_own->text_type.assign(
                    ngx_pubsub_sv(r->headers_in.content_type->value));
            }

            w->pub_own->event.assign(w->pub_in.eventName);

            /* r goes away after the 101 (detach()): evaluate them now */
            for (ngx_uint_t i = 0;
                 ngx_pubsub_chev_enabled(plcf) && i < w->pub->n; i++)
            {
                w->pub_own->chev.emplace_back(ngx_pubsub_chev_prepare(r,
                    plcf, pubsub::ChannelEvent::kChannelPublish,
                    w->pub->id[i], w->pub->key[i]));
            }

        } catch (...) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        w->text_type = w->pub_own->text_type;
        w->pub_in.eventName = w->pub_own->event;

        w->reply_info = subscribe ? 0 : 1;
        w->info_fmt = ngx_pubsub_info_format(r);
        w->upstream = ngx_pubsub_hook_has_upstream(r) ? 1 : 0;
    }

    /* subprotocol and permessage-deflate */

    std::optional<std::string_view> proto =
        ws::chooseSubprotocol(ngx_pubsub_ws_header(r, "Sec-WebSocket-Protocol"));

    w->meta = proto ? 1 : 0;

    ws::DeflateConfig dcfg;
    dcfg.deflate = ngx_pubsub_ws_deflate_options();
    dcfg.clientMaxWindowBits = NGX_PUBSUB_WS_WINDOW_BITS;

    ws::DeflateNegotiation dn = ws::negotiateDeflate(
        ngx_pubsub_ws_header(r, "Sec-WebSocket-Extensions"), dcfg);

    if (dn.accepted) {
        w->deflate = 1;
        w->dparams = dn.params;
    }

    w->negotiated_deflate = dn.accepted;

    if (!ws::computeAcceptKey(up.key, accept)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the subscription, so that store refusals get an HTTP status */

    if (subscribe && w->mux) {
        if (w->mux_subscribe(sch, specs, &reply) != NGX_OK) {
            rc = (reply.status == pubsub::StoreResult::kNotFound)
                 ? NGX_HTTP_FORBIDDEN : ngx_pubsub_status_of(reply.status);
            return ngx_pubsub_ws_refuse(r, rc, reply.reason + "\n");
        }

    } else if (subscribe) {
        req.key = ngx_pubsub_sv(w->sub_key);
        req.start = spec;
        req.existingOnly = plcf->existing_only;

        ngx_pubsub_store_for(plcf)->subscribe(w, req,
            [&reply](pubsub::SubscribeReply &&rep) {
                reply = std::move(rep);
            });

        if (reply.status != pubsub::StoreResult::kOk) {
            rc = (reply.status == pubsub::StoreResult::kNotFound)
                 ? NGX_HTTP_FORBIDDEN : ngx_pubsub_status_of(reply.status);
            return ngx_pubsub_ws_refuse(r, rc, reply.reason + "\n");
        }
    }

    ngx_http_set_ctx(r, w, ngx_pubsub_module);

    /* 101 */

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->disable_not_modified = 1;

    if (ngx_pubsub_set_header(r, "Upgrade", "websocket") != NGX_OK
        || ngx_pubsub_set_header(r, "Sec-WebSocket-Accept",
               std::string_view(accept, ws::kAcceptKeySize)) != NGX_OK
        || (proto && ngx_pubsub_set_header(r, "Sec-WebSocket-Protocol", *proto)
                     != NGX_OK)
        || (dn.accepted
            && ngx_pubsub_set_header(r, "Sec-WebSocket-Extensions",
                                     dn.responseHeader) != NGX_OK))
    {
        w->stop();
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        w->stop();
        return rc;
    }

    /* push the 101 out now (it would wait for postpone_output) */
    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        w->stop();
        return NGX_ERROR;
    }

    r->main->count++;

    /* subscribed, and the client will know: the subscribe hook */
    if (subscribe && w->mux) {
        w->mux_hooks_open(sch);

    } else if (subscribe) {
        w->hook_session = ngx_pubsub_hook_subscribed(r, sch->id[0],
                                                     NGX_PUBSUB_SUB_WEBSOCKET);
        ngx_pubsub_chev_subscribed(r, plcf, sch->id[0], sch->key[0],
                                   &w->chev_pending);
    }

    /* from here on, failures end the connection, never the handler */
    try {
        (void) w->start(subscribe && !w->mux ? &reply : nullptr, spec.after);

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: websocket start failed (out of memory)");
        w->finish();
    }

    return NGX_DONE;
}

}  // namespace


ngx_int_t
ngx_pubsub_websocket_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t subscribe, ngx_uint_t publish)
{
    return ngx_pubsub_ws_handshake(r, plcf, subscribe, publish);
}
