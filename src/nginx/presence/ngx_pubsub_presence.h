/*
 * ngx_pubsub: presence (docs/presence.md) - the shared-memory registry
 * (pubsub::PresenceRegistry) in the pubsub zone, joins and leaves of
 * subscriber connections, the per-worker timer that expires leave delays,
 * reads the zone's event ring for local subscribers and cleans up after
 * dead workers (ngx_pubsub_presence.cpp); the pubsub_presence_api location
 * (ngx_pubsub_presence_api.cpp).
 */

#ifndef _NGX_PUBSUB_PRESENCE_H_INCLUDED_
#define _NGX_PUBSUB_PRESENCE_H_INCLUDED_

#include "ngx_pubsub.h"

#include <string>

#include "pubsub/memory/presence.h"


ngx_int_t ngx_pubsub_presence_init_zone(ngx_slab_pool_t *shpool,
    pubsub::StoreRoot *root, ngx_log_t *log);
ngx_int_t ngx_pubsub_presence_init_process(ngx_cycle_t *cycle,
    ngx_slab_pool_t *shpool);
void ngx_pubsub_presence_exit_process(ngx_cycle_t *cycle);

/*
 * A subscriber connection of r joins channel `key` (pubsub_presence on):
 * identified by the token / authorize hook, pubsub_presence_id, or
 * anonymous.  Returns the handle to give to _leave() exactly once, or NULL
 * (presence off here, or out of shared memory: logged).
 */
pubsub::PresenceConn *ngx_pubsub_presence_join(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t key);
void ngx_pubsub_presence_leave(pubsub::PresenceConn *conn);
/*
 * Joins as the member `id` with `info` (raw JSON, checked by the caller),
 * whatever the location's pubsub_presence says: a protocol that names the
 * member per channel (Pusher's channel_data).  events: join/leave reach the
 * channel's subscribers; hook: the presence hook's index (0: none).
 */
pubsub::PresenceConn *ngx_pubsub_presence_join_as(ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t key, std::string_view id, std::string_view info,
    ngx_uint_t events, ngx_uint_t hook, ngx_log_t *log);

/* presence is up in this worker (else the API answers 503) */
ngx_uint_t ngx_pubsub_presence_available(void);

/* the zone's registry, read under its lock: the memory engine's answers to
 * the presence API (ngx_pubsub_memory_engine.cpp) */
pubsub::PresenceStats ngx_pubsub_presence_local_stats(std::string_view key);
pubsub::PresencePage ngx_pubsub_presence_local_page(std::string_view key,
    size_t limit, std::string_view cursor);
pubsub::PresenceUserState ngx_pubsub_presence_local_user(std::string_view id);

/* fires the presence hook of an event this instance made (Redis mode) */
void ngx_pubsub_presence_hook_event(const pubsub::PresenceEvent &ev);

/* the channel id clients know, from a "group/id" key */
std::string_view ngx_pubsub_presence_channel_id(std::string_view key);

/* this worker's hub (shm_store.cpp) */
pubsub::Hub *ngx_pubsub_local_hub(void);
/* wakes the worker in a process slot (ngx_pubsub_shm.cpp) */
void ngx_pubsub_shm_wake(uint32_t slot);
/* this worker was woken: reads the presence ring if it has news */
void ngx_pubsub_presence_wake(void);

#endif /* _NGX_PUBSUB_PRESENCE_H_INCLUDED_ */
