/*
 * ngx_pubsub: what every HTTP subscriber transport shares - the request's
 * resume position, the subscription's life (timers, cleanup, deferred
 * finalization) and a streaming writer with a bound on unsent data.
 */

#ifndef _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_
#define _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_

#include "ngx_pubsub.h"
#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_subscription.h"

#include <memory>
#include <new>
#include <string_view>
#include <vector>

#include "pubsub/multiplex.h"


/*
 * A subscriber held by one HTTP request: framing and I/O of a streaming or
 * polling transport around one ngx_pubsub_subscription_t, which does
 * everything subscribing implies.  A stream lives on the heap (it may
 * outlive the request), a poll in the request's pool; either is destroyed
 * by a cleanup of the request's pool, which ends the subscription.  The
 * callbacks of the subscription (deliver, gap, channelDeleted) never
 * finalize the request directly: they schedule it (finish()), since the
 * store may still be iterating over its subscribers.
 *
 * A stream (EventSource, chunked, multipart, raw stream) over HTTP/1.x
 * sheds its request once the header and what the client was owed are
 * written (detach(), as a WebSocket does after the 101): the request's
 * pool and the client's header buffers are freed, and the connection is
 * driven by this object alone, which writes the body's chunked coding
 * itself and closes the connection when the stream ends.  A request that
 * something else still needs (a body filter that rewrites the stream,
 * limit_conn's slot, limit_rate, trailers, subrequests) stays whole.
 */
class ngx_pubsub_http_sub_t {
public:
    ngx_pubsub_http_sub_t(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
                          ngx_uint_t transport);
    virtual ~ngx_pubsub_http_sub_t();

    /* what a one-channel subscription delivers */
    virtual void deliver(const pubsub::MessagePtr &msg) = 0;
    virtual void gap() = 0;
    virtual void channelDeleted() = 0;

    /*
     * Multiplexed: by default a channel's message, gap or deletion is
     * handled like a single channel's, and its presence events like the
     * single channel's; transports that show ids override
     * deliver(channel, msg, id).
     */
    virtual void deliver(size_t, const pubsub::MessagePtr &msg,
                         std::string_view) { deliver(msg); }
    virtual void gap(size_t) { gap(); }
    virtual void channelDeleted(size_t) { channelDeleted(); }
    void channelPresence(size_t, const pubsub::PresenceEvent &ev)
        { presenceEvent(ev); }

    /* registers the cleanup; NGX_ERROR when out of memory */
    ngx_int_t init();

    /*
     * Detaching: a transport copies out of r->pool what it still needs
     * (NGX_ERROR: the request stays).
     */
    virtual ngx_int_t on_detach() { return NGX_OK; }

    /* unsubscribes and finalizes the request with rc from a posted event */
    void finish(ngx_int_t rc);
    /* unsubscribes now (hooks and presence end with the request) */
    void stop();

    /* streaming output: queues data, flushes; NGX_ERROR finishes */
    ngx_int_t write(std::string_view a, std::string_view b = {},
                    std::string_view c = {});
    ngx_int_t write_last(std::string_view tail = {});

    void start_timers(ngx_uint_t ping);
    void reset_timeout();

    /*
     * Subscribes the channels of ch (several: multiplexed), each from its
     * spec, and starts an open-ended 200 response of content_type (kept by
     * reference: pool memory), sends preamble, any gap and backlog, and
     * starts the timers (pings when ping is set).  Returns what the content
     * handler returns: NGX_DONE once streaming, otherwise a status or an
     * already-sent error response's rc.
     */
    ngx_int_t start_stream(ngx_pubsub_channels_t *ch,
                           const std::vector<pubsub::StartSpec> &specs,
                           ngx_str_t content_type, std::string_view preamble,
                           ngx_uint_t ping);

    /* whether the subscription (any of its channels) is attached */
    bool live() const { return subscription.core.attached(); }

    virtual void on_timeout() = 0;
    virtual void on_ping() {}
    /*
     * nginx shuts down gracefully (reload, quit) and is about to close the
     * connection: end the response properly now, synchronously (a stream
     * as on a timeout).  See watch_shutdown().
     */
    virtual void on_shutdown() { on_timeout(); }

    /*
     * Marks the connection idle, so that a graceful shutdown closes it,
     * and has on_shutdown() run just before nginx closes it.  The request's
     * module ctx must be this subscriber.
     */
    void watch_shutdown();

    /* presence events to send (pubsub_presence_events) */
    void presenceEvent(const pubsub::PresenceEvent &ev);
    virtual void on_presence(const pubsub::PresenceEvent &ev,
                             const std::string &json) {}

    /* the request; NULL once the stream detached from it */
    ngx_http_request_t      *r;
    ngx_connection_t        *c;
    ngx_pubsub_loc_conf_t   *plcf;
    ngx_int_t                finish_rc;
    uint32_t                 transport;
    unsigned                 finishing:1;

private:
    /* what the subscription delivers, to the virtuals above */
    ngx_pubsub_sub_sink_t<ngx_pubsub_http_sub_t>  sink_;

public:
    /* the channels and all that subscribing to them implies */
    ngx_pubsub_subscription_t  subscription;
    /* multiplexed: the compound ids (owned by the subscription) */
    pubsub::Multiplexer     *mux;

private:
    ngx_int_t stream_header(ngx_str_t content_type);
    ngx_int_t stream_preamble(std::string_view preamble);

    static void cleanup(void *data);
    static void posted_handler(ngx_event_t *ev);
    static void timer_handler(ngx_event_t *ev);
    void arm_timer();
    static void write_handler(ngx_http_request_t *r);
    static void conn_read_handler(ngx_event_t *ev);
    ngx_int_t flush(ngx_chain_t *in);

