/*
 * ngx_pubsub: the Redis engine's nginx side - `pubsub_redis_server` /
 * `pubsub_redis_pass`, a hiredis async adapter on nginx's event loop, and
 * one pubsub::RedisStore per upstream per worker.
 */

#ifndef _NGX_PUBSUB_REDIS_H_INCLUDED_
#define _NGX_PUBSUB_REDIS_H_INCLUDED_

#include "ngx_pubsub.h"

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


char *ngx_pubsub_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_pubsub_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_pubsub_redis_check_conf(ngx_conf_t *cf,
    ngx_pubsub_main_conf_t *pmcf);

ngx_int_t ngx_pubsub_redis_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_redis_exit_process(ngx_cycle_t *cycle);

/*
 * Subscriber requests on Redis locations: reads the channels' snapshots,
 * then runs `handler` with them in place (subscribe() answers from them)
 * and finalizes the request with its result.  NGX_DECLINED when the
 * request needs no preparing (run the handler now), else NGX_DONE.
 */
ngx_int_t ngx_pubsub_redis_prepare(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_int_t (*handler)(ngx_http_request_t *r));

/* presence (ngx_pubsub_presence.cpp): the upstream index + 1 of a
 * location (0: memory store), its store, and the sending of this
 * instance's presence deltas and refreshes */
ngx_uint_t ngx_pubsub_redis_index(ngx_pubsub_loc_conf_t *plcf);
pubsub::RedisStore *ngx_pubsub_redis_store(ngx_pubsub_loc_conf_t *plcf);
void ngx_pubsub_redis_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance);
ngx_msec_t ngx_pubsub_redis_presence_interval(void);
void ngx_pubsub_redis_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance);

#endif /* _NGX_PUBSUB_REDIS_H_INCLUDED_ */
