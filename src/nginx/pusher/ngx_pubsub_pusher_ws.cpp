/*
 * ngx_pubsub Pusher: the WebSocket endpoint (pubsub_pusher, SPEC section
 * 12, docs/pusher.md).  The connection is the WebSocket transport's
 * (handshake, frames, output queue, control frames, the subscription's
 * life); this is the protocol it speaks (ngx_pubsub_ws_protocol_t):
 * connection_established, ping/pong and the activity timeout,
 * subscribe/unsubscribe with per-channel auth and presence, client events,
 * sign-in and the server-to-user channel.
 *
 * A Pusher channel <name> of app <id> is the store key "pusher:<id>/<name>"
 * (contract 1); a message's event name is the Pusher event, its data the
 * exact string sent (contract 2); its origin names the socket a delivery
 * skips and, for client events on presence channels, the sender's user id
 * (contract 3, pubsub/pusher/origin.h).
 */

#include "ngx_pubsub_pusher_ws.h"
#include "ngx_pubsub_pusher_features.h"
#include "ngx_pubsub_pusher_webhook.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_presence.h"

#include "pubsub/pusher/features.h"
#include "pubsub/pusher/origin.h"


/*
 * The frame of the message delivered last, shared by the connections of
 * the worker it goes to: a fan-out hands one message to every local
 * subscriber in a row, so one frame is built per message and channel.
 * The message is held so that its address is not reused meanwhile.
 */
struct ngx_pubsub_pusher_frame_t {
    pubsub::MessagePtr                  msg;
    std::string                         channel;
    std::string                         user;
    std::shared_ptr<const std::string>  frame;
};

static ngx_pubsub_pusher_frame_t  *ngx_pubsub_pusher_last_frame;


/* socket ids: "<random per process>.<counter>" (^\d+\.\d+$) */
static uint64_t  ngx_pubsub_pusher_sid_prefix;
static uint64_t  ngx_pubsub_pusher_sid_next;


static std::string
ngx_pubsub_pusher_socket_id()
{
    if (ngx_pubsub_pusher_sid_prefix == 0) {
        /* workers and instances differ: pid, time and nginx's random */
        uint64_t  x = (static_cast<uint64_t>(ngx_random()) << 20)
                      ^ (static_cast<uint64_t>(ngx_pid) << 7)
                      ^ static_cast<uint64_t>(ngx_time())
                      ^ static_cast<uint64_t>(ngx_random());

        ngx_pubsub_pusher_sid_prefix = 1 + x % 999999999;
        ngx_pubsub_pusher_sid_next = 1 + static_cast<uint64_t>(ngx_random())
                                         % 1000000;
    }

    return std::to_string(ngx_pubsub_pusher_sid_prefix) + "."
           + std::to_string(ngx_pubsub_pusher_sid_next++);
}


ngx_pubsub_pusher_conn_t::ngx_pubsub_pusher_conn_t(ngx_pubsub_ws_t *w,
    ngx_http_request_t *r)
    : w_(w), plcf_(w->plcf), alive_(std::make_shared<bool>(true))
{
    (void) r;

    ngx_memzero(&activity_ev_, sizeof(ngx_event_t));
    ngx_memzero(&pong_ev_, sizeof(ngx_event_t));

    activity_ev_.handler = activity_handler;
    pong_ev_.handler = pong_handler;

    for (ngx_event_t *ev : { &activity_ev_, &pong_ev_ }) {
        ev->data = this;
        ev->log = w->connection()->log;
        ev->cancelable = 1;
    }
}


ngx_pubsub_pusher_conn_t::~ngx_pubsub_pusher_conn_t()
{
    *alive_ = false;

    /* no more subscription counts */
    for (const auto &c : chans_) {
        if (c.second.counted) {
            ngx_pubsub_pusher_counts_unwatch(this, key_of(c.first));
        }
    }

    /* answers still to come are not wanted any more */
    while (in_) {
        ngx_pubsub_pusher_in_t *in = in_;
        in_ = in->next;
        ngx_pubsub_hook_cancel(in->call);
        delete in;
    }

    for (ngx_event_t *ev : { &activity_ev_, &pong_ev_ }) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
    }
}


