/*
 * ngx_pubsub: WebSocket subscribers and publishers (RFC 6455), internal
 * header: the connection object (ngx_pubsub_ws_t), its queue items and the
 * worker's WebSocket state, shared by the ngx_pubsub_ws_*.cpp files:
 *
 *   ngx_pubsub_websocket.cpp  the handshake and the content handler; start()
 *   ngx_pubsub_ws_conn.cpp    the object's life, detach, timers, the worker
 *   ngx_pubsub_ws_output.cpp  the output queue, flushing, control frames
 *   ngx_pubsub_ws_input.cpp   inbound frames and publishing (upstream queue)
 *   ngx_pubsub_ws_deliver.cpp subscriber delivery: messages and signals
 *   ngx_pubsub_ws_subscribe.cpp  the subscription: store, hooks, presence,
 *                             channel events, status counts
 *
 * The handshake is checked and the channels, resume id and subscription are
 * settled before the 101, so that bad input gets an HTTP status.  After the
 * 101 the connection is ours: raw c->recv() feeds the core's FrameParser,
 * frames go out through c->send_chain() from a queue whose payload buffers
 * point into the shared, refcounted messages (one copy per worker).  Framing
 * logic lives in the core (pubsub/codec/websocket.h, ws_frame.h); these
 * files only move bytes.
 *
 * Memory and speed: once the 101 is out, the HTTP request is freed and the
 * connection is driven by the (heap) ngx_pubsub_ws_t alone (detach()), so
 * an idle subscriber costs its connection, this object and its hub slot.
 * Deliveries are queued and written from the next event loop turn, a part
 * of the waiting connections at a time, so that messages published
 * meanwhile share a writev() (schedule_flush()).
 */

#ifndef _NGX_PUBSUB_WS_H_INCLUDED_
#define _NGX_PUBSUB_WS_H_INCLUDED_

#include "ngx_pubsub_subscriber.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_worker.h"

#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/codec/websocket.h"
#include "pubsub/codec/ws_frame.h"


namespace ws = pubsub::ws;


#define NGX_PUBSUB_WS_READ_BUF      16384
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

/* spare queue items kept per worker (see ngx_pubsub_ws_out_alloc()) */
#define NGX_PUBSUB_WS_OUT_SPARE_MAX   4096

/* what the allocator adds to each heap block (ngx_pubsub_ws_out_cost()) */
#define NGX_PUBSUB_WS_HEAP_OVERHEAD   16


class ngx_pubsub_ws_t;


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
    size_t                              size = 0;    /* bytes on the wire */
    size_t                              cost = 0;    /* memory held */
};


/*
 * The worker's WebSocket state: made by ngx_pubsub_ws_init_process(),
 * gone in ngx_pubsub_ws_exit_process().
 */
struct ngx_pubsub_ws_worker_t {
    /* connections with queued frames, written by flush_ev */
    ngx_queue_t                         dirty;
    ngx_uint_t                          ndirty;
    ngx_event_t                         flush_ev;

    /*
     * Spare queue items, so that a delivery allocates nothing: a fan-out
     * queues one item per subscriber, written and released moments later.
     */
    ngx_pubsub_ws_out_t                *spare;
    size_t                              nspare;

    /*
     * What is the same for every subscriber of a message: whether it is
     * UTF-8 and its pre-deflated copy (pubsub_deflate_message_for_websocket).
     */
    ws::MessageFactsCache               facts;

    /*
     * One read buffer shared by every WebSocket: feed() consumes all it is
     * given before the next recv() (the parser keeps what a partial frame
     * needs), so an idle connection holds no read buffer at all.
     */
    u_char                              read_buf[NGX_PUBSUB_WS_READ_BUF];
};

/* the worker root's WebSocket part (ngx_pubsub_worker.h) */
#define ngx_pubsub_ws_worker  ngx_pubsub_worker_part(ws)


/*
 * A publishing connection's channel keys and request values, copied out
 * of the request so that they outlive it.
 */
