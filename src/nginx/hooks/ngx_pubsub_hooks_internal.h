/*
 * ngx_pubsub: what the files of the hooks share (src/nginx/hooks only; the
 * rest of the module uses ngx_pubsub_hooks.h).
 *
 *   ngx_pubsub_hooks_module.cpp    the module: directives, configuration,
 *                                  variables
 *   ngx_pubsub_hooks_ctx.cpp       the per-request context: roles, channel
 *                                  ids, identity, message ids
 *   ngx_pubsub_hooks_request.cpp   what a hook request carries: the
 *                                  snapshot of the client's request
 *   ngx_pubsub_hooks_launch.cpp    the detached request, on a fake
 *                                  connection, that sends a hook
 *   ngx_pubsub_hooks_answer.cpp    the hook's answer: body, status
 *   ngx_pubsub_hooks_session.cpp   subscribe/unsubscribe pairing, polling
 *                                  sessions
 *   ngx_pubsub_hooks_access.cpp    the access phase: token, authorize
 *   ngx_pubsub_hooks_presence.cpp  the presence hook
 *   ngx_pubsub_hooks_queue.cpp     at-least-once delivery: the queue in
 *                                  its own zone (unsubscribe, presence,
 *                                  Pusher webhooks)
 */

#ifndef _NGX_PUBSUB_HOOKS_INTERNAL_H_INCLUDED_
#define _NGX_PUBSUB_HOOKS_INTERNAL_H_INCLUDED_

#include "ngx_pubsub_hooks.h"

#include "pubsub/codec/jwt.h"


#define NGX_PUBSUB_HOOK_AUTHORIZE    0
#define NGX_PUBSUB_HOOK_SUBSCRIBE    1
#define NGX_PUBSUB_HOOK_UNSUBSCRIBE  2
#define NGX_PUBSUB_HOOK_UPSTREAM     3
#define NGX_PUBSUB_HOOK_PRESENCE     4
#define NGX_PUBSUB_HOOK_WEBHOOK      5    /* Pusher webhooks */
#define NGX_PUBSUB_HOOK_KINDS        6

#define NGX_PUBSUB_AUTH_NONE         0
#define NGX_PUBSUB_AUTH_WAITING      1
#define NGX_PUBSUB_AUTH_ACCEPTED     2
#define NGX_PUBSUB_AUTH_REFUSED      3


typedef struct {
    ngx_http_complex_value_t     *authorize;
    ngx_http_complex_value_t     *subscribe;
    ngx_http_complex_value_t     *unsubscribe;
    ngx_http_complex_value_t     *upstream;
    ngx_http_complex_value_t     *token;
    pubsub::TokenKey             *token_key;
    ngx_uint_t                    token_key_off;
    ngx_msec_t                    poll_grace;
    ngx_uint_t                    presence;         /* index + 1; 0 none */
} ngx_pubsub_hooks_loc_conf_t;


/* a pubsub_presence_request target: the server it resolves in, its URI */
typedef struct {
    ngx_http_conf_ctx_t          *ctx;
    ngx_str_t                     uri;
    ngx_str_t                     args;
} ngx_pubsub_presence_target_t;

typedef struct {
    ngx_array_t                   presence;  /* ngx_pubsub_presence_target_t */
    size_t                        queue_size;    /* pubsub_hook_queue_size */
} ngx_pubsub_hooks_main_conf_t;


/* per request: variables, identity and the state of the access check */
typedef struct {
    ngx_uint_t                    nids;
    ngx_str_t                    *ids;
    ngx_uint_t                    npub_ids;         /* a WebSocket that both */
    ngx_str_t                    *pub_ids;          /* subscribes, publishes */
    ngx_str_t                     sub_type;
    ngx_str_t                     pub_type;
    ngx_str_t                     msg_id;
    ngx_str_t                     prev_id;
    /* the ids as published, turned into msg_id/prev_id text when used */
    int64_t                       raw_msg_time;
    int64_t                       raw_prev_time;
    int32_t                       raw_msg_tag;
    int32_t                       raw_prev_tag;
    ngx_uint_t                    ids_pending;
    ngx_uint_t                    classified;   /* roles and ids are set */
    ngx_pubsub_identity_t         ident;
    ngx_uint_t                    has_ident;
    ngx_uint_t                    role_sub;
    ngx_uint_t                    role_pub;
    ngx_uint_t                    role_presence;    /* presence API GET */
    ngx_uint_t                    bad_ids;
    ngx_str_t                     group;        /* of the ids; "default" */
    ngx_uint_t                    has_user;     /* presence API ?user= */
    ngx_str_t                     user;         /* ... decoded */
    ngx_uint_t                    publish_denied;   /* by the token */

    ngx_uint_t                    auth_state;
    ngx_uint_t                    auth_status;
    ngx_uint_t                    auth_failed;
    ngx_str_t                     auth_ct;
    ngx_str_t                     auth_body;
    ngx_array_t                  *auth_headers;     /* ngx_keyval_t */

    ngx_pubsub_hook_call_t       *call;             /* detached requests */
    ngx_uint_t                    detached;     /* the call's own request */
} ngx_pubsub_hook_ctx_t;