/* the app, the protocol version and what publishing needs: from r */
ngx_int_t
ngx_pubsub_pusher_conn_t::init(ngx_http_request_t *r)
{
    ngx_str_t                      key, proto;
    ngx_pubsub_pusher_loc_conf_t  *lcf;
    u_char                        *p, *last;

    lcf = static_cast<ngx_pubsub_pusher_loc_conf_t *>(
              ngx_http_get_module_loc_conf(r, ngx_pubsub_pusher_module));
    activity_ = lcf->activity_timeout;

    /* .../app/<key> */
    key.len = 0;
    key.data = NULL;
    last = r->uri.data + r->uri.len;

    for (p = last; p > r->uri.data + 4; p--) {
        if (ngx_strncmp(p - 5, "/app/", 5) == 0) {
            key.data = p;
            key.len = ngx_strlchr(p, last, '/') ? ngx_strlchr(p, last, '/') - p
                                                 : last - p;
            break;
        }
    }

    if (key.len) {
        app_ = ngx_pubsub_pusher_app_by_key(r, &key);
    }

    if (app_ == NULL) {
        refuse_code_ = 4001;
        refuse_msg_ = "App key " + std::string(ngx_pubsub_sv(key))
                      + " not in this cluster";
        return NGX_OK;
    }

    if (ngx_http_arg(r, (u_char *) "protocol", 8, &proto) != NGX_OK
        || proto.len != 1 || proto.data[0] != '7')
    {
        refuse_code_ = 4007;
        refuse_msg_ = "Unsupported protocol version";
        return NGX_OK;
    }

    if (ngx_pubsub_publish_params(r, plcf_, &pub_in_) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the request's event name is not ours: each event names itself */
    pub_in_.eventName = {};

    return NGX_OK;
}


static ngx_pubsub_ws_protocol_t *
ngx_pubsub_pusher_conn_create(ngx_pubsub_ws_t *w, ngx_http_request_t *r)
{
    ngx_pubsub_pusher_conn_t  *pc;

    pc = new (std::nothrow) ngx_pubsub_pusher_conn_t(w, r);
    if (pc == NULL) {
        return NULL;
    }

    if (pc->init(r) != NGX_OK) {
        delete pc;
        return NULL;
    }

    return pc;
}


ngx_int_t
ngx_pubsub_pusher_ws_handler(ngx_http_request_t *r)
{
    return ngx_pubsub_guard(r->connection->log, [r] {
        ngx_pubsub_loc_conf_t *plcf = static_cast<ngx_pubsub_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_pubsub_module));

        if (r->method != NGX_HTTP_GET || !ngx_pubsub_is_websocket(r)) {
            ngx_http_discard_request_body(r);
            return ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST,
                       "text/plain",
                       "Pusher: a WebSocket handshake is expected.\n");
        }

        /* client events through the hook: the request is kept for it */
        return ngx_pubsub_websocket_protocol_handler(r, plcf,
                   ngx_pubsub_pusher_conn_create,
                   ngx_pubsub_hook_has_upstream(r));
    });
}


/* ----------------------------------------------------------- the wire */


void
ngx_pubsub_pusher_conn_t::send(std::string &&frame, bool now)
{
    (void) w_->send_text(std::move(frame), now);
}


void
ngx_pubsub_pusher_conn_t::error(int code, std::string_view message)
{
    send(pp::errorFrame(code, message));
}


void
ngx_pubsub_pusher_conn_t::subscription_error(const std::string &channel,
    std::string_view type, std::string_view message, int status)
{
    send(pp::subscriptionErrorFrame(channel, type, message, status));
}


std::string
ngx_pubsub_pusher_conn_t::key_of(std::string_view channel) const
{
    std::string  key(ngx_pubsub_sv(app_->group));

    key += '/';
    key += channel;

    return key;
}


void
ngx_pubsub_pusher_conn_t::start()
{
    std::string  data;

    if (refuse_code_) {
        ngx_log_error(NGX_LOG_INFO, w_->connection()->log, 0,
                      "pubsub: pusher: %s", refuse_msg_.c_str());
        error(refuse_code_, refuse_msg_);
        w_->close(static_cast<uint16_t>(refuse_code_), refuse_msg_);
        return;
    }

    socket_id_ = ngx_pubsub_pusher_socket_id();

    data = "{\"socket_id\":\"" + socket_id_ + "\",\"activity_timeout\":"
           + std::to_string(activity_ / 1000) + "}";

    send(pp::serverFrame("pusher:connection_established", {}, data));

    if (!w_->closing()) {
        ngx_add_timer(&activity_ev_, activity_);
    }
}


