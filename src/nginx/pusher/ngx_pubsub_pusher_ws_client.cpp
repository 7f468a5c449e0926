/*
 * ngx_pubsub Pusher: what a client sends besides subscriptions (the
 * connection object: ngx_pubsub_pusher_ws.h): client events, published
 * directly or through pubsub_publisher_upstream_request, and pusher:signin
 * with its #server-to-user-<id> channel.
 */

#include "ngx_pubsub_pusher_ws.h"
#include "ngx_pubsub_pusher_webhook.h"
#include "ngx_pubsub_engine.h"

#include "pubsub/codec/json.h"
#include "pubsub/pusher/origin.h"


/* client-* events: relayed to the channel's other subscribers */
void
ngx_pubsub_pusher_conn_t::client_event(pp::ClientMessage &m)
{
    auto it = chans_.find(m.channel);

    if (it == chans_.end() || !it->second.ready) {
        error(0, "Client event rejected - not subscribed to channel "
                 + m.channel);
        return;
    }

    if (!pp::allowsClientEvents(it->second.kind)) {
        error(0, "Client event rejected - only supported on private and "
                 "presence channels");
        return;
    }

    if (m.data.size() > pp::kMaxEventSize) {
        error(0, "Client event rejected - payload larger than 10 KB");
        return;
    }

    if (rate_sec_ != ngx_time()) {
        rate_sec_ = ngx_time();
        rate_n_ = 0;
    }

    if (app_->max_client_events && ++rate_n_ > app_->max_client_events) {
        error(4301, "Client event rejected - rate limit exceeded");
        return;
    }

    std::string  origin = pp::encodeOrigin(
                     socket_id_,
                     it->second.kind == pp::ChannelKind::Presence
                     ? std::string_view(it->second.user_id)
                     : std::string_view());

    if (w_->upstream && w_->r) {
        upstream(m.channel, m.event, std::move(m.data), std::move(origin));
        return;
    }

    publish(m.channel, m.event, m.data, origin);
}


/*
 * pubsub_publisher_upstream_request, as for WebSocket publishers: 2xx
 * publishes the answer's body as the event's data, 204 drops the event,
 * 304 publishes it as sent, anything else refuses it (pusher:error).
 */
void
ngx_pubsub_pusher_conn_t::upstream(const std::string &channel,
    const std::string &event, std::string &&data, std::string &&origin)
{
    ngx_pubsub_channels_t   ch;
    ngx_str_t               body, ct, type;
    ngx_pubsub_pusher_in_t *in;

    in = new ngx_pubsub_pusher_in_t;
    in->pc = this;
    in->channel = channel;
    in->event = event;
    in->data = std::move(data);
    in->origin = std::move(origin);

    std::string key = key_of(channel);

    ngx_memzero(&ch, sizeof(ngx_pubsub_channels_t));
    ch.n = 1;
    ch.cap = 4;
    ch.id = ch.id_inline;
    ch.key = ch.key_inline;
    ch.id_inline[0].data = reinterpret_cast<u_char *>(&in->channel[0]);
    ch.id_inline[0].len = in->channel.size();
    ch.key_inline[0].data = reinterpret_cast<u_char *>(&key[0]);
    ch.key_inline[0].len = key.size();

    body.data = reinterpret_cast<u_char *>(&in->data[0]);
    body.len = in->data.size();
    ngx_str_set(&ct, "application/json");
    ngx_str_set(&type, "websocket");

    in->call = ngx_pubsub_hook_publish_upstream(w_->r, &ch, body, ct, type, 0,
                                                upstream_done, in);
    if (in->call == nullptr) {
        delete in;
        error(0, "Client event rejected - publisher upstream hook failed");
        return;
    }

    in->next = in_;
    if (in_) {
        in_->prev = in;
    }
    in_ = in;
}


void
ngx_pubsub_pusher_conn_t::unlink(ngx_pubsub_pusher_in_t *in)
{
    if (in->prev) {
        in->prev->next = in->next;
    } else {
        in_ = in->next;
    }

    if (in->next) {
        in->next->prev = in->prev;
    }
}