struct ngx_pubsub_ws_pub_t {
    pubsub::PublishInput                in;      /* buffer length, ttl, event */
    std::string_view                    text_type;  /* handshake Content-Type */
    pubsub::InfoFormat                  info_fmt = pubsub::InfoFormat::kText;
    std::vector<std::string>            keys;
    std::string                         text_type_buf;
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


/*
 * A protocol spoken over the connection instead of nchan's (Pusher's,
 * src/nginx/pusher/): the connection keeps the handshake, framing, I/O,
 * control frames and the subscription's life; the protocol gets the
 * messages the client sends and what the subscription delivers, and
 * answers through the connection's public send_text() / close().  The
 * connection owns it (deleted before anything else of the connection).
 */
class ngx_pubsub_ws_protocol_t {
public:
    virtual ~ngx_pubsub_ws_protocol_t() = default;

    /* the 101 is out and the connection taken over */
    virtual void start() = 0;
    /* a whole message from the client (text or binary) */
    virtual void message(std::string &payload, bool binary) = 0;
    /* bytes came in (any frame): activity */
    virtual void input() {}

    /* what the subscription delivers; channel: its index */
    virtual void deliver(size_t channel, const pubsub::MessagePtr &msg) = 0;
    virtual void presence(size_t channel, const pubsub::PresenceEvent &ev) = 0;
    virtual void deleted(size_t channel) { (void) channel; }
    virtual void gap(size_t channel) { (void) channel; }
};

/* makes the protocol of a connection at its handshake (NULL: fails) */
typedef ngx_pubsub_ws_protocol_t *(*ngx_pubsub_ws_protocol_pt)(
    ngx_pubsub_ws_t *w, ngx_http_request_t *r);


/*
 * What the subscription delivers, to the connection's nchan methods (as
 * ngx_pubsub_sub_sink_t does) or, with a protocol, to the protocol with
 * the channel's index.
 */
class ngx_pubsub_ws_sink_t final : public pubsub::SubscriptionSink {
public:
    explicit ngx_pubsub_ws_sink_t(ngx_pubsub_ws_t *w) : w_(w) {}

    void deliver(size_t i, const pubsub::MessagePtr &msg,
        std::string_view id) override;
    void gap(size_t i) override;
    void channelDeleted(size_t i) override;
    void presenceEvent(size_t i, const pubsub::PresenceEvent &ev) override;

private:
    ngx_pubsub_ws_t                       *w_;
};


class ngx_pubsub_ws_t final {
public:
    ngx_pubsub_ws_t(ngx_http_request_t *req, ngx_pubsub_loc_conf_t *conf);
    ~ngx_pubsub_ws_t();

    ngx_int_t init(ngx_pool_cleanup_t *cln);
    ngx_int_t start(const pubsub::MsgId &resume);

    /* what the subscription delivers (ngx_pubsub_ws_deliver.cpp) */
    void deliver(const pubsub::MessagePtr &msg);
    void gap();
    void channelDeleted();
    void presenceEvent(const pubsub::PresenceEvent &ev);

    /* multiplexed subscriptions */
    void deliver(size_t channel, const pubsub::MessagePtr &msg,
                 std::string_view id);
    void gap(size_t channel);
    void channelDeleted(size_t channel);
    void channelPresence(size_t channel, const pubsub::PresenceEvent &ev);

    /* when the subscription starts and ends (ngx_pubsub_ws_subscribe.cpp) */
    ngx_int_t subscribe(ngx_pubsub_channels_t *ch,
                        const std::vector<pubsub::StartSpec> &specs,
                        pubsub::SubscriptionStart *refused);
    void subscription_start(const pubsub::MsgId &resume);
    void stop();
    pubsub::MsgId position() const;

    void finish();

    /* the handshake request; NULL once detach() freed it */
    ngx_http_request_t                 *r;
    ngx_connection_t                   *c_;
    ngx_pubsub_loc_conf_t              *plcf;

    ngx_pubsub_channels_t              *pub;     /* NULL: not publishing */