/* anything from the client: it is alive */
void
ngx_pubsub_pusher_conn_t::input()
{
    heard_ = true;

    if (pong_ev_.timer_set) {
        ngx_del_timer(&pong_ev_);
    }

    if (!activity_ev_.timer_set && !w_->closing() && !socket_id_.empty()) {
        ngx_add_timer(&activity_ev_, activity_);
    }
}


/* activity_timeout of silence: a pusher:ping, answered within 30 s */
void
ngx_pubsub_pusher_conn_t::activity_handler(ngx_event_t *ev)
{
    auto  *pc = static_cast<ngx_pubsub_pusher_conn_t *>(ev->data);

    if (pc->w_->closing()) {
        return;
    }

    if (pc->heard_) {
        pc->heard_ = false;
        ngx_add_timer(ev, pc->activity_);
        return;
    }

    if (ngx_pubsub_guard(ev->log, [pc] {
            pc->send(pp::serverFrame("pusher:ping", {}, "{}"));
            return NGX_OK;
        }) != NGX_OK)
    {
        pc->w_->finish();
        return;
    }

    if (!pc->w_->closing()) {
        ngx_add_timer(&pc->pong_ev_, NGX_PUBSUB_PUSHER_PONG_TIMEOUT);
    }
}


void
ngx_pubsub_pusher_conn_t::pong_handler(ngx_event_t *ev)
{
    auto  *pc = static_cast<ngx_pubsub_pusher_conn_t *>(ev->data);

    if (pc->w_->closing()) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "pubsub: pusher: no pong within 30s, closing");

    (void) ngx_pubsub_guard(ev->log, [pc] {
        pc->w_->close(4201, "Pong reply not received");
        return NGX_OK;
    });
}


void
ngx_pubsub_pusher_conn_t::message(std::string &payload, bool binary)
{
    pp::ClientMessage  m;
    std::string        err;

    if (refuse_code_ || w_->closing()) {
        return;
    }

    if (binary) {
        error(0, "Binary frames are not supported");
        return;
    }

    if (!pp::parseClientMessage(payload, &m, &err)) {
        ngx_log_error(NGX_LOG_INFO, w_->connection()->log, 0,
                      "pubsub: pusher: %s", err.c_str());
        error(0, err);
        return;
    }

    if (m.event == "pusher:ping") {
        send(pp::serverFrame("pusher:pong", {}, "{}"));

    } else if (m.event == "pusher:pong") {
        /* input() saw it */

    } else if (m.event == "pusher:subscribe") {
        subscribe(m);

    } else if (m.event == "pusher:unsubscribe") {
        unsubscribe(m.channel);

    } else if (m.event == "pusher:signin") {
        signin(m);

    } else if (m.event.compare(0, 7, "client-") == 0) {
        client_event(m);

    } else {
        error(0, "Unsupported event: " + m.event);
    }
}


/* -------------------------------------------------------- subscribing */


