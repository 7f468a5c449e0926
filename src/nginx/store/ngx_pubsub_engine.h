/*
 * ngx_pubsub: the store seam - one engine table per location.
 *
 * A location's engine is chosen once, at configuration time
 * (pubsub_redis_pass picks Redis, anything else is the memory engine), and
 * kept in plcf->engine with the engine's own data in plcf->engine_conf.
 * Every caller goes through the table: no glue file outside src/nginx/store
 * and src/redis asks which engine a location has.
 *
 * What completes when (include/pubsub/store.h has the store's side):
 *
 * - prepare() runs `handler(r)` exactly once, once subscribe() can answer
 *   for every channel r subscribes to.  Memory: at once, before prepare()
 *   returns, which returns the handler's result.  Redis: after reading the
 *   channels' snapshots - usually later, from the event loop (prepare()
 *   returns NGX_DONE and the engine finalizes r with the handler's result),
 *   or at once when Redis cannot be asked.  prepare_keys() is the same for
 *   channels a live connection adds: `done` runs before it returns
 *   (NGX_OK) or later (NGX_AGAIN), and the caller must check that what
 *   `done` refers to still exists.
 * - While the handler (or `done`) runs, store->subscribe() for those
 *   channels calls its callback before it returns, in both engines: a
 *   caller may read the reply right after the call.  Outside it, the memory
 *   engine still answers at once; Redis answers kUnavailable at once (as
 *   it does for a channel id the handler evaluates differently from
 *   prepare, e.g. one built from $msec).
 * - info() and the presence queries call their callback exactly once:
 *   before returning (memory; Redis when it fails at once) or later from
 *   the event loop (Redis).
 */

#ifndef _NGX_PUBSUB_ENGINE_H_INCLUDED_
#define _NGX_PUBSUB_ENGINE_H_INCLUDED_

#include "ngx_pubsub.h"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/memory/presence.h"


typedef ngx_int_t (*ngx_pubsub_prepared_pt)(ngx_http_request_t *r);

typedef std::function<void(pubsub::StoreResult,
                           const pubsub::PresenceStats &)>
    ngx_pubsub_presence_stats_cb;
typedef std::function<void(pubsub::StoreResult, pubsub::PresencePage &&)>
    ngx_pubsub_presence_page_cb;
typedef std::function<void(pubsub::StoreResult, pubsub::PresenceUserState &&)>
    ngx_pubsub_presence_user_cb;
typedef std::function<void(pubsub::StoreResult, pubsub::OccupiedList &&)>
    ngx_pubsub_occupied_cb;


struct ngx_pubsub_engine_s {
    const char  *name;                /* "memory", "redis": for logs */

    /*
     * Configuration: after the http{} block (NULL: nothing to check), and
     * after each location using the engine is merged (NULL: nothing).
     */
    char      *(*check_conf)(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf);
    char      *(*merge_loc_conf)(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *plcf);
    /*
     * A location serves clients from the engine (NULL: nothing to do).
     * Redis connects in workers only to the upstreams that some location
     * uses this way.
     */
    void       (*use)(ngx_pubsub_loc_conf_t *plcf);

    /* per worker, for every engine (unused ones do nothing) */
    ngx_int_t  (*init_process)(ngx_cycle_t *cycle);
    void       (*exit_process)(ngx_cycle_t *cycle);

    /* the location's store; NULL when it is not up in this process */
    pubsub::Store  *(*store)(ngx_pubsub_loc_conf_t *plcf);

    /* see above: every request of a location goes through prepare() */
    ngx_int_t  (*prepare)(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
                          ngx_pubsub_prepared_pt handler);
    ngx_int_t  (*prepare_keys)(ngx_pubsub_loc_conf_t *plcf,
                               const std::vector<std::string> &keys,
                               std::function<void()> done);

    /* channel info, presence included */
    void       (*info)(ngx_pubsub_loc_conf_t *plcf, std::string_view key,
                       pubsub::Store::InfoCallback cb);

    /*
     * pubsub_subscriber_info: asks every subscriber of `key` (every worker,
     * every instance) to publish its report on `reply_key`
     * (pubsub::Subscriber::infoRequest).  NGX_ERROR: not sent.
     */
    ngx_int_t  (*ask_info)(ngx_pubsub_loc_conf_t *plcf, std::string_view key,
                           std::string_view reply_key);

    /*
     * Presence.  presence_tag: what the registry records with a channel's
     * members - 0 when this instance's registry is the whole truth (memory),
     * else the engine's number of where they are merged (Redis: the
     * upstream's index + 1).  The queries of the presence API.
     */
    ngx_uint_t (*presence_tag)(ngx_pubsub_loc_conf_t *plcf);
    void       (*presence_stats)(ngx_pubsub_loc_conf_t *plcf,
                                 std::string_view key,
                                 ngx_pubsub_presence_stats_cb cb);
    void       (*presence_page)(ngx_pubsub_loc_conf_t *plcf,
                                std::string_view key, size_t limit,
                                const std::string &cursor,
                                ngx_pubsub_presence_page_cb cb);
    void       (*presence_user)(ngx_pubsub_loc_conf_t *plcf,
                                const std::string &id,
                                ngx_pubsub_presence_user_cb cb);

    /*
     * Instance-wide presence of engines that merge it elsewhere (NULL:
     * none): this instance's deltas of their channels, how often its whole
     * part is refreshed (0: not now), and the refresh.
     */
    void       (*presence_deltas)(const pubsub::PresenceDeltas &deltas,
                                  const std::string &instance);
    ngx_msec_t (*presence_interval)(void);
    void       (*presence_refresh)(
                   const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
                   const std::string &instance);

    /*
     * The channels of `group` that have subscribers, ids starting with
     * `prefix`, at most `max` (Pusher's occupied channels, pusherapi).
     * Memory: the zone's list of the group's channels.  Redis: the groups
     * indexed with RedisStore::indexGroups() only (the Pusher module
     * indexes "pusher:").  The callback runs once, as info()'s.
     */
    void       (*occupied)(ngx_pubsub_loc_conf_t *plcf,
                           std::string_view group, std::string_view prefix,
                           size_t max, ngx_pubsub_occupied_cb cb);
};


extern const ngx_pubsub_engine_t  ngx_pubsub_memory_engine;
extern const ngx_pubsub_engine_t  ngx_pubsub_redis_engine;


/* configuration (ngx_pubsub_module.cpp calls these) */
char *ngx_pubsub_engine_check_conf(ngx_conf_t *cf,
    ngx_pubsub_main_conf_t *pmcf);
void ngx_pubsub_engine_inherit(ngx_pubsub_loc_conf_t *conf,
    ngx_pubsub_loc_conf_t *prev);
char *ngx_pubsub_engine_merge(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *conf);
/*
 * A location of another module (e.g. ngx_pubsub_pusher_module) that serves
 * clients from its pubsub engine says so at its merge; locations with a
 * pubsub role or the presence API are counted by ngx_pubsub_engine_merge.
 */
void ngx_pubsub_engine_use(ngx_pubsub_loc_conf_t *conf);

/* every engine, in order (exit: in reverse) */
ngx_int_t ngx_pubsub_engines_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_engines_exit_process(ngx_cycle_t *cycle);

/* instance-wide presence, over every engine that has it */
void ngx_pubsub_engines_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance);
ngx_msec_t ngx_pubsub_engines_presence_interval(void);
void ngx_pubsub_engines_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance);


#endif /* _NGX_PUBSUB_ENGINE_H_INCLUDED_ */
