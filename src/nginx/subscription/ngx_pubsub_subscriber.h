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

#include <memory>
#include <new>
#include <string_view>
#include <vector>

#include "pubsub/multiplex.h"


/*
 * A subscription held by one HTTP request.  It lives in the request's pool
 * and is destroyed by the pool's cleanup, which also unsubscribes.  The
 * callbacks from the store (deliver, gap, channelDeleted) never finalize the
 * request directly: they schedule it (finish()), since the store may still
 * be iterating over its subscribers.
 */
class ngx_pubsub_http_sub_t : public pubsub::Subscriber,
                              public pubsub::MultiplexSink {
public:
    ngx_pubsub_http_sub_t(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf);
    ~ngx_pubsub_http_sub_t() override;

    using pubsub::Subscriber::deliver;
    using pubsub::Subscriber::gap;
    using pubsub::Subscriber::channelDeleted;

    /*
     * Multiplexed (mux made with this as its sink): by default a channel's
     * message, gap or deletion is handled like a single channel's, and its
     * presence events like the single channel's; transports that show ids
     * override deliver(channel, msg, id).
     */
    void deliver(size_t, const pubsub::MessagePtr &msg,
                 std::string_view) override { deliver(msg); }
    void gap(size_t) override { gap(); }
    void channelDeleted(size_t) override { channelDeleted(); }
    void channelPresence(size_t, const pubsub::PresenceEvent &ev) override
        { presenceEvent(ev); }

    /* registers the cleanup; NGX_ERROR when out of memory */
    ngx_int_t init(ngx_str_t key, ngx_uint_t transport);

    /* unsubscribes and finalizes the request with rc from a posted event */
    void finish(ngx_int_t rc);
    /* unsubscribes now */
    void stop();

    /* streaming output: queues data, flushes; NGX_ERROR finishes */
    ngx_int_t write(std::string_view a, std::string_view b = {},
                    std::string_view c = {});
    ngx_int_t write_last(std::string_view tail = {});

    void start_timers(ngx_uint_t ping);
    void reset_timeout();

    /*
     * Subscribes with spec and starts an open-ended 200 response of
     * content_type (kept by reference: pool memory), sends preamble, any
     * gap and backlog, and starts the timers (pings when ping is set).
     * Returns what the content handler returns: NGX_DONE once streaming,
     * otherwise a status or an already-sent error response's rc.
     */
    ngx_int_t start_stream(ngx_str_t id, const pubsub::StartSpec &spec,
                           ngx_str_t content_type, std::string_view preamble,
                           ngx_uint_t ping);
    /* the same for a multiplexed subscription (mux is made already) */
    ngx_int_t start_stream_multi(ngx_pubsub_channels_t *ch,
                                 const std::vector<pubsub::StartSpec> &specs,
                                 ngx_str_t content_type,
                                 std::string_view preamble, ngx_uint_t ping);

    /*
     * Multiplexed: one subscribe/unsubscribe hook session and one presence
     * join per channel of ch, ended by the destructor.  Call once
     * subscribed.  open_poll_channels() is the polling variant: sessions
     * continue or park at the compound position (poll_position()).
     */
    void open_channels(ngx_pubsub_channels_t *ch);
    void open_poll_channels(ngx_pubsub_channels_t *ch);
    /* polls: the sessions park at mux's current compound position */
    void poll_position();
    /* whether the subscription (any of its channels) is attached */
    bool live() const;

    virtual void on_timeout() = 0;
    virtual void on_ping() {}

    /* presence: join now (leave is in the destructor); events to send */
    void presence_join();
    void presenceEvent(const pubsub::PresenceEvent &ev) override;
    virtual void on_presence(const pubsub::PresenceEvent &ev,
                             const std::string &json) {}

    ngx_http_request_t      *r;
    ngx_pubsub_loc_conf_t   *plcf;
    ngx_str_t                key;
    ngx_uint_t               transport;
    ngx_uint_t               finishing;
    ngx_int_t                finish_rc;
    /* a multiplexed subscription: one adapter per channel */
    std::unique_ptr<pubsub::Multiplexer>  mux;

    /*
     * subscribe/unsubscribe hooks: the session ends in the destructor,
     * whatever freed the request; a polling session is parked until the
     * next poll asking for messages after hook_next.
     */
    ngx_pubsub_hook_session_t  *hook_session;
    ngx_uint_t               hook_poll;
    ngx_uint_t               hook_deleted;
    pubsub::MsgId            hook_next;

    pubsub::PresenceConn    *presence;

    /* multiplexed: per channel, in r->pool (open_channels()) */
    ngx_uint_t                   channel_n;
    ngx_pubsub_hook_session_t  **hook_sessions;
    pubsub::PresenceConn       **presences;
    ngx_str_t                    hook_next_pos;

    /* channel events: the dequeues to send when the subscriber goes */
    ngx_pubsub_chev_list_t   chev_pending;
    ngx_uint_t               chev_done;

    /* pubsub_status: counted while subscribed (stop() ends it) */
    ngx_pubsub_sub_count_t   count;

private:
    ngx_int_t stream_header(ngx_str_t content_type);
    ngx_int_t stream_preamble(std::string_view preamble);

    static void cleanup(void *data);
    static void finish_handler(ngx_event_t *ev);
    static void timeout_handler(ngx_event_t *ev);
    static void ping_handler(ngx_event_t *ev);
    static void write_handler(ngx_http_request_t *r);
    ngx_int_t flush(ngx_chain_t *in);

    ngx_event_t              finish_ev_;
    ngx_event_t              timeout_ev_;
    ngx_event_t              ping_ev_;
    ngx_chain_t             *free_;
    ngx_chain_t             *busy_;
    ngx_uint_t               ping_;
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
 * A transport's subscriber T placed in r's pool with its cleanup
 * registered; NULL when memory is exhausted.
 */
template <typename T>
static inline T *
ngx_pubsub_sub_create(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t key, ngx_uint_t transport)
{
    void  *mem;
    T     *sub;

    mem = ngx_palloc(r->pool, sizeof(T));
    if (mem == NULL) {
        return NULL;
    }

    sub = new (mem) T(r, plcf);

    if (sub->init(key, transport) != NGX_OK) {
        sub->~T();
        return NULL;
    }

    return sub;
}


/*
 * Reads the request's resume position: NGX_OK, or NGX_DECLINED after
 * answering (or failing) with *rc for the handler to return.
 */
ngx_int_t ngx_pubsub_resume_spec(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec, ngx_int_t *rc);
/* the same without answering a bad id: 1 when `spec` is where a
 * one-channel subscriber starts (ngx_pubsub_redis.cpp: no snapshot read
 * for a subscriber owed nothing) */
ngx_uint_t ngx_pubsub_resume_hint(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec);
/* the same, also giving the whole parsed id (every tag) when there is one */
ngx_int_t ngx_pubsub_resume_id(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec,
    pubsub::ParsedMsgId *full, ngx_int_t *rc);

/* Last-Modified + Etag of a compound (multiplexed) position */
ngx_int_t ngx_pubsub_set_compound_headers(ngx_http_request_t *r,
    const pubsub::Multiplexer &mux, size_t active);

/* Header values of a message id for HTTP responses */
ngx_int_t ngx_pubsub_set_msgid_headers(ngx_http_request_t *r,
    const pubsub::MsgId &id);

ngx_int_t ngx_pubsub_eventsource_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key,
    const pubsub::StartSpec &spec);