void
ngx_pubsub_pusher_conn_t::subscribe(pp::ClientMessage &m)
{
    pp::ChannelKind   kind;
    pp::ChannelData   cd;
    std::string       err;
    const std::string &channel = m.channel;

    kind = pp::channelKind(channel);

    if (kind == pp::ChannelKind::Invalid) {
        subscription_error(channel, "InvalidChannel",
                           "Invalid channel name", 400);
        return;
    }

    if (kind == pp::ChannelKind::ServerToUser
        && (user_id_.empty()
            || channel != NGX_PUBSUB_PUSHER_S2U_PREFIX + user_id_))
    {
        subscription_error(channel, "AuthError",
                           "Sign in as this user to subscribe to " + channel,
                           403);
        return;
    }

    if (pp::needsAuth(kind)) {
        std::string_view data;

        if (kind == pp::ChannelKind::Presence) {
            data = m.channelData;
        }

        if (m.auth.empty()
            || !pp::checkChannelAuth(ngx_pubsub_sv(app_->key),
                                     ngx_pubsub_sv(app_->secret), socket_id_,
                                     channel, data, m.auth))
        {
            ngx_log_error(NGX_LOG_INFO, w_->connection()->log, 0,
                          "pubsub: pusher: invalid signature for \"%*s\"",
                          channel.size(), channel.data());
            subscription_error(channel, "AuthError",
                               "Invalid signature: expected HMAC SHA256 hex "
                               "digest of " + socket_id_ + ":" + channel
                               + (data.empty() ? "" : ":<channel_data>"),
                               401);
            return;
        }
    }

    if (kind == pp::ChannelKind::Presence
        && !pp::parseChannelData(m.channelData, &cd, &err))
    {
        bool size = err.find("longer") != std::string::npos
                    || err.find("larger") != std::string::npos;

        subscription_error(channel, size ? "LimitReached" : "AuthError", err,
                           size ? 413 : 400);
        return;
    }

    if (chans_.size() >= NGX_PUBSUB_PUSHER_MAX_CHANNELS
        && chans_.find(channel) == chans_.end())
    {
        subscription_error(channel, "LimitReached",
                           "Too many channels on one connection (at most "
                           + std::to_string(NGX_PUBSUB_PUSHER_MAX_CHANNELS)
                           + ")", 403);
        return;
    }

    ngx_pubsub_pusher_chan_t &st = chans_[channel];

    if (st.counted) {
        ngx_pubsub_pusher_counts_unwatch(this, key_of(channel));
        st.counted = false;
    }

    st.cancel = false;   /* subscribed again before the store answered */

    st.kind = kind;
    st.user_id = cd.userId;
    st.ready = false;
    st.gen = ++gen_;

    if (kind == pp::ChannelKind::Presence) {
        subscribe_presence(channel, st.gen, std::move(cd));
        return;
    }

    add(channel, st.gen, nullptr, nullptr);
}


/*
 * A presence channel: its members first (the limit, and the list that
 * subscription_succeeded carries), then the subscription with this
 * connection's member.
 */
void
ngx_pubsub_pusher_conn_t::subscribe_presence(const std::string &channel,
    uint64_t gen, pp::ChannelData &&cd)
{
    size_t  max, limit;

    max = app_->max_presence_members;
    limit = (max == 0 || max >= pubsub::PresenceRegistry::kMaxPage)
            ? pubsub::PresenceRegistry::kMaxPage : max + 1;

    auto ident = std::make_shared<pubsub::PresenceIdentity>();
    ident->id = std::move(cd.userId);
    ident->info = std::move(cd.userInfo);

    auto alive = alive_;
    std::string key = key_of(channel);

    plcf_->engine->presence_page(plcf_, key, limit, std::string(),
        [this, alive, channel, gen, ident, max](pubsub::StoreResult rc,
                                                pubsub::PresencePage &&page)
        {
            if (!*alive) {
                return;
            }

            auto it = chans_.find(channel);
            if (it == chans_.end() || it->second.gen != gen
                || w_->closing())
            {
                return;
            }

            try {
                auto members = std::make_shared<
                    std::vector<std::pair<std::string, std::string>>>();
                bool me = false;

                if (rc == pubsub::StoreResult::kOk) {
                    for (auto &mv : page.members) {
                        me = me || mv.id == ident->id;
                        members->emplace_back(std::move(mv.id),
                                              std::move(mv.info));
                    }
                }

                if (!me && max != 0 && members->size() >= max) {
                    if (it->second.adding) {
                        it->second.cancel = true;   /* an earlier add's */
                        it->second.ready = false;
                    } else {
                        chans_.erase(it);
                    }

                    subscription_error(channel, "LimitReached",
                                       "Presence channel is full: at most "
                                       + std::to_string(max) + " members",
                                       403);
                    return;
                }

                if (!me) {
                    members->emplace_back(ident->id, ident->info);
                }

                add(channel, gen, ident, members);

            } catch (...) {
                w_->finish();
            }
        });
}