void
ngx_pubsub_pusher_conn_t::upstream_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    auto                      *in = static_cast<ngx_pubsub_pusher_in_t *>(data);
    ngx_pubsub_pusher_conn_t  *pc = in->pc;

    (void) r;

    pc->unlink(in);

    (void) ngx_pubsub_guard(pc->w_->connection()->log, [pc, in, res] {
        if (pc->w_->closing()) {
            return NGX_OK;
        }

        if (res->failed) {
            pc->error(0, "Client event rejected - publisher upstream hook "
                         "failed");

        } else if (res->status == NGX_HTTP_NO_CONTENT) {
            /* dropped */

        } else if (res->status == NGX_HTTP_NOT_MODIFIED) {
            pc->publish(in->channel, in->event, in->data, in->origin);

        } else if (res->status >= 200 && res->status < 300) {
            pc->publish(in->channel, in->event, ngx_pubsub_sv(res->body),
                        in->origin);

        } else {
            pc->error(0, "Client event rejected - " + std::to_string(
                             res->status) + " "
                         + std::string(ngx_pubsub_sv(res->body)));
        }

        return NGX_OK;
    });

    delete in;
}


void
ngx_pubsub_pusher_conn_t::publish(const std::string &channel,
    std::string_view event, std::string_view data, const std::string &origin)
{
    pubsub::PublishInput  in = pub_in_;

    in.data = data;
    in.eventName = event;
    in.origin = origin;

    pubsub::Store *store = ngx_pubsub_store_for(plcf_);
    if (store == nullptr) {
        error(0, "Client event rejected - the store is unavailable");
        return;
    }

    auto alive = alive_;

    client_event_webhook(channel, event, data, origin);

    store->publish(key_of(channel), in,
        [this, alive, channel](pubsub::PublishReply &&reply) {
            if (reply.status == pubsub::StoreResult::kOk || !*alive) {
                return;
            }

            ngx_log_error(NGX_LOG_WARN, w_->connection()->log, 0,
                          "pubsub: pusher: client event on \"%*s\" not "
                          "published: %s", channel.size(), channel.data(),
                          reply.reason.c_str());

            try {
                error(0, "Client event rejected - " + reply.reason);

            } catch (...) {
                w_->finish();
            }
        });
}


/*
 * The client_event webhook (SPEC section 12) of a client event this
 * connection publishes, when the app has a webhook that wants it.
 */
void
ngx_pubsub_pusher_conn_t::client_event_webhook(const std::string &channel,
    std::string_view event, std::string_view data, const std::string &origin)
{
    ngx_str_t               name = ngx_string("client_event"), fields;
    std::string             f;
    pubsub::pusher::Origin  o;

    if (!pubsub::pusher::decodeOrigin(origin, &o)) {
        o = pubsub::pusher::Origin();
    }

    try {
        f.append("\"channel\":");
        pubsub::appendJsonString(f, channel);
        f.append(",\"event\":");
        pubsub::appendJsonString(f, event);
        f.append(",\"data\":");
        pubsub::appendJsonString(f, data);
        f.append(",\"socket_id\":");
        pubsub::appendJsonString(f, o.socketId);

        if (!o.userId.empty()) {
            f.append(",\"user_id\":");
            pubsub::appendJsonString(f, o.userId);
        }

    } catch (const std::bad_alloc &) {
        ngx_log_error(NGX_LOG_ERR, w_->connection()->log, 0,
                      "pubsub: pusher: no memory for a client_event webhook");
        return;
    }

    fields.data = reinterpret_cast<u_char *>(const_cast<char *>(f.data()));
    fields.len = f.size();

    (void) ngx_pubsub_pusher_webhook_event(app_, &name, &fields);
}