    unsigned                            subscriber:1;
    unsigned                            reply_info:1;
    unsigned                            upstream:1;  /* publisher hook */

    /* for a protocol (ngx_pubsub_ws_protocol_t) */
    ngx_int_t send_text(std::string &&text, bool now);
    /* a text frame shared with other connections, queued */
    ngx_int_t send_shared(std::shared_ptr<const std::string> text);
    void close(uint16_t code, std::string_view reason);
    bool closing() const { return finishing_ || close_sent_; }
    ngx_connection_t *connection() const { return c_; }

private:
    /* what the subscription delivers, to the methods above */
    ngx_pubsub_ws_sink_t                sink_;

public:
    /* the channels and all that subscribing to them implies */
    ngx_pubsub_subscription_t           subscription;
    /* multiplexed: the compound ids (the subscription's) */
    pubsub::Multiplexer                *mux = nullptr;
    /* what the client is owed from the handshake until start() */
    std::unique_ptr<pubsub::SubscriptionStart>  owed_;

    /*
     * what a publishing connection keeps of its request (see detach()):
     * subscribers have none
     */
    std::unique_ptr<ngx_pubsub_ws_pub_t>  pub_own;

    /* subprotocol and permessage-deflate: what frames we send */
    ws::MessageFramer                   framer;
    /* created when the first byte arrives: idle connections have none */
    std::unique_ptr<ws::FrameParser>    parser;

    /* NULL: nchan's protocol; deleted before the subscription */
    std::unique_ptr<ngx_pubsub_ws_protocol_t>  protocol;

    void schedule_detach();
    void schedule_flush();
    static void flush_dirty_handler(ngx_event_t *ev);

private:
    static void read_handler(ngx_http_request_t *r);
    static void write_handler(ngx_http_request_t *r);
    static void conn_read_handler(ngx_event_t *ev);
    static void conn_write_handler(ngx_event_t *ev);
    static void posted_handler(ngx_event_t *ev);
    static void timeout_handler(ngx_event_t *ev);
    static void ping_handler(ngx_event_t *ev);
    static void pool_cleanup(void *data);
    static void request_cleanup(void *data);
    static void upstream_done(ngx_http_request_t *r, void *data,
        ngx_pubsub_hook_result_t *res);

    /* r's connection, NULL when there is none or it is finishing */
    static ngx_pubsub_ws_t *of(ngx_http_request_t *r);

    /* runs f(); an exception finishes the connection */
    template <typename F>
    void guarded(ngx_log_t *log, F f)
    {
        if (ngx_pubsub_guard(log, [&f] {
                f();
                return NGX_OK;
            }) != NGX_OK)
        {
            finish();
        }
    }

    void detach();
    void detach_output();
    void shutdown_close();
    void read();
    void feed(const u_char *p, size_t len);
    void on_close(ws::Event &ev);
    void on_message(ws::Event &ev);
    void publish(std::string_view data, std::string_view ct);
    void queue_upstream(ws::Event &ev);
    void drain_upstream();
    void apply_upstream(ngx_pubsub_ws_in_t *in);
    void resume();
    void published(pubsub::PublishReply &&last, ngx_uint_t failed);

    void send_message(const pubsub::MessagePtr &msg, std::string_view id);
    void send_gap(const pubsub::MsgId &at, std::string_view id);
    void send_presence(const pubsub::PresenceEvent &ev, std::string_view id);
    void send_signal(const pubsub::MsgId &at, std::string_view id,
        std::string_view json);
    ngx_int_t enqueue(ws::Opcode op, bool rsv1, std::string &&extra,
        std::string_view payload, const pubsub::MessagePtr &msg,
        std::shared_ptr<const std::string> shared);
    ngx_int_t enqueue_plan(ws::FramePlan &plan,
        const pubsub::MessagePtr &msg);
    ngx_int_t send_data(ws::Opcode op, std::string &&extra,
        std::string_view payload, const pubsub::MessagePtr &msg);
    ngx_int_t send_control(ws::Opcode op, std::string_view payload);
    ngx_int_t send_pong(std::string_view payload);
    void link(ngx_pubsub_ws_out_t *o);
    ngx_int_t bound();
    void send_close(uint16_t code, std::string_view reason);
    ngx_int_t flush();
    bool flush_written();
    /* nothing queued, nor left in nginx's TLS write buffer */
    bool written() const {
        return head_ == nullptr && !(c_->buffered & NGX_LOWLEVEL_BUFFERED);
    }
    void drained();
    void read_early_input();

