/*
 * ngx_pubsub: the Redis engine's nginx side.  Outside src/redis only its
 * directives are named (the module's command table); everything else goes
 * through its engine table, ngx_pubsub_redis_engine (ngx_pubsub_engine.h).
 *
 *   ngx_pubsub_redis_conf.cpp      directives, upstreams
 *   ngx_pubsub_redis_engine.cpp    the engine table: workers, prepare,
 *                                  info, presence queries
 *   ngx_pubsub_redis_presence.cpp  presence deltas and refreshes
 *   ngx_pubsub_redis_conn.cpp      the link: hiredis on nginx's event loop
 *   ngx_pubsub_redis_cluster.cpp   the link: slot map, failures, timers
 */

#ifndef _NGX_PUBSUB_REDIS_H_INCLUDED_
#define _NGX_PUBSUB_REDIS_H_INCLUDED_

#include "ngx_pubsub.h"
#include "ngx_pubsub_engine.h"

#include <string>
#include <vector>

#include "pubsub/memory/presence.h"


typedef struct ngx_pubsub_redis_link_s  ngx_pubsub_redis_link_t;

/* one `upstream {}` block with pubsub_redis_server lines */
typedef struct {
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_str_t                      name;
    ngx_array_t                    servers;   /* ngx_pubsub_redis_server_t */
    ngx_uint_t                     index;     /* in pmcf->redis_upstreams */
    ngx_uint_t                     presence;  /* a location has presence on */
    ngx_msec_t                     presence_ttl;  /* the least of those */
    ngx_uint_t                     used;      /* a location serves from it */
    /* per worker, made in init_process */
    ngx_pubsub_redis_link_t       *link;
    pubsub::RedisStore            *store;
} ngx_pubsub_redis_upstream_t;

typedef struct {
    ngx_str_t                      url;
    ngx_str_t                      host;      /* null-terminated */
    in_port_t                      port;
    ngx_str_t                      password;
    ngx_int_t                      db;
} ngx_pubsub_redis_server_t;


/* directives (ngx_pubsub_module.cpp's command table) */
char *ngx_pubsub_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_pubsub_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


/* within src/redis */

/* ngx_pubsub_redis_conf.cpp */
char *ngx_pubsub_redis_check_conf(ngx_conf_t *cf,
    ngx_pubsub_main_conf_t *pmcf);
void ngx_pubsub_redis_use(ngx_pubsub_loc_conf_t *plcf);
char *ngx_pubsub_redis_merge_loc_conf(ngx_conf_t *cf,
    ngx_pubsub_loc_conf_t *plcf);
/* this worker's Redis upstreams (their number in *n); one by index */
ngx_pubsub_redis_upstream_t **ngx_pubsub_redis_all(ngx_uint_t *n);
ngx_pubsub_redis_upstream_t *ngx_pubsub_redis_upstream_at(ngx_uint_t index);

/* ngx_pubsub_redis_presence.cpp: this instance's presence deltas and
 * refreshes (the engine table's instance-wide presence) */
void ngx_pubsub_redis_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance);
ngx_msec_t ngx_pubsub_redis_presence_interval(void);
void ngx_pubsub_redis_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance);
void ngx_pubsub_redis_presence_exit(void);

#endif /* _NGX_PUBSUB_REDIS_H_INCLUDED_ */
