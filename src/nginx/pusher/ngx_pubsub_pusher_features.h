/*
 * ngx_pubsub Pusher: pushed subscription counts
 * (pusher_internal:subscription_count, docs/pusher.md).  The core's side
 * (framing, the throttle) is pubsub/pusher/features.h.
 *
 * Producer: the stores' count hook, in the one worker that made a change
 * (memory: under the zone's lock; Redis: the count script), throttles
 * per channel, reads the channel's count from the store when a channel is
 * due, and publishes the app's due counts as one transient message to the
 * app group's internal channel "#subscription_count".
 *
 * Receivers: each worker with Pusher connections that want counts holds
 * one store subscriber of that channel per store and app, and hands each
 * count to its own connections subscribed to the channel (a registry by
 * store key), as one shared frame.
 */

#ifndef _NGX_PUBSUB_PUSHER_FEATURES_H_INCLUDED_
#define _NGX_PUBSUB_PUSHER_FEATURES_H_INCLUDED_

#include "ngx_pubsub_pusher.h"

#include <memory>
#include <string>
#include <string_view>

#include "pubsub/store.h"


class ngx_pubsub_pusher_conn_t;


/* whether the stores need a count hook (webhooks, or an app counting) */
ngx_uint_t ngx_pubsub_pusher_count_hook_wanted(void);
/* the count hook of `store` (webhooks and subscription counts) */
pubsub::Store::CountHookFn ngx_pubsub_pusher_count_hook(
    pubsub::Store *store);

/*
 * Connection `pc` (a location with `plcf`) wants the counts of channel
 * `key` (store key) until it unwatches it.  NGX_ERROR: no memory.
 */
ngx_int_t ngx_pubsub_pusher_counts_watch(ngx_pubsub_pusher_conn_t *pc,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_pusher_app_t *app,
    const std::string &key);
void ngx_pubsub_pusher_counts_unwatch(ngx_pubsub_pusher_conn_t *pc,
    const std::string &key);

void ngx_pubsub_pusher_features_exit_process(ngx_cycle_t *cycle);

#endif /* _NGX_PUBSUB_PUSHER_FEATURES_H_INCLUDED_ */