ngx_int_t ngx_pubsub_chunked_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key,
    const pubsub::StartSpec &spec);
ngx_int_t ngx_pubsub_multipart_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key,
    const pubsub::StartSpec &spec);
ngx_int_t ngx_pubsub_rawstream_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key,
    const pubsub::StartSpec &spec);

/* a random 32-character multipart boundary from [0-9A-Za-z] */
void ngx_pubsub_multipart_boundary(std::string *boundary);

ngx_int_t ngx_pubsub_longpoll_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key,
    const pubsub::StartSpec &spec, ngx_uint_t interval);

/* multiplexed: one StartSpec per channel */
ngx_int_t ngx_pubsub_eventsource_start_multi(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_chunked_start_multi(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_multipart_start_multi(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_rawstream_start_multi(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs);
ngx_int_t ngx_pubsub_longpoll_start_multi(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, ngx_uint_t interval);

/*
 * Subscribes every channel of sub->mux (made by the caller); fills the
 * backlogs and whether any channel has a gap.  On failure everything is
 * unsubscribed and the store's reply is returned.
 */
pubsub::SubscribeReply ngx_pubsub_subscribe_multi(ngx_pubsub_http_sub_t *sub,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs,
    bool one_shot, size_t max_backlog,
    std::vector<std::vector<pubsub::MessagePtr>> *backlogs, bool *gap);

#endif /* _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_ */
