/*
 * ngx_pubsub Pusher: Pusher Channels protocol 7 (SPEC section 12), a
 * third nginx module (ngx_pubsub_pusher_module) beside ngx_pubsub_module
 * and ngx_pubsub_hooks_module.  This header is what its files share: the
 * apps (pubsub_pusher_app), their lookup, and the module's configuration.
 *
 * Signatures and channel names are the core's (include/pubsub/pusher/).
 * A Pusher channel is an ngx_pubsub channel in group "pusher:<app id>".
 */

#ifndef _NGX_PUBSUB_PUSHER_H_INCLUDED_
#define _NGX_PUBSUB_PUSHER_H_INCLUDED_

#include "ngx_pubsub.h"


#define NGX_PUBSUB_PUSHER_MAX_PRESENCE_MEMBERS  100
#define NGX_PUBSUB_PUSHER_MAX_CLIENT_EVENTS     10     /* per second */
#define NGX_PUBSUB_PUSHER_GROUP_PREFIX          "pusher:"


/* one pubsub_pusher_app */
typedef struct {
    ngx_str_t                     id;
    ngx_str_t                     key;
    ngx_str_t                     secret;
    ngx_str_t                     group;       /* "pusher:<id>" */
    ngx_uint_t                    max_presence_members;
    ngx_uint_t                    max_client_events;   /* per second */
    /* pusherfeat: pusher_internal:subscription_count pushed to clients */
    ngx_flag_t                    subscription_count;
} ngx_pubsub_pusher_app_t;


typedef struct ngx_pubsub_pusher_webhook_conf_s
    ngx_pubsub_pusher_webhook_conf_t;


typedef struct {
    ngx_array_t                  *apps;       /* ngx_pubsub_pusher_app_t */

    /* webhook: every pubsub_pusher_webhook, in configuration order */
    ngx_array_t                  *webhooks;   /* webhook_conf_t * */

    /* pusherfeat: ids of the apps with subscription_count=on */
    ngx_array_t                  *counting;   /* ngx_str_t */
} ngx_pubsub_pusher_main_conf_t;


typedef struct {
    ngx_array_t                  *apps;       /* this server's own */
} ngx_pubsub_pusher_srv_conf_t;


/*
 * The module's location configuration: each part's fields in its own
 * block (pusher: the WebSocket endpoint).
 */
typedef struct {
    /* pusher: pubsub_pusher, pubsub_pusher_activity_timeout */
    ngx_flag_t                    ws;
    ngx_msec_t                    activity_timeout;

    /* pusherapi: pubsub_pusher_api (not inherited: a content handler) */
    ngx_flag_t                    api;

    /* webhook: pubsub_pusher_webhook (ngx_pubsub_pusher_webhook.cpp) */
    ngx_pubsub_pusher_webhook_conf_t  *webhook;   /* NULL: off */
} ngx_pubsub_pusher_loc_conf_t;


extern "C" ngx_module_t  ngx_pubsub_pusher_module;


/* The app of a request's server (its own apps first, then http's) by key
 * or by id; NULL when there is none. */
ngx_pubsub_pusher_app_t *ngx_pubsub_pusher_app_by_key(ngx_http_request_t *r,
    ngx_str_t *key);
ngx_pubsub_pusher_app_t *ngx_pubsub_pusher_app_by_id(ngx_http_request_t *r,
    ngx_str_t *id);

/* pubsub_pusher's content handler (ngx_pubsub_pusher_ws.cpp) */
ngx_int_t ngx_pubsub_pusher_ws_handler(ngx_http_request_t *r);

/* ngx_pubsub_pusher_api.cpp (pusherapi): pubsub_pusher_api, and the Redis
 * index of the apps' occupied channels */
char *ngx_pubsub_pusher_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_pubsub_pusher_api_init_process(ngx_cycle_t *cycle);

#endif /* _NGX_PUBSUB_PUSHER_H_INCLUDED_ */
