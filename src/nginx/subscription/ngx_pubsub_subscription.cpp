/*
 * ngx_pubsub: the nginx side of a subscription (ngx_pubsub_subscription.h).
 */

#include "ngx_pubsub_subscription.h"

#include <string>

#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_engine.h"


ngx_pubsub_subscription_t::ngx_pubsub_subscription_t(ngx_http_request_t *req,
    ngx_pubsub_loc_conf_t *conf, ngx_uint_t t, pubsub::SubscriptionSink *sink)
    : core(this, sink), r(req), plcf(conf),
      transport(static_cast<uint32_t>(t))
{
}


ngx_pubsub_subscription_t::~ngx_pubsub_subscription_t()
{
    /* before the members the host's callbacks use are gone */
    core.close();
}


static ngx_str_t
ngx_pubsub_sub_str(const std::string &s)
{
    ngx_str_t  v;

    v.len = s.size();
    v.data = reinterpret_cast<u_char *>(const_cast<char *>(s.data()));

    return v;
}


ngx_uint_t
ngx_pubsub_subscribe_status(pubsub::StoreResult rc)
{
    /* existing channels only: a channel that does not exist is forbidden */
    return rc == pubsub::StoreResult::kNotFound
           ? NGX_HTTP_FORBIDDEN : ngx_pubsub_status_of(rc);
}


pubsub::SubscriptionStart
ngx_pubsub_subscription_t::subscribe(ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, bool poll, bool one_shot,
    size_t max_backlog)
{
    pubsub::SubscriptionOptions     opts;
    std::vector<pubsub::SubChannel> chans;

    opts.existingOnly = plcf->existing_only;
    opts.limits = ngx_pubsub_group_limits(plcf);
    opts.poll = poll;
    opts.oneShot = one_shot;
    opts.maxBacklog = max_backlog;
    core.setOptions(opts);

    chans.reserve(ch->n);

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        chans.push_back(pubsub::SubChannel{std::string(ngx_pubsub_sv(ch->id[i])),
                                           std::string(ngx_pubsub_sv(ch->key[i]))});
    }

    return core.subscribe(std::move(chans), specs);
}


ngx_int_t
ngx_pubsub_subscription_t::refuse(const pubsub::SubscriptionStart &start)
{
    return ngx_pubsub_respond_text(r, ngx_pubsub_subscribe_status(start.status),
                                   "text/plain", start.reason + "\n");
}


pubsub::Store *
ngx_pubsub_subscription_t::store()
{
    return ngx_pubsub_store_for(plcf);
}


/*
 * A channel added at run time: the engine makes subscribe() ready for it
 * (Redis reads its snapshot, with the location's group limits).
 */
void
ngx_pubsub_subscription_t::prepare(const std::vector<std::string> &keys,
    std::function<void()> ready)
{
    (void) plcf->engine->prepare_keys(plcf, keys, std::move(ready));
}


pubsub::SubscriptionHost::Handle
ngx_pubsub_subscription_t::hookOpen(const pubsub::SubChannel &ch,
    const std::string *poll_at)
{
    if (r == NULL) {
        return NULL;
    }

    if (poll_at != NULL) {
        return ngx_pubsub_hook_poll_begin_at(r, ngx_pubsub_sub_str(ch.id),
                                             ngx_pubsub_sub_str(ch.key),
                                             transport, *poll_at);
    }

    return ngx_pubsub_hook_subscribed(r, ngx_pubsub_sub_str(ch.id), transport);
}


void
ngx_pubsub_subscription_t::hookClose(Handle h, const std::string *poll_next,
    bool deleted)
{
    auto  *s = static_cast<ngx_pubsub_hook_session_t *>(h);

    if (s == NULL) {
        return;
    }

    if (poll_next != NULL) {
        ngx_pubsub_hook_poll_end_at(s, *poll_next, deleted ? 1 : 0);
        return;
    }

    ngx_pubsub_hook_unsubscribed(s);
}


pubsub::SubscriptionHost::Handle
ngx_pubsub_subscription_t::presenceJoin(const pubsub::SubChannel &ch)
{
    if (ch.presence) {
        /* the protocol names the member per channel (Pusher) */
        return ngx_pubsub_presence_join_as(plcf, ngx_pubsub_sub_str(ch.key),
                                           ch.presence->id,
                                           ch.presence->info, 1, 0,
                                           ngx_cycle->log);
    }

    if (r == NULL) {
        return NULL;
    }

    return ngx_pubsub_presence_join(r, plcf, ngx_pubsub_sub_str(ch.key));
}


void
ngx_pubsub_subscription_t::presenceLeave(Handle h)
{
    ngx_pubsub_presence_leave(static_cast<pubsub::PresenceConn *>(h));
}


pubsub::SubscriptionHost::Handle
ngx_pubsub_subscription_t::eventsOpen(const pubsub::SubChannel &ch)
{
    if (r == NULL) {
        return NULL;
    }

    return ngx_pubsub_chev_open(r, plcf, ngx_pubsub_sub_str(ch.id),
                                ngx_pubsub_sub_str(ch.key));
}


void
ngx_pubsub_subscription_t::eventsClose(Handle h)
{
    ngx_pubsub_chev_close(static_cast<ngx_pubsub_chev_t *>(h));
}


void
ngx_pubsub_subscription_t::countStart()
{
    count_.start(transport);
}


void
ngx_pubsub_subscription_t::countEnd()
{
    count_.end();
}