void
ngx_pubsub_pusher_conn_t::add(const std::string &channel, uint64_t gen,
    std::shared_ptr<const pubsub::PresenceIdentity> ident,
    std::shared_ptr<std::vector<std::pair<std::string, std::string>>> members)
{
    pubsub::SubChannel  sc;
    pubsub::StartSpec   spec;

    sc.id = channel;
    sc.key = key_of(channel);
    sc.presence = std::move(ident);
    spec.kind = pubsub::StartSpec::kNewest;

    if (pp::isCacheChannel(channel)) {
        /* the newest messages: the cached event is among them */
        spec.kind = pubsub::StartSpec::kFromNewest;
        spec.n = pp::kCacheLookback;
    }

    auto alive = alive_;

    /*
     * The first add of the key reserves the subscription's slot until the
     * store answers; the channel is not removed before (unsubscribe waits:
     * a slot freed and taken again meanwhile would be subscribed twice).
     */
    bool first = w_->subscription.core.find(sc.key) == SIZE_MAX;

    if (first) {
        auto it = chans_.find(channel);
        if (it != chans_.end()) {
            it->second.adding = true;
        }
    }

    w_->subscription.core.add(std::move(sc), spec,
        [this, alive, channel, gen, members, first](size_t,
            pubsub::SubscribeReply &&reply)
        {
            if (!*alive) {
                return;
            }

            try {
                if (first) {
                    auto it = chans_.find(channel);

                    if (it != chans_.end() && it->second.adding) {
                        it->second.adding = false;

                        if (it->second.cancel) {
                            /* unsubscribed meanwhile */
                            unsubscribe(channel);
                            return;
                        }
                    }
                }

                added(channel, gen, std::move(reply), members.get());

            } catch (...) {
                w_->finish();
            }
        });
}


void
ngx_pubsub_pusher_conn_t::added(const std::string &channel, uint64_t gen,
    pubsub::SubscribeReply &&reply,
    const std::vector<std::pair<std::string, std::string>> *members)
{
    auto it = chans_.find(channel);

    if (it == chans_.end() || it->second.gen != gen || w_->closing()) {
        return;
    }

    if (reply.status != pubsub::StoreResult::kOk) {
        ngx_log_error(NGX_LOG_WARN, w_->connection()->log, 0,
                      "pubsub: pusher: subscribe to \"%*s\" refused: %s",
                      channel.size(), channel.data(), reply.reason.c_str());
        chans_.erase(it);
        (void) w_->subscription.core.remove(key_of(channel));
        subscription_error(channel,
                           reply.status == pubsub::StoreResult::kForbidden
                           ? "LimitReached" : "ServerError",
                           reply.reason,
                           static_cast<int>(
                               ngx_pubsub_subscribe_status(reply.status)));
        return;
    }

    it->second.ready = true;

    if (gen == 0) {
        return;   /* added by the sign-in: the client subscribes itself */
    }

    send(pp::serverFrame("pusher_internal:subscription_succeeded", channel,
                         members ? pp::presenceData(*members) : "{}"));

    if (pp::isCacheChannel(channel)) {
        cache_replay(channel, reply.backlog);
    }

    if (app_->subscription_count && !w_->closing()
        && (it->second.kind == pp::ChannelKind::Public
            || it->second.kind == pp::ChannelKind::Private
            || it->second.kind == pp::ChannelKind::PrivateEncrypted))
    {
        it->second.counted = ngx_pubsub_pusher_counts_watch(this, plcf_, app_,
                                                            key_of(channel))
                             == NGX_OK;
    }
}


/*
 * A cache channel: its cached event (the newest server event stored, at
 * most 30 minutes old) follows subscription_succeeded, else
 * pusher:cache_miss and the cache_miss webhook.
 */
void
ngx_pubsub_pusher_conn_t::cache_replay(const std::string &channel,
    const std::vector<pubsub::MessagePtr> &backlog)
{
    const pubsub::Message  *m;
    std::string_view        ev;

    m = pp::cachedEvent(backlog, ngx_time());

    if (m != nullptr) {
        ev = m->eventName();
        send(pp::serverFrame(ev.empty() ? std::string_view("message") : ev,
                             channel, m->data()));
        ngx_pubsub_stats_delivered(1);
        return;
    }

    send(pp::serverFrame("pusher:cache_miss", channel, "{}"));

    ngx_pubsub_pusher_webhook_cache_miss(app_, channel);
}


void
ngx_pubsub_pusher_conn_t::subscription_count(
    const std::shared_ptr<const std::string> &frame)
{
    if (w_->closing()) {
        return;
    }

    (void) w_->send_shared(frame);
}


void
ngx_pubsub_pusher_conn_t::unsubscribe(const std::string &channel)
{
    auto it = chans_.find(channel);

    if (it == chans_.end()) {
        return;
    }

    if (it->second.adding) {
        it->second.cancel = true;   /* once the store has answered */
        it->second.ready = false;
        return;
    }

    forget(channel);

    (void) w_->subscription.core.remove(key_of(channel));
}


