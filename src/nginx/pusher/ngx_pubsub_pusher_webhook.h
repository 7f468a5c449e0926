/*
 * ngx_pubsub Pusher: webhooks (pubsub_pusher_webhook, SPEC section 12,
 * docs/pusher-webhooks.md).  Events are batched per app in each worker
 * for NGX_PUBSUB_PUSHER_WEBHOOK_BATCH ms, signed, and delivered at least
 * once through the hooks' queue (ngx_pubsub_hooks_queue.h).
 */

#ifndef _NGX_PUBSUB_PUSHER_WEBHOOK_H_INCLUDED_
#define _NGX_PUBSUB_PUSHER_WEBHOOK_H_INCLUDED_

#include "ngx_pubsub_pusher.h"

#include <string_view>


#define NGX_PUBSUB_PUSHER_WEBHOOK_BATCH        250    /* ms */

#define NGX_PUBSUB_PUSHER_WH_OCCUPIED          0x01
#define NGX_PUBSUB_PUSHER_WH_VACATED           0x02
#define NGX_PUBSUB_PUSHER_WH_MEMBER_ADDED      0x04
#define NGX_PUBSUB_PUSHER_WH_MEMBER_REMOVED    0x08
#define NGX_PUBSUB_PUSHER_WH_CLIENT_EVENT      0x10
#define NGX_PUBSUB_PUSHER_WH_SUBSCRIPTION      0x20
#define NGX_PUBSUB_PUSHER_WH_CACHE_MISS        0x40
#define NGX_PUBSUB_PUSHER_WH_ALL               0x7f


/* one pubsub_pusher_webhook directive */
struct ngx_pubsub_pusher_webhook_conf_s {
    ngx_http_conf_ctx_t          *ctx;        /* where it is written */
    ngx_str_t                     uri;
    ngx_str_t                     args;
    ngx_uint_t                    events;     /* NGX_PUBSUB_PUSHER_WH_* */
};


/* the directive (ngx_pubsub_pusher_module.cpp's command table) */
char *ngx_pubsub_pusher_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Contract 5 (notes/pusher-contract.md): queues the webhook event `name`
 * (client_event, ...) of `app` with `json_fields`, the event's fields after
 * "name" as JSON object members without braces
 * ("channel":"…","event":"…","data":"…","socket_id":"…","user_id":"…").
 * NGX_DECLINED when the app has no webhook or it does not want `name`.
 */
ngx_int_t ngx_pubsub_pusher_webhook_event(ngx_pubsub_pusher_app_t *app,
    ngx_str_t *name, ngx_str_t *json_fields);

/*
 * Producers.  The subscriber count of channel `key` (a store key,
 * "pusher:<id>/<name>") went from `before` to `after` (a store's count
 * hook, pubsub::Store::CountHookFn): channel_occupied, channel_vacated,
 * subscription_count.  Whether member joins/leaves of channel `key` go to a
 * webhook (kPresenceOptWebhook), and a join/leave (member_added/removed).
 */
void ngx_pubsub_pusher_webhook_count(std::string_view key, uint64_t before,
    uint64_t after);
ngx_uint_t ngx_pubsub_pusher_webhook_wants_members(std::string_view key);
void ngx_pubsub_pusher_webhook_member(std::string_view key,
    std::string_view user_id, ngx_uint_t added);

/*
 * A connection subscribed to cache channel `channel` of `app`, which had no
 * cached event (cache_miss); coalesced: once per channel in a batch.
 */
void ngx_pubsub_pusher_webhook_cache_miss(ngx_pubsub_pusher_app_t *app,
    std::string_view channel);

/* whether the configuration has a webhook (stores get the count hook) */
ngx_uint_t ngx_pubsub_pusher_webhook_configured(void);

/* the worker's batches: flushed (queued) at exit */
void ngx_pubsub_pusher_webhook_exit_process(ngx_cycle_t *cycle);

#endif /* _NGX_PUBSUB_PUSHER_WEBHOOK_H_INCLUDED_ */