/* pusher:signin: the user, and its #server-to-user-<id> channel */
void
ngx_pubsub_pusher_conn_t::signin(pp::ClientMessage &m)
{
    std::string  id, err, data;

    if (m.auth.empty()
        || !pp::checkSigninAuth(ngx_pubsub_sv(app_->key),
                                ngx_pubsub_sv(app_->secret), socket_id_,
                                m.userData, m.auth))
    {
        ngx_log_error(NGX_LOG_INFO, w_->connection()->log, 0,
                      "pubsub: pusher: invalid sign-in signature");
        error(4009, "Invalid signature for pusher:signin");
        return;
    }

    std::vector<std::string>  wl;

    if (!pp::parseUserData(m.userData, &id, &err, &wl)) {
        error(err.compare(0, 9, "watchlist") == 0 ? 4302 : 4009, err);
        return;
    }

    if (!user_id_.empty() && user_id_ != id) {
        unsubscribe(NGX_PUBSUB_PUSHER_S2U_PREFIX + user_id_);
        (void) w_->subscription.core.remove(
                   key_of(NGX_PUBSUB_PUSHER_ONLINE));
    }

    user_id_ = id;
    watchlist_ = std::move(wl);

    data = "{\"user_data\":";
    if (!pubsub::appendJsonString(data, m.userData)) {
        throw std::bad_alloc();
    }
    data += '}';

    send(pp::serverFrame("pusher:signin_success", {}, data));

    /* contract 4: what the API sends this user reaches the connection */
    std::string channel = NGX_PUBSUB_PUSHER_S2U_PREFIX + user_id_;

    ngx_pubsub_pusher_chan_t &st = chans_[channel];

    if (!st.ready) {
        st.kind = pp::ChannelKind::ServerToUser;
        st.gen = 0;
        add(channel, 0, nullptr, nullptr);
    }

    online();
}


/*
 * Watchlists: every signed-in connection is a member of the app's
 * "#online" presence channel (a name clients cannot subscribe to), whose
 * join/leave of a watched user are its online/offline events; who is
 * online when the connection signs in comes from the channel's members.
 */
void
ngx_pubsub_pusher_conn_t::online()
{
    pubsub::SubChannel  sc;
    pubsub::StartSpec   spec;

    std::string key = key_of(NGX_PUBSUB_PUSHER_ONLINE);
    auto alive = alive_;
    std::string me = user_id_;

    if (!watchlist_.empty()) {
        plcf_->engine->presence_page(plcf_, key,
            pubsub::PresenceRegistry::kMaxPage, std::string(),
            [this, alive, me](pubsub::StoreResult rc,
                              pubsub::PresencePage &&page)
            {
                if (!*alive || rc != pubsub::StoreResult::kOk
                    || me != user_id_ || w_->closing())
                {
                    return;
                }

                try {
                    std::vector<std::string> on;

                    for (const auto &mv : page.members) {
                        for (const auto &wid : watchlist_) {
                            if (mv.id == wid && mv.id != user_id_) {
                                on.push_back(mv.id);
                                break;
                            }
                        }
                    }

                    if (!on.empty()) {
                        watchlist_event("online", std::move(on));
                    }

                } catch (...) {
                    w_->finish();
                }
            });
    }

    auto ident = std::make_shared<pubsub::PresenceIdentity>();
    ident->id = user_id_;

    sc.id = NGX_PUBSUB_PUSHER_ONLINE;
    sc.key = std::move(key);
    sc.presence = std::move(ident);
    spec.kind = pubsub::StartSpec::kNewest;

    w_->subscription.core.add(std::move(sc), spec,
        [this, alive](size_t, pubsub::SubscribeReply &&reply) {
            if (*alive && reply.status != pubsub::StoreResult::kOk) {
                ngx_log_error(NGX_LOG_WARN, w_->connection()->log, 0,
                              "pubsub: pusher: the user is not counted "
                              "online: %s", reply.reason.c_str());
            }
        });
}


void
ngx_pubsub_pusher_conn_t::watchlist_event(std::string_view name,
    std::vector<std::string> ids)
{
    send(pp::serverFrame("pusher_internal:watchlist_events", {},
                         pp::watchlistEventsData(name, ids)),
         false);
}
