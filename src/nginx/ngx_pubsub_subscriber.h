/*
 * ngx_pubsub: what every HTTP subscriber transport shares - the request's
 * resume position, the subscription's life (timers, cleanup, deferred
 * finalization) and a streaming writer with a bound on unsent data.
 */

#ifndef _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_
#define _NGX_PUBSUB_SUBSCRIBER_H_INCLUDED_

#include "ngx_pubsub.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_presence.h"

#include <memory>
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
class ngx_pubsub_http_sub_t : public pubsub::Subscriber {
public:
    ngx_pubsub_http_sub_t(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf);
    ~ngx_pubsub_http_sub_t() override;

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

private:
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
 * Reads the request's resume position: NGX_OK, or NGX_DECLINED after
 * answering (or failing) with *rc for the handler to return.
 */
ngx_int_t ngx_pubsub_resume_spec(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec, ngx_int_t *rc);
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