    /*
     * What runs from the next loop turn (finish, detach, resume), one
     * event for all three: posted_ says which (an idle connection carries
     * three events, not six).
     */
    enum : uint8_t {
        POST_FINISH = 1,
        POST_DETACH = 2,
        POST_RESUME = 4
    };
    void post(uint8_t what);
    void finish_now();

    ngx_event_t                         post_ev_;
    /* the subscriber timeout; once our close is out, the linger */
    ngx_event_t                         timeout_ev_;
    ngx_event_t                         ping_ev_;

    ngx_pool_cleanup_t                 *pool_cln_ = nullptr;
    ngx_http_cleanup_t                 *req_cln_ = nullptr;

    /* publisher upstream: the inbound queue and the input it holds back */
    ngx_pubsub_ws_in_t                 *in_head_ = nullptr;
    ngx_pubsub_ws_in_t                 *in_tail_ = nullptr;
    ngx_uint_t                          in_count_ = 0;
    std::string                         stash_;
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
    /* what the queue holds (items' cost), against max_pending */
    size_t                              pending_ = 0;
    /* its frames' bytes (for the log) */
    size_t                              unsent_ = 0;
    /* the queued pong, while none of it is written (send_pong()) */
    ngx_pubsub_ws_out_t                *pong_ = nullptr;

    /* cleared by the destructor: late store callbacks check it */
    std::shared_ptr<ngx_pubsub_ws_t *>  self_;

    bool                                started_ = false;
    bool                                finishing_ = false;
    bool                                close_sent_ = false;
    bool                                close_received_ = false;
    bool                                lingering_ = false;
    bool                                heard_ = true;   /* input since ping */
    bool                                flushing_ = false;
    uint8_t                             posted_ = 0;

    friend void ngx_pubsub_ws_exit_process(ngx_cycle_t *cycle);
};


/* ngx_pubsub_ws_output.cpp */
ngx_pubsub_ws_out_t *ngx_pubsub_ws_out_alloc();
void ngx_pubsub_ws_out_free(ngx_pubsub_ws_out_t *o);
size_t ngx_pubsub_ws_out_cost(const ngx_pubsub_ws_out_t *o);

/* ngx_pubsub_websocket.cpp */
ngx_int_t ngx_pubsub_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view text);
/*
 * the handshake of a connection that speaks `proto` (no location channels;
 * publisher_upstream: the request is kept for
 * pubsub_publisher_upstream_request)
 */
ngx_int_t ngx_pubsub_websocket_protocol_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_ws_protocol_pt proto,
    ngx_uint_t publisher_upstream);

/* ngx_pubsub_ws_subscribe.cpp */
ngx_int_t ngx_pubsub_ws_specs(ngx_http_request_t *r, ngx_pubsub_channels_t *ch,
    const pubsub::StartSpec &spec, const pubsub::ParsedMsgId &full,
    std::vector<pubsub::StartSpec> *specs, ngx_int_t *rc);


/* our deflate settings, also those of the shared pre-deflated copies */
static inline ws::DeflateOptions
ngx_pubsub_ws_deflate_options()
{
    ws::DeflateOptions  o;

    o.windowBits = NGX_PUBSUB_WS_WINDOW_BITS;
    o.memLevel = NGX_PUBSUB_WS_MEM_LEVEL;

    return o;
}


#endif /* _NGX_PUBSUB_WS_H_INCLUDED_ */