/* what a hook needs of the client's request, copied */
typedef struct {
    ngx_http_conf_ctx_t           conf;     /* main, srv and loc */
    ngx_http_addr_conf_t         *addr_conf;

    ngx_str_t                     uri;              /* the hook's */
    ngx_str_t                     args;

    ngx_uint_t                    method;
    ngx_str_t                     method_name;
    ngx_str_t                     orig_uri;
    ngx_str_t                     orig_args;
    ngx_str_t                     unparsed_uri;
    ngx_str_t                     request_line;
    ngx_str_t                     server;
    ngx_uint_t                    http_version;

    struct sockaddr              *sockaddr;
    socklen_t                     socklen;
    struct sockaddr              *local_sockaddr;
    socklen_t                     local_socklen;
    ngx_str_t                     addr_text;

    ngx_uint_t                    nheaders;
    ngx_table_elt_t              *headers;

    ngx_uint_t                    nids;
    ngx_str_t                    *ids;
    ngx_str_t                     sub_type;
    ngx_str_t                     pub_type;
    ngx_str_t                     msg_id;
    ngx_str_t                     prev_id;
    ngx_str_t                     presence_id;
} ngx_pubsub_hook_req_t;


typedef void (*ngx_pubsub_hook_internal_pt)(ngx_pubsub_hook_call_t *call,
    ngx_pubsub_hook_result_t *res);


struct ngx_pubsub_hook_call_s {
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_connection_t             *fc;
    ngx_http_request_t           *fr;
    ngx_pubsub_hook_req_t        *req;
    ngx_uint_t                    kind;
    ngx_uint_t                    post;
    ngx_str_t                     body;
    ngx_str_t                     ct;

    ngx_http_request_t           *r;          /* the waiting client */
    ngx_pool_cleanup_t           *cln;
    ngx_pubsub_hook_done_pt       done;
    void                         *data;
    ngx_pubsub_hook_internal_pt   internal;
    void                         *idata;

    ngx_pubsub_hook_result_t      res;
    ngx_uint_t                    answered;
    ngx_uint_t                    finishing;

    /* the answer's body, captured by the hooks' body filter */
    ngx_http_request_t           *sr;
    ngx_buf_t                    *out;
    ngx_uint_t                    body_seen;    /* the body filter ran */
    ngx_uint_t                    body_done;    /* ... to the last buffer */
    ngx_uint_t                    body_error;   /* too big, unreadable */

    ngx_event_t                   start_ev;
    ngx_event_t                   finish_ev;
    ngx_http_post_subrequest_t    ps;
};


/* "authorize", "subscribe", ... by NGX_PUBSUB_HOOK_* */
extern const char * const         ngx_pubsub_hook_names[];

/* a hook directive set to "off" */
extern ngx_http_complex_value_t   ngx_pubsub_hook_off;


/* ngx_pubsub_hooks_module.cpp */
ngx_int_t ngx_pubsub_hook_dup(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t src);
ngx_str_t ngx_pubsub_hook_cstr(const char *s);
ngx_uint_t ngx_pubsub_hook_active(ngx_http_complex_value_t *cv);
ngx_pubsub_hooks_loc_conf_t *ngx_pubsub_hooks_conf(ngx_http_request_t *r);
ngx_uint_t ngx_pubsub_hook_header_is(ngx_str_t key,
    const char * const *names, ngx_uint_t n);

/* ngx_pubsub_hooks_ctx.cpp */
ngx_pubsub_hook_ctx_t *ngx_pubsub_hook_find_ctx(ngx_http_request_t *r);
ngx_pubsub_hook_ctx_t *ngx_pubsub_hook_get_ctx(ngx_http_request_t *r);
void ngx_pubsub_hook_ids_text(ngx_pool_t *pool, ngx_pubsub_hook_ctx_t *ctx);

/* ngx_pubsub_hooks_request.cpp */
ngx_int_t ngx_pubsub_hook_target(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_pool_t *pool, ngx_str_t *uri,
    ngx_str_t *args);
ngx_pubsub_hook_req_t *ngx_pubsub_hook_snapshot(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_uint_t nids, ngx_str_t *ids, ngx_str_t sub_type,
    ngx_str_t pub_type);
ngx_pubsub_hook_req_t *ngx_pubsub_hook_req_copy(ngx_pool_t *pool,
    const ngx_pubsub_hook_req_t *src, ngx_uint_t room);
void ngx_pubsub_hook_req_nobody(ngx_pubsub_hook_req_t *v,
    ngx_http_conf_ctx_t *ctx, ngx_str_t *uri, ngx_str_t *args,
    struct sockaddr_in *sin);

/* ngx_pubsub_hooks_launch.cpp */
ngx_pubsub_hook_call_t *ngx_pubsub_hook_call_alloc(ngx_uint_t kind,
    ngx_log_t *parent_log);
ngx_int_t ngx_pubsub_hook_launch(ngx_pubsub_hook_call_t *call);
void ngx_pubsub_hook_free(ngx_pubsub_hook_call_t *call);
ngx_pubsub_hook_call_t *ngx_pubsub_hook_start_for(ngx_http_request_t *r,
    ngx_uint_t kind, ngx_http_complex_value_t *cv, ngx_uint_t nids,
    ngx_str_t *ids, ngx_str_t sub_type, ngx_str_t pub_type, ngx_str_t *body,
    ngx_str_t *ct, ngx_uint_t bind, ngx_pubsub_hook_done_pt done,
    void *data);

/* ngx_pubsub_hooks_answer.cpp */
ngx_int_t ngx_pubsub_hook_sr_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
void ngx_pubsub_hooks_init_filters(void);

/* ngx_pubsub_hooks_access.cpp */
ngx_int_t ngx_pubsub_hooks_access(ngx_http_request_t *r);

#endif /* _NGX_PUBSUB_HOOKS_INTERNAL_H_INCLUDED_ */