/* the channel leaves chans_ (and the subscription counts' registry) */
void
ngx_pubsub_pusher_conn_t::forget(const std::string &channel)
{
    auto it = chans_.find(channel);

    if (it == chans_.end()) {
        return;
    }

    if (it->second.counted) {
        ngx_pubsub_pusher_counts_unwatch(this, key_of(channel));
    }

    chans_.erase(it);
}


/* ------------------------------------------------------------- events */


void
ngx_pubsub_pusher_conn_t::deliver(size_t channel,
    const pubsub::MessagePtr &msg)
{
    pp::Origin                 origin;
    std::string_view           ev, user, name;

    name = w_->subscription.core.id(channel);
    if (name.empty()) {
        return;
    }

    ev = msg->eventName();

    if (name.compare(0, sizeof(NGX_PUBSUB_PUSHER_S2U_PREFIX) - 1,
                     NGX_PUBSUB_PUSHER_S2U_PREFIX) == 0
        && ev == "pusher_internal:terminate")
    {
        /* contract 4: the API terminates this user's connections */
        w_->close(4009, "terminated");
        return;
    }

    /* never sent as they are */
    if (ev.compare(0, 7, "pusher:") == 0
        || ev.compare(0, 16, "pusher_internal:") == 0)
    {
        return;
    }

    if (pp::decodeOrigin(msg->origin(), &origin)) {
        if (origin.socketId == socket_id_) {
            return;   /* the sender's own client event, or the API's
                         socket_id */
        }

        if (pp::channelKind(name) == pp::ChannelKind::Presence
            && ev.compare(0, 7, "client-") == 0)
        {
            user = origin.userId;
        }
    }

    try {
        ngx_pubsub_pusher_frame_t *f = ngx_pubsub_pusher_last_frame;

        if (f == nullptr) {
            /* per worker, for its life */
            f = new ngx_pubsub_pusher_frame_t;
            ngx_pubsub_pusher_last_frame = f;
        }

        if (f->msg.get() != msg.get() || f->channel != name
            || f->user != user || !f->frame)
        {
            f->frame.reset();
            f->msg = msg;
            f->channel.assign(name);
            f->user.assign(user);
            f->frame = std::make_shared<const std::string>(
                           pp::serverFrame(ev.empty()
                                           ? std::string_view("message") : ev,
                                           name, msg->data(), user));
        }

        (void) w_->send_shared(f->frame);

    } catch (...) {
        w_->finish();
        return;
    }

    ngx_pubsub_stats_delivered(1);
}


void
ngx_pubsub_pusher_conn_t::presence(size_t channel,
    const pubsub::PresenceEvent &ev)
{
    (void) channel;

    if (ev.type != pubsub::PresenceEventType::kJoin
        && ev.type != pubsub::PresenceEventType::kLeave)
    {
        return;
    }

    try {
        presence_event(ev);

    } catch (...) {
        w_->finish();
    }
}


void
ngx_pubsub_pusher_conn_t::presence_event(const pubsub::PresenceEvent &ev)
{
    std::string name(ngx_pubsub_presence_channel_id(ev.channel));

    if (name == NGX_PUBSUB_PUSHER_ONLINE) {
        for (const auto &wid : watchlist_) {
            if (wid == ev.id && ev.id != user_id_) {
                watchlist_event(ev.type == pubsub::PresenceEventType::kJoin
                                ? "online" : "offline", { ev.id });
                break;
            }
        }

        return;
    }

    auto it = chans_.find(name);

    if (it == chans_.end() || it->second.kind != pp::ChannelKind::Presence
        || !it->second.ready)
    {
        return;
    }

    /* never about this connection's own member (it caused it) */
    if (ev.id == it->second.user_id || ev.id.empty()) {
        return;
    }

    if (ev.type == pubsub::PresenceEventType::kJoin) {
        send(pp::serverFrame("pusher_internal:member_added", name,
                             pp::memberAddedData(ev.id, ev.info)),
             false);

    } else {
        send(pp::serverFrame("pusher_internal:member_removed", name,
                             pp::memberRemovedData(ev.id)),
             false);
    }
}


void
ngx_pubsub_pusher_conn_t::deleted(size_t channel)
{
    std::string_view  name = w_->subscription.core.id(channel);

    /* the channel was deleted (publisher's DELETE): no more events */
    if (!name.empty()) {
        forget(std::string(name));
    }
}