    /* one posted event for a finish and a detach (finish wins) */
    enum : uint8_t {
        POST_FINISH = 1,
        POST_DETACH = 2
    };
    void post(uint8_t what);
    void finish_now();

    /* the request freed: ngx_pubsub_stream.cpp */
    struct out_t;
    void schedule_detach();
    bool detachable();
    void detach();
    ngx_int_t queue(std::string_view a, std::string_view b,
                    std::string_view c, bool chunk);
    ngx_int_t flush_detached();
    void free_output();
    void drained();
    void end_detached();
    static void detached_read_handler(ngx_event_t *ev);
    static void detached_write_handler(ngx_event_t *ev);

    ngx_event_t              post_ev_;
    /* the subscriber timeout and the pings (start_timers()) */
    ngx_event_t              timer_ev_;
    ngx_msec_t               timeout_at_;  /* 0: none */
    ngx_msec_t               ping_at_;     /* 0: none */
    /* attached: buffers of r->pool; detached: out_t items on the heap */
    union {
        ngx_chain_t         *free_;
        out_t               *out_head_;
    };
    union {
        ngx_chain_t         *busy_;        /* given to the output filter */
        out_t               *out_tail_;
    };
    ngx_chain_t             *busy_tail_;
    size_t                   held_;        /* what busy_ holds (flush()) */
    uint8_t                  posted_ = 0;
    unsigned                 chunked_:1;   /* detached: we chunk the body */
    unsigned                 ending_:1;    /* detached: the end is queued */
    unsigned                 detach_wanted_:1;   /* once all is written */

public:
    unsigned                 pooled_:1;    /* in r->pool, not on the heap */
};


/*
 * Watches the client for a close while the request waits.  A client that
 * sent its request and closed at once may have had its end of stream
 * consumed together with the request (edge-triggered epoll reports it only
 * once): look again from a posted event, or the request would wait for
 * ever (a long-poll sends nothing that could fail).
 */
static inline void
ngx_pubsub_watch_client(ngx_http_request_t *r)
{
    ngx_event_t  *rev = r->connection->read;

    r->read_event_handler = ngx_http_test_reading;

#if (NGX_HAVE_EPOLLRDHUP)
    if (rev->pending_eof) {
        ngx_post_event(rev, &ngx_posted_events);
        return;
    }
#endif

    if (rev->ready || rev->eof) {
        ngx_post_event(rev, &ngx_posted_events);
    }
}


/*
 * A transport's subscriber T with its cleanup registered in r's pool: on
 * the heap for a stream, which may outlive the request, in r's pool for a
 * poll (pooled), which never does; NULL when memory is exhausted.
 */
template <typename T>
static inline T *
ngx_pubsub_sub_create(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t transport, bool pooled = false)
{
    void  *mem;
    T     *sub;

    if (pooled) {
        mem = ngx_palloc(r->pool, sizeof(T));
        sub = mem ? new (mem) T(r, plcf, transport) : NULL;
    } else {
        sub = new (std::nothrow) T(r, plcf, transport);
    }

    if (sub == NULL) {
        return NULL;
    }

    sub->pooled_ = pooled;

    if (sub->init() != NGX_OK) {
        if (pooled) {
            sub->~T();
        } else {
            delete sub;
        }
        return NULL;
    }

    return sub;
}


/*
 * Before a request is freed early (a WebSocket after its 101, a stream
 * under way): its limit_conn slots move to the connection's pool, so that
 * they are held until the connection closes.  NGX_ERROR: out of memory.
 */
ngx_int_t ngx_pubsub_keep_conn_limits(ngx_http_request_t *r);

/* frees the client's header buffers (after the request is gone) */
void ngx_pubsub_free_header_buffers(ngx_connection_t *c,
    ngx_http_connection_t *hc);


/*
 * Reads the request's resume position: NGX_OK, or NGX_DECLINED after
 * answering (or failing) with *rc for the handler to return.
 */
ngx_int_t ngx_pubsub_resume_spec(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec, ngx_int_t *rc);
/* the same without answering a bad id: 1 when `spec` is where a
 * one-channel subscriber starts (ngx_pubsub_redis_engine.cpp: no snapshot read
 * for a subscriber owed nothing) */
ngx_uint_t ngx_pubsub_resume_hint(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec);
/* the same, also giving the whole parsed id (every tag) when there is one */
ngx_int_t ngx_pubsub_resume_id(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec,
    pubsub::ParsedMsgId *full, ngx_int_t *rc);

/* where each of the request's channels starts (from its resume id) */
ngx_int_t ngx_pubsub_subscriber_specs(ngx_http_request_t *r,
    ngx_pubsub_channels_t *ch, const pubsub::StartSpec &spec,
    const pubsub::ParsedMsgId &full, std::vector<pubsub::StartSpec> *specs,
    ngx_int_t *rc);

/* Last-Modified + Etag of a compound (multiplexed) position */
ngx_int_t ngx_pubsub_set_compound_headers(ngx_http_request_t *r,
    const pubsub::Multiplexer &mux, size_t active);

/* Header values of a message id for HTTP responses */
ngx_int_t ngx_pubsub_set_msgid_headers(ngx_http_request_t *r,
    const pubsub::MsgId &id);

/*
 * The transports: each subscribes the request's channels (one, or several:
 * multiplexed) from their start specs and answers the request.
 */
ngx_int_t ngx_pubsub_eventsource_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_chunked_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_multipart_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_rawstream_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_longpoll_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, ngx_uint_t interval);

/* chunked and raw stream: payloads, each followed by `separator` */
ngx_int_t ngx_pubsub_payload_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, ngx_uint_t transport,
    std::string_view separator);

/* a random 32-character multipart boundary from [0-9A-Za-z] */
void ngx_pubsub_multipart_boundary(std::string *boundary);

#endif /* _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_ */
