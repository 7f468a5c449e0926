/*
 * ngx_pubsub Pusher: the WebSocket protocol's connection object, shared by
 * ngx_pubsub_pusher_ws.cpp (handshake, keep-alive, subscriptions,
 * deliveries) and ngx_pubsub_pusher_ws_client.cpp (client events, the
 * publisher upstream hook, sign-in).
 */

#ifndef _NGX_PUBSUB_PUSHER_WS_H_INCLUDED_
#define _NGX_PUBSUB_PUSHER_WS_H_INCLUDED_

#include "ngx_pubsub_pusher.h"
#include "ngx_pubsub_ws.h"
#include "ngx_pubsub_hooks.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pubsub/pusher/auth.h"
#include "pubsub/pusher/protocol.h"


namespace pp = pubsub::pusher;


#define NGX_PUBSUB_PUSHER_PONG_TIMEOUT  30000   /* ms */
#define NGX_PUBSUB_PUSHER_S2U_PREFIX    "#server-to-user-"
/* the app's signed-in users: a presence channel clients cannot name */
#define NGX_PUBSUB_PUSHER_ONLINE        "#online"
/* channels one connection may be subscribed to */
#define NGX_PUBSUB_PUSHER_MAX_CHANNELS  1000


/* what the connection knows of one channel it subscribed to */
struct ngx_pubsub_pusher_chan_t {
    pp::ChannelKind   kind = pp::ChannelKind::Public;
    std::string       user_id;      /* presence: this connection's member */
    bool              ready = false;   /* subscription_succeeded sent */
    bool              counted = false; /* gets subscription counts */
    /* the store's subscribe is under way (Redis: after a read); an
     * unsubscribe meanwhile waits for it (cancel) */
    bool              adding = false;
    bool              cancel = false;
    uint64_t          gen = 0;      /* which subscribe (late answers) */
};


class ngx_pubsub_pusher_conn_t;


/* a client event waiting for pubsub_publisher_upstream_request */
struct ngx_pubsub_pusher_in_t {
    ngx_pubsub_pusher_in_t         *next = nullptr;
    ngx_pubsub_pusher_in_t         *prev = nullptr;
    ngx_pubsub_pusher_conn_t       *pc = nullptr;
    ngx_pubsub_hook_call_t         *call = nullptr;
    std::string                     channel;
    std::string                     event;
    std::string                     data;
    std::string                     origin;
};


class ngx_pubsub_pusher_conn_t final : public ngx_pubsub_ws_protocol_t {
public:
    ngx_pubsub_pusher_conn_t(ngx_pubsub_ws_t *w, ngx_http_request_t *r);
    ~ngx_pubsub_pusher_conn_t() override;

    ngx_int_t init(ngx_http_request_t *r);

    void start() override;
    void message(std::string &payload, bool binary) override;
    void input() override;
    void deliver(size_t channel, const pubsub::MessagePtr &msg) override;
    void presence(size_t channel, const pubsub::PresenceEvent &ev) override;
    void deleted(size_t channel) override;

    /* a pusher_internal:subscription_count frame of a channel it watches
     * (ngx_pubsub_pusher_features.cpp) */
    void subscription_count(const std::shared_ptr<const std::string> &frame);

private:
    void presence_event(const pubsub::PresenceEvent &ev);
    void publish(const std::string &channel, std::string_view event,
        std::string_view data, const std::string &origin);
    void client_event_webhook(const std::string &channel,
        std::string_view event, std::string_view data,
        const std::string &origin);
    void upstream(const std::string &channel, const std::string &event,
        std::string &&data, std::string &&origin);
    static void upstream_done(ngx_http_request_t *r, void *data,
        ngx_pubsub_hook_result_t *res);
    void unlink(ngx_pubsub_pusher_in_t *in);
    void online();
    void watchlist_event(std::string_view name, std::vector<std::string> ids);
    static void activity_handler(ngx_event_t *ev);
    static void pong_handler(ngx_event_t *ev);

    void send(std::string &&frame, bool now = true);
    void error(int code, std::string_view message);
    void subscription_error(const std::string &channel,
        std::string_view type, std::string_view message, int status);
    void subscribe(pp::ClientMessage &m);
    void subscribe_presence(const std::string &channel, uint64_t gen,
        pp::ChannelData &&cd);
    void add(const std::string &channel, uint64_t gen,
        std::shared_ptr<const pubsub::PresenceIdentity> ident,
        std::shared_ptr<std::vector<std::pair<std::string, std::string>>>
            members);
    void added(const std::string &channel, uint64_t gen,
        pubsub::SubscribeReply &&reply,
        const std::vector<std::pair<std::string, std::string>> *members);
    void unsubscribe(const std::string &channel);
    void forget(const std::string &channel);
    void cache_replay(const std::string &channel,
        const std::vector<pubsub::MessagePtr> &backlog);
    void client_event(pp::ClientMessage &m);
    void signin(pp::ClientMessage &m);
    std::string key_of(std::string_view channel) const;

    ngx_pubsub_ws_t                *w_;
    ngx_pubsub_loc_conf_t          *plcf_;
    ngx_pubsub_pusher_app_t        *app_ = nullptr;
    ngx_msec_t                      activity_ = 120000;

    /* a handshake refused with a Pusher code, said after the 101 */
    int                             refuse_code_ = 0;
    std::string                     refuse_msg_;

    std::string                     socket_id_;
    std::string                     user_id_;      /* signed in as */
    std::vector<std::string>        watchlist_;
    pubsub::PublishInput            pub_in_;       /* buffer length, ttl */

    std::unordered_map<std::string, ngx_pubsub_pusher_chan_t>  chans_;
    uint64_t                        gen_ = 0;

    /* client events this second */
    time_t                          rate_sec_ = 0;
    ngx_uint_t                      rate_n_ = 0;

    ngx_event_t                     activity_ev_;
    ngx_event_t                     pong_ev_;
    bool                            heard_ = true;

    /* client events waiting for the publisher upstream hook */
    ngx_pubsub_pusher_in_t         *in_ = nullptr;

    /* cleared by the destructor: late answers (Redis) check it */
    std::shared_ptr<bool>           alive_;
};


#endif /* _NGX_PUBSUB_PUSHER_WS_H_INCLUDED_ */
