/*
 * ngx_pubsub: the WebSocket subscription (ngx_pubsub_ws.h): everything a
 * subscription implies and its undoing - the store subscribe (one channel,
 * or several multiplexed), the subscribe/unsubscribe hook sessions, the
 * presence join/leave, the channel events and the pubsub_status count.
 * The handshake calls subscribe() before the 101 (store refusals get an
 * HTTP status) and subscribed() after it, start() calls
 * subscription_start(); stop() ends it all exactly once, whatever ends the
 * connection, and the destructor calls subscription_end().
 */

#include "ngx_pubsub_ws.h"


/*
 * Before the 101: NGX_OK with the backlog in *reply (one channel; a
 * multiplexed subscription keeps its own), or NGX_ERROR with the store's
 * refusal in *reply.
 */
ngx_int_t
ngx_pubsub_ws_t::subscribe(ngx_pubsub_channels_t *ch,
    const pubsub::StartSpec &spec, const std::vector<pubsub::StartSpec> &specs,
    pubsub::SubscribeReply *reply)
{
    pubsub::SubscribeRequest  req;

    if (mux) {
        return mux_subscribe(ch, specs, reply);
    }

    req.key = ngx_pubsub_sv(sub_key);
    req.start = spec;
    req.existingOnly = plcf->existing_only;

    ngx_pubsub_store_for(plcf)->subscribe(this, req,
        [reply](pubsub::SubscribeReply &&rep) {
            *reply = std::move(rep);
        });

    return (reply->status == pubsub::StoreResult::kOk) ? NGX_OK : NGX_ERROR;
}


/* subscribed, and the client will know (the 101 is out): the hooks */
void
ngx_pubsub_ws_t::subscribed(ngx_pubsub_channels_t *ch)
{
    if (mux) {
        mux_hooks_open(ch);
        return;
    }

    hook_session = ngx_pubsub_hook_subscribed(r, ch->id[0],
                                              NGX_PUBSUB_SUB_WEBSOCKET);
    ngx_pubsub_chev_subscribed(r, plcf, ch->id[0], ch->key[0],
                               &chev_pending);
}


/*
 * From start(), the connection taken over: the status count, presence,
 * then what the client missed (reply: a single channel's backlog).
 */
void
ngx_pubsub_ws_t::subscription_start(const pubsub::SubscribeReply *reply,
    const pubsub::MsgId &resume)
{
    if (subscriber) {
        count.start(NGX_PUBSUB_SUB_WEBSOCKET);   /* stop() ends it */
    }

    if (subscriber && attached()) {
        presence_ = ngx_pubsub_presence_join(r, plcf, sub_key);
    }

    if (mux) {
        mux_start();
    }

    if (reply) {
        if (reply->gap) {
            send_gap(resume, {});
        }

        for (const pubsub::MessagePtr &m : reply->backlog) {
            deliver(m);
        }
    }
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


/* the object goes: the subscription ends, presence is left */
void
ngx_pubsub_ws_t::subscription_end()
{
    stop();

    ngx_pubsub_presence_leave(presence_);
    presence_ = nullptr;

    for (pubsub::PresenceConn *&pc : mux_presence) {
        ngx_pubsub_presence_leave(pc);
        pc = nullptr;
    }
}


/* ----------------------------------------------------------- multiplexed */


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
