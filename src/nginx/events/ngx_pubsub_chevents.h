/*
 * ngx_pubsub: channel events (pubsub_channel_events_channel_id,
 * pubsub_channel_event_string, $pubsub_channel_event).  See
 * docs/operations.md, "Channel events".
 *
 * An event is evaluated in the request that causes it (the meta channel id
 * and the event string, with $pubsub_channel_event and $pubsub_channel_id
 * set to the event and its channel), then queued; a posted event publishes
 * the queue to the location's store.  So nothing is published from inside
 * a store callback, a hub iteration or a destructor, and nothing can fail
 * or delay the request: problems are logged and counted.
 *
 * A subscriber's dequeue event comes when the request may be gone: it is
 * evaluated when the subscriber attaches, kept, and queued at the end.
 */

#ifndef _NGX_PUBSUB_CHEVENTS_H_INCLUDED_
#define _NGX_PUBSUB_CHEVENTS_H_INCLUDED_

#include "ngx_pubsub.h"

#include <memory>
#include <string>
#include <vector>

#include "pubsub/channel_events.h"


/* an event evaluated and ready to be queued (any number of times) */
struct ngx_pubsub_chev_t {
    ngx_pubsub_loc_conf_t  *plcf;      /* its store: ngx_pubsub_store_for() */
    std::string             key;       /* meta/<id> */
    std::string             body;
};


/* whether r's location emits events at all */
static inline ngx_uint_t
ngx_pubsub_chev_enabled(ngx_pubsub_loc_conf_t *plcf)
{
    return plcf->chevents_id != NULL;
}

/* the channel id of a channel key "group/id" (a group has no '/') */
static inline ngx_str_t
ngx_pubsub_chev_id_of(ngx_str_t key)
{
    ngx_str_t  id = key;
    u_char    *slash;

    slash = static_cast<u_char *>(ngx_strlchr(key.data, key.data + key.len,
                                              '/'));
    if (slash != NULL) {
        id.data = slash + 1;
        id.len = key.data + key.len - id.data;
    }

    return id;
}

/*
 * Evaluates event `ev` about channel (id, key) in r: nullptr when the
 * location has no channel events, the channel is a meta channel, or the
 * meta channel id is unusable (logged).  Never throws.
 */
std::unique_ptr<ngx_pubsub_chev_t> ngx_pubsub_chev_prepare(
    ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::ChannelEvent ev, ngx_str_t id, ngx_str_t key);

/* queues a copy of a prepared event (NULL: nothing) */
void ngx_pubsub_chev_emit(const ngx_pubsub_chev_t *ev);

/* prepares and queues at once (publish, delete) */
void ngx_pubsub_chev_now(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::ChannelEvent ev, ngx_str_t id, ngx_str_t key);

/*
 * A subscriber attached to channel (id, key) (ngx_pubsub_subscription.cpp):
 * queues subscriber_enqueue and returns the prepared subscriber_dequeue
 * (NULL: none), which ngx_pubsub_chev_close() queues and frees, exactly
 * once (safe from destructors and store callbacks).
 */
ngx_pubsub_chev_t *ngx_pubsub_chev_open(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t id, ngx_str_t key);
void ngx_pubsub_chev_close(ngx_pubsub_chev_t *dequeue);

/* while an event string is evaluated: the event's channel id */
ngx_uint_t ngx_pubsub_chev_channel_id(ngx_str_t *id);

/* directives and variables (ngx_pubsub_module.cpp) */
char *ngx_pubsub_chev_id_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_pubsub_chev_add_variables(ngx_conf_t *cf);
char *ngx_pubsub_chev_merge(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf);
ngx_int_t ngx_pubsub_chev_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_chev_exit_process(ngx_cycle_t *cycle);

/* counters for pubsub_status (ngx_pubsub_status.cpp) */
void ngx_pubsub_stats_chev(ngx_uint_t published, ngx_uint_t failed);

#endif /* _NGX_PUBSUB_CHEVENTS_H_INCLUDED_ */
