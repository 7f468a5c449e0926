/*
 * ngx_pubsub: application hooks and JWT tokens (docs/hooks.md,
 * docs/tokens.md).
 *
 * How a hook is sent.  A hook needs a request to hang its subrequest on,
 * and the client's request may be gone (unsubscribe after a reset) or busy
 * (a WebSocket).  So every hook runs on its own detached request: a fake
 * connection (fd -1, its events marked active so nginx never registers
 * them) holding a request built from a snapshot of the client's request
 * (configuration, address, headers, URI, method).  An in-memory, waited
 * subrequest to the hook URI goes through the hook location as usual
 * (proxy_pass and its timeouts); its post-subrequest handler records the
 * answer, and a posted event hands it to the waiting client (if any) and
 * frees the detached request and its connection.
 */

#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_chevents.h"

#include <new>
#include <string>
#include <unordered_map>

#include "pubsub/codec/jwt.h"
#include "pubsub/keyed_hash.h"


#define NGX_PUBSUB_HOOK_AUTHORIZE    0
#define NGX_PUBSUB_HOOK_SUBSCRIBE    1
#define NGX_PUBSUB_HOOK_UNSUBSCRIBE  2
#define NGX_PUBSUB_HOOK_UPSTREAM     3
#define NGX_PUBSUB_HOOK_PRESENCE     4

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
    ngx_uint_t                    bad_ids;

    ngx_uint_t                    auth_state;
    ngx_uint_t                    auth_status;
    ngx_uint_t                    auth_failed;
    ngx_str_t                     auth_ct;
    ngx_str_t                     auth_body;
    ngx_array_t                  *auth_headers;     /* ngx_keyval_t */

    ngx_pubsub_hook_call_t       *call;             /* detached requests */
} ngx_pubsub_hook_ctx_t;


/* what a hook needs of the client's request, copied */
typedef struct {
    void                        **main_conf;
    void                        **srv_conf;
    void                        **loc_conf;
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

typedef struct {
    ngx_http_log_ctx_t            http;
    ngx_pubsub_hook_call_t       *call;
} ngx_pubsub_hook_log_ctx_t;


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

    ngx_event_t                   start_ev;
    ngx_event_t                   finish_ev;
    ngx_http_post_subrequest_t    ps;
};


struct ngx_pubsub_hook_session_s {
    ngx_pool_t                   *pool;
    ngx_pubsub_hook_req_t        *req;
    ngx_str_t                     unsub_uri;
    ngx_str_t                     unsub_args;
    ngx_uint_t                    has_unsub;
    ngx_uint_t                    sub_inflight;
    ngx_uint_t                    unsub_wanted;
    ngx_uint_t                    ended;

    /* polling sessions */
    ngx_uint_t                    poll;
    ngx_msec_t                    grace;
    ngx_str_t                     chan_key;
    std::string                  *identity;
    std::string                  *parked_key;
    ngx_event_t                   grace_ev;
};


static const char  *ngx_pubsub_hook_names[] = {
    "authorize", "subscribe", "unsubscribe", "publisher upstream", "presence"
};

/* a hook directive set to "off" */
static ngx_http_complex_value_t  ngx_pubsub_hook_off;

/* keyed by client-chosen channel ids: a keyed hash (see keyed_hash.h) */
typedef std::unordered_multimap<std::string, ngx_pubsub_hook_session_t *,
                                pubsub::KeyedStringHash>
    ngx_pubsub_poll_map_t;

static ngx_pubsub_poll_map_t  *ngx_pubsub_poll_sessions;


static ngx_int_t ngx_pubsub_hooks_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_pubsub_hooks_postconfiguration(ngx_conf_t *cf);
static void *ngx_pubsub_hooks_create_main_conf(ngx_conf_t *cf);
static char *ngx_pubsub_presence_request_set(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_pubsub_hooks_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pubsub_hooks_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_pubsub_hook_uri_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_token_key_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_pubsub_hooks_exit_process(ngx_cycle_t *cycle);
static void ngx_pubsub_hook_finish(ngx_pubsub_hook_call_t *call);
static void ngx_pubsub_session_destroy(ngx_pubsub_hook_session_t *s);


#define NGX_PUBSUB_LOC  (NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF)

static ngx_command_t  ngx_pubsub_hooks_commands[] = {

    { ngx_string("pubsub_authorize_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, authorize),
      NULL },

    { ngx_string("pubsub_subscribe_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, subscribe),
      NULL },

    { ngx_string("pubsub_unsubscribe_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, unsubscribe),
      NULL },

    { ngx_string("pubsub_publisher_upstream_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, upstream),
      NULL },

    { ngx_string("pubsub_presence_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_presence_request_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_token"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, token),
      NULL },

    { ngx_string("pubsub_token_key"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_token_key_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_longpoll_session_grace"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, poll_grace),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_pubsub_hooks_module_ctx = {
    ngx_pubsub_hooks_preconfiguration,     /* preconfiguration */
    ngx_pubsub_hooks_postconfiguration,    /* postconfiguration */

    ngx_pubsub_hooks_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_pubsub_hooks_create_loc_conf,      /* create location configuration */
    ngx_pubsub_hooks_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_pubsub_hooks_module = {
    NGX_MODULE_V1,
    &ngx_pubsub_hooks_module_ctx,          /* module context */
    ngx_pubsub_hooks_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_pubsub_hooks_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* small helpers */

static ngx_int_t
ngx_pubsub_dup(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t src)
{
    dst->len = src.len;

    if (src.len == 0) {
        dst->data = NULL;
        return NGX_OK;
    }

    dst->data = static_cast<u_char *>(ngx_pnalloc(pool, src.len));
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src.data, src.len);

    return NGX_OK;
}


static ngx_str_t
ngx_pubsub_cstr(const char *s)
{
    ngx_str_t  v;

    v.data = reinterpret_cast<u_char *>(const_cast<char *>(s));
    v.len = ngx_strlen(s);

    return v;
}


static ngx_uint_t
ngx_pubsub_hook_active(ngx_http_complex_value_t *cv)
{
    return cv != NULL && cv != &ngx_pubsub_hook_off;
}


static ngx_pubsub_hooks_loc_conf_t *
ngx_pubsub_hooks_conf(ngx_http_request_t *r)
{
    return static_cast<ngx_pubsub_hooks_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_hooks_module));
}


ngx_str_t
ngx_pubsub_transport_name(ngx_uint_t transport)
{
    switch (transport) {
    case NGX_PUBSUB_SUB_WEBSOCKET:
        return ngx_pubsub_cstr("websocket");
    case NGX_PUBSUB_SUB_EVENTSOURCE:
        return ngx_pubsub_cstr("eventsource");
    case NGX_PUBSUB_SUB_LONGPOLL:
        return ngx_pubsub_cstr("longpoll");
    case NGX_PUBSUB_SUB_INTERVALPOLL:
        return ngx_pubsub_cstr("intervalpoll");
    case NGX_PUBSUB_SUB_CHUNKED:
        return ngx_pubsub_cstr("http-chunked");
    case NGX_PUBSUB_SUB_MULTIPART:
        return ngx_pubsub_cstr("http-multipart");
    case NGX_PUBSUB_SUB_RAWSTREAM:
        return ngx_pubsub_cstr("http-raw-stream");
    default:
        break;
    }

    return ngx_pubsub_cstr("");
}


/* the request context: variables, identity, access state */

static ngx_pubsub_hook_ctx_t *
ngx_pubsub_hook_find_ctx(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    for ( /* void */ ; r; r = r->parent) {
        ctx = static_cast<ngx_pubsub_hook_ctx_t *>(
                  ngx_http_get_module_ctx(r, ngx_pubsub_hooks_module));
        if (ctx) {
            return ctx;
        }
    }

    return NULL;
}


/* what the request is (roles, transport) and its channel ids */
static ngx_int_t
ngx_pubsub_hook_classify(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_uint_t              t;
    ngx_int_t               rc;
    const char             *err;
    ngx_pubsub_channels_t  *ch;

    if (r->method == NGX_HTTP_OPTIONS) {
        return NGX_OK;
    }

    if (r->method == NGX_HTTP_GET && ngx_pubsub_is_websocket(r)) {
        if (plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET) {
            ctx->role_sub = 1;
            ctx->sub_type = ngx_pubsub_cstr("websocket");
        }
        if (plcf->pub_roles & NGX_PUBSUB_PUB_WEBSOCKET) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_cstr("websocket");
        }

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        t = plcf->sub_roles ? ngx_pubsub_pick_transport(r, plcf->sub_roles) : 0;

        if (t) {
            ctx->role_sub = 1;
            ctx->sub_type = ngx_pubsub_transport_name(t);

        } else if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_cstr("http");
        }

    } else if (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_DELETE)) {
        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_cstr("http");
        }
    }

    if (!ctx->role_sub && !ctx->role_pub) {
        return NGX_OK;
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_pubsub_channels_eval(r, plcf, ctx->role_sub ? 0 : 1, ch, &err);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->bad_ids = 1;
        return NGX_OK;
    }

    ctx->nids = ch->n;
    ctx->ids = static_cast<ngx_str_t *>(
                   ngx_palloc(r->pool, sizeof(ngx_str_t) * (ch->n + 1)));
    if (ctx->ids == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->ids, ch->id, sizeof(ngx_str_t) * ch->n);

    /*
     * A WebSocket that subscribes and publishes: its publisher channels
     * (pubsub_publisher_channel_id) are in a token's scope too.
     */
    if (ctx->role_sub && ctx->role_pub) {
        rc = ngx_pubsub_channels_eval(r, plcf, 1, ch, &err);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ctx->bad_ids = 1;
            return NGX_OK;
        }

        ctx->npub_ids = ch->n;
        ctx->pub_ids = static_cast<ngx_str_t *>(
                           ngx_palloc(r->pool,
                                      sizeof(ngx_str_t) * (ch->n + 1)));
        if (ctx->pub_ids == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->pub_ids, ch->id, sizeof(ngx_str_t) * ch->n);
    }

    return NGX_OK;
}


/* the main request's context, created without classifying it */
static ngx_pubsub_hook_ctx_t *
ngx_pubsub_hook_bare_ctx(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;
    ngx_pubsub_loc_conf_t  *plcf;

    ctx = ngx_pubsub_hook_find_ctx(r);
    if (ctx || r != r->main) {
        return ctx;
    }

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module));
    if (plcf->roles == 0) {
        return NULL;
    }

    ctx = static_cast<ngx_pubsub_hook_ctx_t *>(
              ngx_pcalloc(r->pool, sizeof(ngx_pubsub_hook_ctx_t)));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_pubsub_hooks_module);

    return ctx;
}


/*
 * The context with roles and channel ids.  Classifying evaluates the
 * channel ids, so it is done only when something needs them (hooks,
 * tokens, variables), never for a plain publish.
 */
static ngx_pubsub_hook_ctx_t *
ngx_pubsub_hook_get_ctx(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_http_request_t     *mr;

    ctx = ngx_pubsub_hook_bare_ctx(r);
    if (ctx == NULL || ctx->classified) {
        return ctx;
    }

    /* the context belongs to the main request */
    mr = r->main;
    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(mr, ngx_pubsub_module));

    ctx->classified = 1;

    if (ngx_pubsub_hook_classify(mr, plcf, ctx) != NGX_OK) {
        ctx->classified = 0;
        return NULL;
    }

    return ctx;
}


const ngx_pubsub_identity_t *
ngx_pubsub_identity(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    ctx = ngx_pubsub_hook_find_ctx(r);

    return (ctx && ctx->has_ident) ? &ctx->ident : NULL;
}


static void
ngx_pubsub_hook_format_id(ngx_pool_t *pool, ngx_str_t *out,
    const pubsub::MsgId &id)
{
    out->data = static_cast<u_char *>(ngx_pnalloc(pool, pubsub::kMaxMsgIdText));
    if (out->data == NULL) {
        out->len = 0;
        return;
    }

    out->len = pubsub::writeMsgId(reinterpret_cast<char *>(out->data), id);
}


void
ngx_pubsub_hook_set_message_ids(ngx_http_request_t *r,
    const pubsub::MsgId &id, const pubsub::MsgId &prev)
{
    ngx_pubsub_hook_ctx_t  *ctx;
    std::string             s;

    ctx = ngx_pubsub_hook_bare_ctx(r);
    if (ctx == NULL) {
        return;
    }

    ctx->raw_msg_time = id.time;
    ctx->raw_msg_tag = id.tag;
    ctx->raw_prev_time = prev.time;
    ctx->raw_prev_tag = prev.tag;
    ctx->ids_pending = 1;
    ctx->msg_id.len = 0;
    ctx->prev_id.len = 0;
}


/* $pubsub_message_id and $pubsub_prev_message_id as text, once needed */
static void
ngx_pubsub_hook_ids_text(ngx_pool_t *pool, ngx_pubsub_hook_ctx_t *ctx)
{
    pubsub::MsgId  id;

    if (!ctx->ids_pending) {
        return;
    }

    ctx->ids_pending = 0;

    id.time = ctx->raw_msg_time;
    id.tag = ctx->raw_msg_tag;
    if (!id.isNull()) {
        ngx_pubsub_hook_format_id(pool, &ctx->msg_id, id);
    }

    id.time = ctx->raw_prev_time;
    id.tag = ctx->raw_prev_tag;
    if (!id.isNull()) {
        ngx_pubsub_hook_format_id(pool, &ctx->prev_id, id);
    }
}


/* variables */

enum {
    NGX_PUBSUB_VAR_CHANNEL_ID = 0,
    NGX_PUBSUB_VAR_SUB_TYPE,
    NGX_PUBSUB_VAR_PUB_TYPE,
    NGX_PUBSUB_VAR_MSG_ID,
    NGX_PUBSUB_VAR_PREV_ID,
    NGX_PUBSUB_VAR_PRESENCE_ID
};


static ngx_int_t
ngx_pubsub_hook_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    return ngx_pubsub_guard(r->connection->log, [r, v, data] {
        ngx_pubsub_hook_ctx_t  *ctx;
        ngx_str_t               s;

        /* in a channel event's string: the event's channel */
        if (data == NGX_PUBSUB_VAR_CHANNEL_ID
            && ngx_pubsub_chev_channel_id(&s))
        {
            v->len = s.len;
            v->data = s.data;
            v->valid = 1;
            v->no_cacheable = 1;
            v->not_found = 0;
            return NGX_OK;
        }

        ctx = ngx_pubsub_hook_get_ctx(r);
        if (ctx == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        s.len = 0;
        s.data = NULL;

        ngx_pubsub_hook_ids_text(r->main->pool, ctx);

        switch (data) {
        case NGX_PUBSUB_VAR_CHANNEL_ID:
            if (ctx->nids) {
                s = ctx->ids[0];
            }
            break;
        case NGX_PUBSUB_VAR_SUB_TYPE:
            s = ctx->sub_type;
            break;
        case NGX_PUBSUB_VAR_PUB_TYPE:
            s = ctx->pub_type;
            break;
        case NGX_PUBSUB_VAR_MSG_ID:
            s = ctx->msg_id;
            break;
        case NGX_PUBSUB_VAR_PREV_ID:
            s = ctx->prev_id;
            break;
        case NGX_PUBSUB_VAR_PRESENCE_ID:
            s = ctx->ident.presence_id;
            break;
        }

        if (s.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->len = s.len;
        v->data = s.data;
        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;

        return NGX_OK;
    });
}


/* $pubsub_channel_id_N: the N-th id (1-based) */
static ngx_int_t
ngx_pubsub_hook_channel_n_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    return ngx_pubsub_guard(r->connection->log, [r, v, data] {
        ngx_str_t              *name = reinterpret_cast<ngx_str_t *>(data);
        ngx_pubsub_hook_ctx_t  *ctx;
        ngx_int_t               n;
        size_t                  prefix = sizeof("pubsub_channel_id_") - 1;

        v->not_found = 1;

        if (name->len <= prefix) {
            return NGX_OK;
        }

        n = ngx_atoi(name->data + prefix, name->len - prefix);

        ctx = ngx_pubsub_hook_get_ctx(r);
        if (ctx == NULL || n < 1 || (ngx_uint_t) n > ctx->nids) {
            return NGX_OK;
        }

        v->len = ctx->ids[n - 1].len;
        v->data = ctx->ids[n - 1].data;
        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;

        return NGX_OK;
    });
}


static ngx_int_t
ngx_pubsub_hooks_preconfiguration(ngx_conf_t *cf)
{
    static const struct {
        const char  *name;
        uintptr_t    data;
    } vars[] = {
        { "pubsub_channel_id", NGX_PUBSUB_VAR_CHANNEL_ID },
        { "pubsub_subscriber_type", NGX_PUBSUB_VAR_SUB_TYPE },
        { "pubsub_publisher_type", NGX_PUBSUB_VAR_PUB_TYPE },
        { "pubsub_message_id", NGX_PUBSUB_VAR_MSG_ID },
        { "pubsub_prev_message_id", NGX_PUBSUB_VAR_PREV_ID },
        { "pubsub_presence_id", NGX_PUBSUB_VAR_PRESENCE_ID },
    };

    ngx_http_variable_t  *var;
    ngx_str_t             name;

    for (const auto &d : vars) {
        name = ngx_pubsub_cstr(d.name);

        var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_pubsub_hook_variable;
        var->data = d.data;
    }

    name = ngx_pubsub_cstr("pubsub_channel_id_");

    var = ngx_http_add_variable(cf, &name,
                                NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_pubsub_hook_channel_n_variable;
    var->data = 0;

    return NGX_OK;
}


/* the snapshot of a client's request */

static ngx_uint_t
ngx_pubsub_hook_skip_header(ngx_str_t key)
{
    static const char  *skip[] = {
        "content-length", "content-type", "transfer-encoding", "connection",
        "keep-alive", "upgrade", "expect", "te", "x-channel-id",
        "x-subscriber-type", "x-publisher-type", "x-original-uri",
        "x-original-method", "x-presence-id", "x-message-id",
    };

    for (const char *s : skip) {
        size_t n = ngx_strlen(s);

        if (key.len == n
            && ngx_strncasecmp(key.data, reinterpret_cast<u_char *>(
                                   const_cast<char *>(s)), n) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the hook URI of r, split into path and arguments (the client's appended) */
static ngx_int_t
ngx_pubsub_hook_target(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_pool_t *pool, ngx_str_t *uri, ngx_str_t *args)
{
    ngx_str_t   v;
    u_char     *q, *p;
    size_t      own;

    if (ngx_http_complex_value(r, cv, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v.len == 0 || v.data[0] != '/') {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: hook URI \"%V\" must start with \"/\"", &v);
        return NGX_ERROR;
    }

    q = ngx_strlchr(v.data, v.data + v.len, '?');

    uri->data = v.data;
    uri->len = q ? (size_t) (q - v.data) : v.len;
    own = q ? (size_t) (v.data + v.len - q - 1) : 0;

    args->len = own + (own && r->args.len ? 1 : 0) + r->args.len;
    args->data = NULL;

    if (ngx_pubsub_dup(pool, uri, *uri) != NGX_OK) {
        return NGX_ERROR;
    }

    if (args->len == 0) {
        return NGX_OK;
    }

    args->data = static_cast<u_char *>(ngx_pnalloc(pool, args->len));
    if (args->data == NULL) {
        return NGX_ERROR;
    }

    p = args->data;
    if (own) {
        p = ngx_cpymem(p, q + 1, own);
        if (r->args.len) {
            *p++ = '&';
        }
    }
    ngx_memcpy(p, r->args.data, r->args.len);

    return NGX_OK;
}


static ngx_pubsub_hook_req_t *
ngx_pubsub_hook_snapshot(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_uint_t nids, ngx_str_t *ids, ngx_str_t sub_type, ngx_str_t pub_type)
{
    ngx_pubsub_hook_req_t  *q;
    ngx_pubsub_hook_ctx_t  *ctx;
    ngx_http_connection_t  *hc;
    ngx_connection_t       *c = r->connection;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_uint_t              i, n;

    q = static_cast<ngx_pubsub_hook_req_t *>(
            ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_req_t)));
    if (q == NULL) {
        return NULL;
    }

    hc = r->http_connection;

    q->main_conf = r->main_conf;
    q->srv_conf = r->srv_conf;
    q->loc_conf = r->loc_conf;
    q->addr_conf = hc ? hc->addr_conf : NULL;
    q->method = r->method;
    q->http_version = r->http_version;

    if (ngx_pubsub_dup(pool, &q->method_name, r->method_name) != NGX_OK
        || ngx_pubsub_dup(pool, &q->orig_uri, r->uri) != NGX_OK
        || ngx_pubsub_dup(pool, &q->orig_args, r->args) != NGX_OK
        || ngx_pubsub_dup(pool, &q->unparsed_uri, r->unparsed_uri) != NGX_OK
        || ngx_pubsub_dup(pool, &q->request_line, r->request_line) != NGX_OK
        || ngx_pubsub_dup(pool, &q->server, r->headers_in.server) != NGX_OK
        || ngx_pubsub_dup(pool, &q->addr_text, c->addr_text) != NGX_OK
        || ngx_pubsub_dup(pool, &q->sub_type, sub_type) != NGX_OK
        || ngx_pubsub_dup(pool, &q->pub_type, pub_type) != NGX_OK)
    {
        return NULL;
    }

    if (c->sockaddr && c->socklen) {
        q->sockaddr = static_cast<struct sockaddr *>(
                          ngx_palloc(pool, c->socklen));
        if (q->sockaddr == NULL) {
            return NULL;
        }
        ngx_memcpy(q->sockaddr, c->sockaddr, c->socklen);
        q->socklen = c->socklen;
    }

    if (c->local_sockaddr && c->local_socklen) {
        q->local_sockaddr = static_cast<struct sockaddr *>(
                                ngx_palloc(pool, c->local_socklen));
        if (q->local_sockaddr == NULL) {
            return NULL;
        }
        ngx_memcpy(q->local_sockaddr, c->local_sockaddr, c->local_socklen);
        q->local_socklen = c->local_socklen;
    }

    /* the client's headers */

    n = 0;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    q->headers = static_cast<ngx_table_elt_t *>(
                     ngx_pcalloc(pool, sizeof(ngx_table_elt_t) * (n + 1)));
    if (q->headers == NULL) {
        return NULL;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = static_cast<ngx_table_elt_t *>(part->elts);

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0 || ngx_pubsub_hook_skip_header(h[i].key)) {
                continue;
            }

            ngx_table_elt_t *d = &q->headers[q->nheaders];

            if (ngx_pubsub_dup(pool, &d->key, h[i].key) != NGX_OK
                || ngx_pubsub_dup(pool, &d->value, h[i].value) != NGX_OK)
            {
                return NULL;
            }

            q->nheaders++;
        }
    }

    /* pubsub's own */

    q->nids = nids;
    q->ids = static_cast<ngx_str_t *>(
                 ngx_pcalloc(pool, sizeof(ngx_str_t) * (nids + 1)));
    if (q->ids == NULL) {
        return NULL;
    }

    for (i = 0; i < nids; i++) {
        if (ngx_pubsub_dup(pool, &q->ids[i], ids[i]) != NGX_OK) {
            return NULL;
        }
    }

    ctx = ngx_pubsub_hook_find_ctx(r);

    if (ctx) {
        ngx_pubsub_hook_ids_text(r->main->pool, ctx);

        if (ngx_pubsub_dup(pool, &q->msg_id, ctx->msg_id) != NGX_OK
            || ngx_pubsub_dup(pool, &q->prev_id, ctx->prev_id) != NGX_OK
            || ngx_pubsub_dup(pool, &q->presence_id, ctx->ident.presence_id)
               != NGX_OK)
        {
            return NULL;
        }
    }

    return q;
}


static ngx_pubsub_hook_req_t *
ngx_pubsub_hook_snapshot_copy(ngx_pool_t *pool, ngx_pubsub_hook_req_t *src)
{
    ngx_pubsub_hook_req_t  *q;
    ngx_uint_t              i;

    q = static_cast<ngx_pubsub_hook_req_t *>(
            ngx_palloc(pool, sizeof(ngx_pubsub_hook_req_t)));
    if (q == NULL) {
        return NULL;
    }

    *q = *src;

    if (ngx_pubsub_dup(pool, &q->uri, src->uri) != NGX_OK
        || ngx_pubsub_dup(pool, &q->args, src->args) != NGX_OK
        || ngx_pubsub_dup(pool, &q->method_name, src->method_name) != NGX_OK
        || ngx_pubsub_dup(pool, &q->orig_uri, src->orig_uri) != NGX_OK
        || ngx_pubsub_dup(pool, &q->orig_args, src->orig_args) != NGX_OK
        || ngx_pubsub_dup(pool, &q->unparsed_uri, src->unparsed_uri) != NGX_OK
        || ngx_pubsub_dup(pool, &q->request_line, src->request_line) != NGX_OK
        || ngx_pubsub_dup(pool, &q->server, src->server) != NGX_OK
        || ngx_pubsub_dup(pool, &q->addr_text, src->addr_text) != NGX_OK
        || ngx_pubsub_dup(pool, &q->sub_type, src->sub_type) != NGX_OK
        || ngx_pubsub_dup(pool, &q->pub_type, src->pub_type) != NGX_OK
        || ngx_pubsub_dup(pool, &q->msg_id, src->msg_id) != NGX_OK
        || ngx_pubsub_dup(pool, &q->prev_id, src->prev_id) != NGX_OK
        || ngx_pubsub_dup(pool, &q->presence_id, src->presence_id) != NGX_OK)
    {
        return NULL;
    }

    if (src->sockaddr) {
        q->sockaddr = static_cast<struct sockaddr *>(
                          ngx_palloc(pool, src->socklen));
        if (q->sockaddr == NULL) {
            return NULL;
        }
        ngx_memcpy(q->sockaddr, src->sockaddr, src->socklen);
    }

    if (src->local_sockaddr) {
        q->local_sockaddr = static_cast<struct sockaddr *>(
                                ngx_palloc(pool, src->local_socklen));
        if (q->local_sockaddr == NULL) {
            return NULL;
        }
        ngx_memcpy(q->local_sockaddr, src->local_sockaddr,
                   src->local_socklen);
    }

    q->headers = static_cast<ngx_table_elt_t *>(
        ngx_pcalloc(pool, sizeof(ngx_table_elt_t) * (src->nheaders + 1)));
    q->ids = static_cast<ngx_str_t *>(
        ngx_pcalloc(pool, sizeof(ngx_str_t) * (src->nids + 1)));
    if (q->headers == NULL || q->ids == NULL) {
        return NULL;
    }

    for (i = 0; i < src->nheaders; i++) {
        if (ngx_pubsub_dup(pool, &q->headers[i].key, src->headers[i].key)
            != NGX_OK
            || ngx_pubsub_dup(pool, &q->headers[i].value,
                              src->headers[i].value) != NGX_OK)
        {
            return NULL;
        }
    }

    for (i = 0; i < src->nids; i++) {
        if (ngx_pubsub_dup(pool, &q->ids[i], src->ids[i]) != NGX_OK) {
            return NULL;
        }
    }

    return q;
}


/* the detached request */

static u_char *
ngx_pubsub_hook_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                     *p = buf;
    ngx_pubsub_hook_log_ctx_t  *lctx;
    ngx_pubsub_hook_call_t     *call;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    lctx = reinterpret_cast<ngx_pubsub_hook_log_ctx_t *>(log->data);
    call = lctx->call;

    if (call && call->req) {
        p = ngx_snprintf(buf, len, ", pubsub %s hook \"%V\", client: %V",
                         ngx_pubsub_hook_names[call->kind], &call->req->uri,
                         &call->req->addr_text);
    }

    return p;
}


static ngx_pubsub_hook_call_t *
ngx_pubsub_hook_call_alloc(ngx_uint_t kind, ngx_log_t *parent_log)
{
    ngx_pool_t              *pool;
    ngx_pubsub_hook_call_t  *call;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_log_error(NGX_LOG_ERR, parent_log, 0,
                      "pubsub: out of memory for a hook");
        return NULL;
    }

    call = static_cast<ngx_pubsub_hook_call_t *>(
               ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_call_t)));
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    call->pool = pool;
    call->kind = kind;

    return call;
}


static ngx_int_t
ngx_pubsub_hook_push_header(ngx_http_request_t *fr, ngx_str_t key,
    ngx_str_t value)
{
    ngx_table_elt_t            *h;
    ngx_http_header_t          *hh;
    ngx_http_core_main_conf_t  *cmcf;

    h = static_cast<ngx_table_elt_t *>(ngx_list_push(&fr->headers_in.headers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key = key;
    h->value = value;
    h->lowcase_key = static_cast<u_char *>(ngx_pnalloc(fr->pool, key.len + 1));
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(h->lowcase_key, key.data, key.len);
    h->hash = ngx_hash_key(h->lowcase_key, key.len);

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_get_module_main_conf(fr, ngx_http_core_module));

    hh = static_cast<ngx_http_header_t *>(
             ngx_hash_find(&cmcf->headers_in_hash, h->hash, h->lowcase_key,
                           h->key.len));

    if (hh && hh->handler(fr, h, hh->offset) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void ngx_pubsub_hook_start_handler(ngx_event_t *ev);
static void ngx_pubsub_hook_finish_handler(ngx_event_t *ev);
static void ngx_pubsub_hook_parent_handler(ngx_http_request_t *r);


/* builds the fake connection and request; the subrequest starts posted */
static ngx_int_t
ngx_pubsub_hook_launch(ngx_pubsub_hook_call_t *call)
{
    ngx_pool_t                 *pool = call->pool;
    ngx_pubsub_hook_req_t      *q = call->req;
    ngx_connection_t           *fc;
    ngx_http_request_t         *fr;
    ngx_http_connection_t      *hc;
    ngx_http_conf_ctx_t        *conf_ctx;
    ngx_pubsub_hook_log_ctx_t  *lctx;
    ngx_pubsub_hook_ctx_t      *vctx;
    ngx_log_t                  *log;
    ngx_uint_t                  i;

    fc = static_cast<ngx_connection_t *>(
             ngx_pcalloc(pool, sizeof(ngx_connection_t)));
    log = static_cast<ngx_log_t *>(ngx_palloc(pool, sizeof(ngx_log_t)));
    lctx = static_cast<ngx_pubsub_hook_log_ctx_t *>(
               ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_log_ctx_t)));
    hc = static_cast<ngx_http_connection_t *>(
             ngx_pcalloc(pool, sizeof(ngx_http_connection_t)));
    conf_ctx = static_cast<ngx_http_conf_ctx_t *>(
                   ngx_pcalloc(pool, sizeof(ngx_http_conf_ctx_t)));

    if (fc == NULL || log == NULL || lctx == NULL || hc == NULL
        || conf_ctx == NULL)
    {
        return NGX_ERROR;
    }

    fc->read = static_cast<ngx_event_t *>(
                   ngx_pcalloc(pool, sizeof(ngx_event_t)));
    fc->write = static_cast<ngx_event_t *>(
                    ngx_pcalloc(pool, sizeof(ngx_event_t)));
    fc->buffer = ngx_create_temp_buf(pool, 1);

    if (fc->read == NULL || fc->write == NULL || fc->buffer == NULL) {
        return NGX_ERROR;
    }

    *log = *ngx_cycle->log;
    log->handler = ngx_pubsub_hook_log_error;
    log->data = &lctx->http;
    log->action = NULL;

    lctx->http.connection = fc;
    lctx->call = call;

    call->log = log;
    pool->log = log;

    /* never registered with the event module: no epoll call, no timer */
    fc->fd = (ngx_socket_t) -1;
    fc->pool = pool;
    fc->log = log;
    fc->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    fc->read->data = fc;
    fc->read->log = log;
    fc->read->active = 1;
    fc->write->data = fc;
    fc->write->log = log;
    fc->write->write = 1;
    fc->write->active = 1;
    fc->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    fc->sockaddr = q->sockaddr;
    fc->socklen = q->socklen;
    fc->local_sockaddr = q->local_sockaddr;
    fc->local_socklen = q->local_socklen;
    fc->addr_text = q->addr_text;
    fc->log_error = NGX_ERROR_INFO;

    conf_ctx->main_conf = q->main_conf;
    conf_ctx->srv_conf = q->srv_conf;
    conf_ctx->loc_conf = q->loc_conf;
    hc->conf_ctx = conf_ctx;
    hc->addr_conf = q->addr_conf;
    fc->data = hc;

    fr = ngx_http_create_request(fc);
    if (fr == NULL) {
        return NGX_ERROR;
    }

    call->fc = fc;
    call->fr = fr;

    /* the fake main request is the client's request, as far as hooks see */
    fr->logged = 1;
    fr->method = q->method;
    fr->method_name = q->method_name;
    fr->uri = q->orig_uri;
    fr->args = q->orig_args;
    fr->unparsed_uri = q->unparsed_uri;
    fr->request_line = q->request_line;
    fr->http_version = q->http_version;
    fr->headers_in.server = q->server;
    fr->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;
    fr->write_event_handler = ngx_pubsub_hook_parent_handler;
    fr->read_event_handler = ngx_http_block_reading;

    if (ngx_list_init(&fr->headers_in.headers, fr->pool, q->nheaders + 12,
                      sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < q->nheaders; i++) {
        if (ngx_pubsub_hook_push_header(fr, q->headers[i].key,
                                        q->headers[i].value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < q->nids; i++) {
        if (ngx_pubsub_hook_push_header(fr, ngx_pubsub_cstr("X-Channel-Id"),
                                        q->ids[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if ((q->sub_type.len
         && ngx_pubsub_hook_push_header(fr,
                ngx_pubsub_cstr("X-Subscriber-Type"), q->sub_type) != NGX_OK)
        || (q->pub_type.len
            && ngx_pubsub_hook_push_header(fr,
                   ngx_pubsub_cstr("X-Publisher-Type"), q->pub_type)
               != NGX_OK)
        || ngx_pubsub_hook_push_header(fr, ngx_pubsub_cstr("X-Original-URI"),
                                       q->unparsed_uri) != NGX_OK
        || ngx_pubsub_hook_push_header(fr,
               ngx_pubsub_cstr("X-Original-Method"), q->method_name) != NGX_OK
        || (q->presence_id.len
            && ngx_pubsub_hook_push_header(fr,
                   ngx_pubsub_cstr("X-Presence-Id"), q->presence_id)
               != NGX_OK)
        || (call->post && call->ct.len
            && ngx_pubsub_hook_push_header(fr,
                   ngx_pubsub_cstr("Content-Type"), call->ct) != NGX_OK))
    {
        return NGX_ERROR;
    }

    /* variables of the hook subrequest */

    vctx = static_cast<ngx_pubsub_hook_ctx_t *>(
               ngx_pcalloc(fr->pool, sizeof(ngx_pubsub_hook_ctx_t)));
    if (vctx == NULL) {
        return NGX_ERROR;
    }

    vctx->nids = q->nids;
    vctx->ids = q->ids;
    vctx->sub_type = q->sub_type;
    vctx->pub_type = q->pub_type;
    vctx->msg_id = q->msg_id;
    vctx->prev_id = q->prev_id;
    vctx->ident.presence_id = q->presence_id;
    vctx->has_ident = q->presence_id.len ? 1 : 0;
    vctx->call = call;

    ngx_http_set_ctx(fr, vctx, ngx_pubsub_hooks_module);

    fc->data = fr;

    call->start_ev.handler = ngx_pubsub_hook_start_handler;
    call->start_ev.data = call;
    call->start_ev.log = log;
    call->finish_ev.handler = ngx_pubsub_hook_finish_handler;
    call->finish_ev.data = call;
    call->finish_ev.log = log;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->calls[call->kind], 1);
    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->in_flight, 1);

    /*
     * A graceful shutdown (reload, quit) closes the idle connections and
     * then exits at once unless a timer that is not cancelable is pending:
     * posted events would not run first.  A hook started then (the
     * unsubscribe of a streaming or WebSocket subscriber being closed)
     * starts from such a timer instead; its upstream timers keep the worker
     * alive until it is answered.
     */
    if (ngx_exiting) {
        ngx_add_timer(&call->start_ev, 1);
    } else {
        ngx_post_event(&call->start_ev, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_hook_sr_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_pubsub_hook_call_t    *call = static_cast<ngx_pubsub_hook_call_t *>(
                                          data);
    ngx_pubsub_hook_result_t  *res = &call->res;
    ngx_buf_t                 *b;

    if (call->answered) {
        return NGX_OK;
    }

    call->answered = 1;

    if (rc == NGX_OK && sr->headers_out.status >= 100) {
        res->status = sr->headers_out.status;

        if (sr->out && sr->out->buf) {
            b = sr->out->buf;
            res->body.data = b->pos;
            res->body.len = b->last - b->pos;
        }

    } else if (rc >= NGX_HTTP_OK && rc < 600) {
        /* answered by nginx itself: "return 403", or an upstream error */
        res->status = rc;
        res->failed = (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR);

    } else {
        res->status = NGX_HTTP_BAD_GATEWAY;
        res->failed = 1;
    }

    res->content_type = sr->headers_out.content_type;
    res->headers = &sr->headers_out.headers;

    if (res->failed || res->status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        (void) ngx_atomic_fetch_add(
                   &ngx_pubsub_hook_stats->failures[call->kind], 1);

        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "pubsub: %s hook failed with status %ui",
                      ngx_pubsub_hook_names[call->kind], res->status);
    }

    /* never let the detached request be terminated: it is ours to free */
    return NGX_OK;
}


static void
ngx_pubsub_hook_start_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_call_t      *call = static_cast<ngx_pubsub_hook_call_t *>(
                                            ev->data);
    ngx_http_request_t          *sr;
    ngx_http_request_body_t     *rb;
    ngx_chain_t                 *cl;
    ngx_buf_t                   *b;
    ngx_int_t                    rc;
    ngx_pubsub_hook_req_t       *q = call->req;
    static ngx_str_t             post = ngx_string("POST");

    call->ps.handler = ngx_pubsub_hook_sr_done;
    call->ps.data = call;

    rc = ngx_http_subrequest(call->fr, &q->uri, q->args.len ? &q->args : NULL,
                             &sr, &call->ps,
                             NGX_HTTP_SUBREQUEST_IN_MEMORY
                             |NGX_HTTP_SUBREQUEST_WAITED);

    if (rc == NGX_ERROR) {
        call->answered = 1;
        call->res.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        call->res.failed = 1;
        (void) ngx_atomic_fetch_add(
                   &ngx_pubsub_hook_stats->failures[call->kind], 1);
        ngx_pubsub_hook_finish(call);
        return;
    }

    sr->request_body = NULL;
    sr->headers_in.content_length_n = -1;

    if (call->post) {
        rb = static_cast<ngx_http_request_body_t *>(
                 ngx_pcalloc(call->fr->pool, sizeof(ngx_http_request_body_t)));
        if (rb == NULL) {
            goto failed;
        }

        if (call->body.len) {
            b = static_cast<ngx_buf_t *>(ngx_calloc_buf(call->fr->pool));
            cl = ngx_alloc_chain_link(call->fr->pool);
            if (b == NULL || cl == NULL) {
                goto failed;
            }

            b->pos = call->body.data;
            b->last = call->body.data + call->body.len;
            b->start = b->pos;
            b->end = b->last;
            b->memory = 1;
            b->last_buf = 1;
            b->last_in_chain = 1;

            cl->buf = b;
            cl->next = NULL;
            rb->bufs = cl;
        }

        sr->method = NGX_HTTP_POST;
        sr->method_name = post;
        sr->request_body = rb;
        sr->headers_in.content_length_n = call->body.len;
    }

    ngx_http_run_posted_requests(call->fc);
    return;

failed:

    /* the posted subrequest runs and answers; make it an empty GET */
    sr->request_body = NULL;
    ngx_http_run_posted_requests(call->fc);
}


/* the detached request's main request wakes up when its subrequest ended */
static void
ngx_pubsub_hook_parent_handler(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    ctx = static_cast<ngx_pubsub_hook_ctx_t *>(
              ngx_http_get_module_ctx(r, ngx_pubsub_hooks_module));

    if (ctx == NULL || ctx->call == NULL || !ctx->call->answered) {
        return;
    }

    ngx_pubsub_hook_finish(ctx->call);
}


static void
ngx_pubsub_hook_finish(ngx_pubsub_hook_call_t *call)
{
    if (call->finishing) {
        return;
    }

    call->finishing = 1;
    ngx_post_event(&call->finish_ev, &ngx_posted_events);
}


static void
ngx_pubsub_hook_finish_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_call_t  *call = static_cast<ngx_pubsub_hook_call_t *>(
                                        ev->data);
    ngx_http_request_t      *r;
    ngx_connection_t        *c;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->in_flight, -1);

    if (call->internal) {
        (void) ngx_pubsub_guard(call->log, [call] {
            call->internal(call, &call->res);
            return NGX_OK;
        });
    }

    if (call->r && call->done) {
        r = call->r;
        c = r->connection;
        call->r = NULL;

        if (call->cln) {
            call->cln->handler = NULL;
        }

        ngx_http_set_log_request(c->log, r);

        (void) ngx_pubsub_guard(c->log, [call, r] {
            call->done(r, call->data, &call->res);
            return NGX_OK;
        });

        ngx_http_run_posted_requests(c);
    }

    if (call->fr) {
        ngx_http_free_request(call->fr, 0);
    }

    ngx_destroy_pool(call->pool);
}


static void
ngx_pubsub_hook_cancel_cleanup(void *data)
{
    ngx_pubsub_hook_call_t  *call = static_cast<ngx_pubsub_hook_call_t *>(data);

    call->r = NULL;
    call->cln = NULL;
}


void
ngx_pubsub_hook_cancel(ngx_pubsub_hook_call_t *call)
{
    if (call == NULL) {
        return;
    }

    call->r = NULL;

    if (call->cln) {
        call->cln->handler = NULL;
        call->cln = NULL;
    }
}


/* a hook whose answer goes to the client request r */
static ngx_pubsub_hook_call_t *
ngx_pubsub_hook_start_for(ngx_http_request_t *r, ngx_uint_t kind,
    ngx_http_complex_value_t *cv, ngx_uint_t nids, ngx_str_t *ids,
    ngx_str_t sub_type, ngx_str_t pub_type, ngx_str_t *body, ngx_str_t *ct,
    ngx_uint_t bind, ngx_pubsub_hook_done_pt done, void *data)
{
    ngx_pubsub_hook_call_t  *call;

    call = ngx_pubsub_hook_call_alloc(kind, r->connection->log);
    if (call == NULL) {
        return NULL;
    }

    call->req = ngx_pubsub_hook_snapshot(r, call->pool, nids, ids, sub_type,
                                         pub_type);
    if (call->req == NULL
        || ngx_pubsub_hook_target(r, cv, call->pool, &call->req->uri,
                                  &call->req->args) != NGX_OK)
    {
        goto failed;
    }

    if (body) {
        call->post = 1;

        if (ngx_pubsub_dup(call->pool, &call->body, *body) != NGX_OK
            || ngx_pubsub_dup(call->pool, &call->ct, *ct) != NGX_OK)
        {
            goto failed;
        }
    }

    if (bind) {
        call->cln = ngx_pool_cleanup_add(r->pool, 0);
        if (call->cln == NULL) {
            goto failed;
        }

        call->cln->handler = ngx_pubsub_hook_cancel_cleanup;
        call->cln->data = call;
    }

    call->r = r;
    call->done = done;
    call->data = data;

    if (ngx_pubsub_hook_launch(call) != NGX_OK) {
        if (call->cln) {
            call->cln->handler = NULL;
        }
        goto failed;
    }

    return call;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "pubsub: could not start the %s hook",
                  ngx_pubsub_hook_names[kind]);

    if (call->fr) {
        ngx_http_free_request(call->fr, 0);
    }

    ngx_destroy_pool(call->pool);

    return NULL;
}


/* publisher upstream */

ngx_uint_t
ngx_pubsub_hook_has_upstream(ngx_http_request_t *r)
{
    return ngx_pubsub_hook_active(ngx_pubsub_hooks_conf(r)->upstream);
}


ngx_pubsub_hook_call_t *
ngx_pubsub_hook_publish_upstream(ngx_http_request_t *r,
    ngx_pubsub_channels_t *ch, ngx_str_t body, ngx_str_t ct,
    ngx_str_t publisher_type, ngx_uint_t bind, ngx_pubsub_hook_done_pt done,
    void *data)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);

    if (!ngx_pubsub_hook_active(hlcf->upstream)) {
        return NULL;
    }

    return ngx_pubsub_hook_start_for(r, NGX_PUBSUB_HOOK_UPSTREAM,
                                     hlcf->upstream, ch->n, ch->id,
                                     ngx_pubsub_cstr(""), publisher_type,
                                     &body, &ct, bind, done, data);
}


/* subscribe / unsubscribe sessions */

static void
ngx_pubsub_session_unsub_now(ngx_pubsub_hook_session_t *s)
{
    ngx_pubsub_hook_call_t  *call;

    if (!s->has_unsub) {
        ngx_pubsub_session_destroy(s);
        return;
    }

    call = ngx_pubsub_hook_call_alloc(NGX_PUBSUB_HOOK_UNSUBSCRIBE,
                                      ngx_cycle->log);
    if (call == NULL) {
        ngx_pubsub_session_destroy(s);
        return;
    }

    call->req = ngx_pubsub_hook_snapshot_copy(call->pool, s->req);

    if (call->req == NULL) {
        goto failed;
    }

    if (ngx_pubsub_dup(call->pool, &call->req->uri, s->unsub_uri) != NGX_OK
        || ngx_pubsub_dup(call->pool, &call->req->args, s->unsub_args)
           != NGX_OK)
    {
        goto failed;
    }

    if (ngx_pubsub_hook_launch(call) != NGX_OK) {
        goto failed;
    }

    ngx_pubsub_session_destroy(s);
    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "pubsub: out of memory: an unsubscribe hook was not sent");

    if (call->fr) {
        ngx_http_free_request(call->fr, 0);
    }

    ngx_destroy_pool(call->pool);
    ngx_pubsub_session_destroy(s);
}


static void
ngx_pubsub_session_sub_done(ngx_pubsub_hook_call_t *call,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_hook_session_t  *s = static_cast<ngx_pubsub_hook_session_t *>(
                                        call->idata);

    (void) res;

    s->sub_inflight = 0;

    if (s->unsub_wanted) {
        ngx_pubsub_session_unsub_now(s);
    }
}


static void
ngx_pubsub_session_destroy(ngx_pubsub_hook_session_t *s)
{
    if (s->grace_ev.timer_set) {
        ngx_del_timer(&s->grace_ev);
    }

    delete s->identity;
    delete s->parked_key;
    s->identity = NULL;
    s->parked_key = NULL;

    ngx_destroy_pool(s->pool);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_subscribed(ngx_http_request_t *r, ngx_str_t id,
    ngx_uint_t transport)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);
    ngx_pubsub_hook_session_t    *s;
    ngx_pubsub_hook_call_t       *call;
    ngx_pool_t                   *pool;
    ngx_str_t                     none = ngx_pubsub_cstr("");

    if (!ngx_pubsub_hook_active(hlcf->subscribe)
        && !ngx_pubsub_hook_active(hlcf->unsubscribe))
    {
        return NULL;
    }

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    s = static_cast<ngx_pubsub_hook_session_t *>(
            ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_session_t)));
    if (s == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    s->pool = pool;

    s->req = ngx_pubsub_hook_snapshot(r, pool, 1, &id,
                                      ngx_pubsub_transport_name(transport),
                                      none);
    if (s->req == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    if (ngx_pubsub_hook_active(hlcf->unsubscribe)) {
        if (ngx_pubsub_hook_target(r, hlcf->unsubscribe, pool, &s->unsub_uri,
                                   &s->unsub_args) != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return NULL;
        }

        s->has_unsub = 1;
    }

    if (!ngx_pubsub_hook_active(hlcf->subscribe)) {
        return s;
    }

    call = ngx_pubsub_hook_call_alloc(NGX_PUBSUB_HOOK_SUBSCRIBE,
                                      r->connection->log);
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    call->req = ngx_pubsub_hook_snapshot_copy(call->pool, s->req);
    call->internal = ngx_pubsub_session_sub_done;
    call->idata = s;

    if (call->req == NULL
        || ngx_pubsub_hook_target(r, hlcf->subscribe, call->pool,
                                  &call->req->uri, &call->req->args) != NGX_OK
        || ngx_pubsub_hook_launch(call) != NGX_OK)
    {
        if (call->fr) {
            ngx_http_free_request(call->fr, 0);
        }
        ngx_destroy_pool(call->pool);
        ngx_destroy_pool(pool);
        return NULL;
    }

    s->sub_inflight = 1;

    return s;
}


void
ngx_pubsub_hook_unsubscribed(ngx_pubsub_hook_session_t *s)
{
    if (s == NULL || s->ended) {
        return;
    }

    s->ended = 1;

    if (s->sub_inflight) {
        s->unsub_wanted = 1;
        return;
    }

    ngx_pubsub_session_unsub_now(s);
}


/* polling sessions */

static std::string
ngx_pubsub_poll_key(ngx_pubsub_hook_session_t *s, std::string_view next)
{
    std::string  k;

    k.append(ngx_pubsub_sv(s->chan_key));
    k.push_back('\n');
    k.append(next);
    k.push_back('\n');
    k.append(*s->identity);

    return k;
}


/* a single channel's position as a poll key part ("" before any message) */
static std::string
ngx_pubsub_poll_pos(const pubsub::MsgId &id)
{
    return id.isNull() ? std::string() : pubsub::formatMsgId(id);
}


static std::string
ngx_pubsub_poll_identity(ngx_http_request_t *r)
{
    static const char  *names[] = { "User-Agent", "Cookie", "Authorization" };
    std::string         id;
    ngx_table_elt_t    *h;
    ngx_str_t           tok;

    id.append(ngx_pubsub_sv(r->connection->addr_text));

    for (const char *n : names) {
        id.push_back('\n');
        h = ngx_pubsub_find_header(r, n);
        if (h) {
            id.append(ngx_pubsub_sv(h->value));
        }
    }

    /* a token in the query string (pubsub_token $arg_token) */
    if (ngx_http_arg(r, (u_char *) "token", 5, &tok) == NGX_OK) {
        id.push_back('\n');
        id.append(ngx_pubsub_sv(tok));
    }

    return id;
}


static void
ngx_pubsub_poll_unpark(ngx_pubsub_hook_session_t *s)
{
    if (s->parked_key && ngx_pubsub_poll_sessions) {
        auto range = ngx_pubsub_poll_sessions->equal_range(*s->parked_key);

        for (auto it = range.first; it != range.second; ++it) {
            if (it->second == s) {
                ngx_pubsub_poll_sessions->erase(it);
                break;
            }
        }
    }

    delete s->parked_key;
    s->parked_key = NULL;

    if (s->grace_ev.timer_set) {
        ngx_del_timer(&s->grace_ev);
    }
}


static void
ngx_pubsub_poll_grace_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_session_t  *s = static_cast<ngx_pubsub_hook_session_t *>(
                                        ev->data);

    ngx_pubsub_poll_unpark(s);
    ngx_pubsub_hook_unsubscribed(s);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_poll_begin(ngx_http_request_t *r, ngx_str_t id, ngx_str_t key,
    ngx_uint_t transport, const pubsub::MsgId &resume)
{
    std::string  at;

    try {
        at = ngx_pubsub_poll_pos(resume);

    } catch (...) {
        return ngx_pubsub_hook_subscribed(r, id, transport);
    }

    return ngx_pubsub_hook_poll_begin_at(r, id, key, transport, at);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_poll_begin_at(ngx_http_request_t *r, ngx_str_t id,
    ngx_str_t key, ngx_uint_t transport, std::string_view resume)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);
    ngx_pubsub_hook_session_t    *s;
    std::string                   ident, k;

    if (!ngx_pubsub_hook_active(hlcf->subscribe)
        && !ngx_pubsub_hook_active(hlcf->unsubscribe))
    {
        return NULL;
    }

    if (ngx_pubsub_poll_sessions == NULL) {
        ngx_pubsub_poll_sessions = new ngx_pubsub_poll_map_t();
    }

    ident = ngx_pubsub_poll_identity(r);

    k.append(ngx_pubsub_sv(key));
    k.push_back('\n');
    k.append(resume);
    k.push_back('\n');
    k.append(ident);

    auto it = ngx_pubsub_poll_sessions->find(k);

    if (it != ngx_pubsub_poll_sessions->end()) {
        s = it->second;
        ngx_pubsub_poll_unpark(s);
        return s;
    }

    s = ngx_pubsub_hook_subscribed(r, id, transport);
    if (s == NULL) {
        return NULL;
    }

    s->poll = 1;
    s->grace = hlcf->poll_grace;

    s->identity = new (std::nothrow) std::string(std::move(ident));
    if (s->identity == NULL
        || ngx_pubsub_dup(s->pool, &s->chan_key, key) != NGX_OK)
    {
        /* cannot park it: a session of one poll */
        s->grace = 0;
    }

    s->grace_ev.handler = ngx_pubsub_poll_grace_handler;
    s->grace_ev.data = s;
    s->grace_ev.log = ngx_cycle->log;

    return s;
}


void
ngx_pubsub_hook_poll_end(ngx_pubsub_hook_session_t *s,
    const pubsub::MsgId &next, ngx_uint_t deleted)
{
    std::string  at;

    if (s == NULL || s->ended) {
        return;
    }

    try {
        at = ngx_pubsub_poll_pos(next);

    } catch (...) {
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    ngx_pubsub_hook_poll_end_at(s, at, deleted);
}


void
ngx_pubsub_hook_poll_end_at(ngx_pubsub_hook_session_t *s,
    std::string_view next, ngx_uint_t deleted)
{
    if (s == NULL || s->ended) {
        return;
    }

    /* a worker shutting down gets no more polls: end now */
    if (deleted || s->grace == 0 || ngx_exiting || ngx_terminate
        || ngx_quit)
    {
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    try {
        s->parked_key = new std::string(ngx_pubsub_poll_key(s, next));
        ngx_pubsub_poll_sessions->emplace(*s->parked_key, s);

    } catch (...) {
        delete s->parked_key;
        s->parked_key = NULL;
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    ngx_add_timer(&s->grace_ev, s->grace);
}


static void
ngx_pubsub_hooks_exit_process(ngx_cycle_t *cycle)
{
    (void) cycle;

    /* parked sessions: nothing can be sent any more; forget them */
    delete ngx_pubsub_poll_sessions;
    ngx_pubsub_poll_sessions = NULL;
}


/* access phase: token, then the authorize hook */

static ngx_int_t
ngx_pubsub_hook_respond_401(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_hook_ctx_t *ctx,
    const std::string &reason)
{
    ngx_int_t  rc;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->token_refused, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pubsub: token refused: %s", reason.c_str());

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    (void) ngx_pubsub_cors(r, plcf, ctx->role_sub);

    if (ngx_pubsub_set_header(r, "WWW-Authenticate",
                              "Bearer error=\"invalid_token\"") != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pubsub_respond_text(r, NGX_HTTP_UNAUTHORIZED, "text/plain",
                                 reason + "\n");
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_pubsub_hook_check_token(ngx_http_request_t *r,
    ngx_pubsub_hooks_loc_conf_t *hlcf, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_str_t            value;
    pubsub::TokenResult  res;

    if (ngx_http_complex_value(r, hlcf->token, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    res = pubsub::verifyToken(ngx_pubsub_sv(value), *hlcf->token_key,
                              ngx_time());

    if (!res.ok) {
        return ngx_pubsub_hook_respond_401(r, plcf, ctx, res.reason);
    }

    for (ngx_uint_t i = 0; i < ctx->nids + ctx->npub_ids; i++) {
        ngx_str_t id = (i < ctx->nids) ? ctx->ids[i]
                                       : ctx->pub_ids[i - ctx->nids];

        if (!res.allowsChannel(ngx_pubsub_sv(id))) {
            return ngx_pubsub_hook_respond_401(r, plcf, ctx,
                       pubsub::kTokenChannelDenied);
        }
    }

    if (res.hasSub) {
        ctx->ident.presence_id = ngx_pubsub_pstr(r->pool, res.sub);
        ctx->ident.presence_info = ngx_pubsub_pstr(r->pool, res.infoJson);
        ctx->ident.presence_info.len = res.infoJson.size();
        ctx->has_ident = 1;
    }

    ctx->ident.token_verified = 1;

    return NGX_OK;
}


static ngx_uint_t
ngx_pubsub_hook_pass_header(ngx_str_t key)
{
    static const char  *hop[] = {
        "content-length", "content-type", "connection", "keep-alive",
        "transfer-encoding", "server", "date", "upgrade", "te", "trailer",
        "proxy-authenticate",
    };

    for (const char *s : hop) {
        size_t n = ngx_strlen(s);

        if (key.len == n
            && ngx_strncasecmp(key.data, reinterpret_cast<u_char *>(
                                   const_cast<char *>(s)), n) == 0)
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_pubsub_hook_auth_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_hook_ctx_t  *ctx = static_cast<ngx_pubsub_hook_ctx_t *>(data);
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_keyval_t           *kv;
    ngx_uint_t              i;

    ctx->call = NULL;

    if (!res->failed && res->status >= 200 && res->status < 300) {
        ctx->auth_state = NGX_PUBSUB_AUTH_ACCEPTED;

    } else {
        ctx->auth_state = NGX_PUBSUB_AUTH_REFUSED;
        ctx->auth_status = res->status;
        ctx->auth_failed = res->failed;

        (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->refused, 1);

        if (ngx_pubsub_dup(r->pool, &ctx->auth_ct, res->content_type)
            != NGX_OK
            || ngx_pubsub_dup(r->pool, &ctx->auth_body, res->body) != NGX_OK)
        {
            ctx->auth_failed = 1;
            ctx->auth_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->auth_headers = ngx_array_create(r->pool, 4, sizeof(ngx_keyval_t));
        if (ctx->auth_headers == NULL) {
            ctx->auth_failed = 1;
            ctx->auth_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* response headers: identity (accepted) or relayed (refused) */

    for (part = res->headers ? &res->headers->part : NULL; part;
         part = part->next)
    {
        h = static_cast<ngx_table_elt_t *>(part->elts);

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            if (ctx->auth_state == NGX_PUBSUB_AUTH_ACCEPTED) {
                if (ctx->has_ident) {
                    continue;   /* the token's sub wins */
                }

                if (h[i].key.len == sizeof("X-Presence-Id") - 1
                    && ngx_strncasecmp(h[i].key.data,
                           (u_char *) "X-Presence-Id", h[i].key.len) == 0)
                {
                    (void) ngx_pubsub_dup(r->pool, &ctx->ident.presence_id,
                                          h[i].value);
                }

                if (h[i].key.len == sizeof("X-Presence-Info") - 1
                    && ngx_strncasecmp(h[i].key.data,
                           (u_char *) "X-Presence-Info", h[i].key.len) == 0)
                {
                    (void) ngx_pubsub_dup(r->pool, &ctx->ident.presence_info,
                                          h[i].value);
                }

                continue;
            }

            if (ctx->auth_headers == NULL
                || !ngx_pubsub_hook_pass_header(h[i].key))
            {
                continue;
            }

            kv = static_cast<ngx_keyval_t *>(ngx_array_push(ctx->auth_headers));
            if (kv == NULL
                || ngx_pubsub_dup(r->pool, &kv->key, h[i].key) != NGX_OK
                || ngx_pubsub_dup(r->pool, &kv->value, h[i].value) != NGX_OK)
            {
                ctx->auth_failed = 1;
                ctx->auth_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
                break;
            }
        }
    }

    if (ctx->auth_state == NGX_PUBSUB_AUTH_ACCEPTED
        && ctx->ident.presence_id.len && !ctx->has_ident)
    {
        ctx->has_ident = 1;
    }

    /* back to the access phase, which continues or answers */
    r->write_event_handler(r);
}


static ngx_int_t
ngx_pubsub_hook_send_refusal(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_int_t      rc;
    ngx_keyval_t  *kv;
    ngx_uint_t     i;
    char           text[128];
    int            n;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    (void) ngx_pubsub_cors(r, plcf, ctx->role_sub);

    if (ctx->auth_failed) {
        n = snprintf(text, sizeof(text),
                     "The authorization hook failed (%u).\n",
                     static_cast<unsigned>(ctx->auth_status));
        rc = ngx_pubsub_respond_text(r, ctx->auth_status, "text/plain",
                                     std::string_view(text, n));
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    if (ctx->auth_headers) {
        kv = static_cast<ngx_keyval_t *>(ctx->auth_headers->elts);

        for (i = 0; i < ctx->auth_headers->nelts; i++) {
            if (ngx_pubsub_set_header(r, ngx_pubsub_sv(kv[i].key),
                                      ngx_pubsub_sv(kv[i].value)) != NGX_OK)
            {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return NGX_DONE;
            }
        }
    }

    rc = ngx_pubsub_respond_text(r, ctx->auth_status,
                                 ngx_pubsub_sv(ctx->auth_ct),
                                 ngx_pubsub_sv(ctx->auth_body));
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_pubsub_hooks_access_impl(ngx_http_request_t *r)
{
    ngx_pubsub_loc_conf_t        *plcf;
    ngx_pubsub_hooks_loc_conf_t  *hlcf;
    ngx_pubsub_hook_ctx_t        *ctx;
    ngx_int_t                     rc;

    if (r != r->main || r->method == NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module));
    if (plcf->roles == 0) {
        return NGX_DECLINED;
    }

    hlcf = ngx_pubsub_hooks_conf(r);

    if (!ngx_pubsub_hook_active(hlcf->authorize) && hlcf->token_key == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_pubsub_hook_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->auth_state) {
    case NGX_PUBSUB_AUTH_WAITING:
        return NGX_AGAIN;
    case NGX_PUBSUB_AUTH_ACCEPTED:
        return NGX_DECLINED;
    case NGX_PUBSUB_AUTH_REFUSED:
        return ngx_pubsub_hook_send_refusal(r, plcf, ctx);
    default:
        break;
    }

    /* requests the content handler refuses anyway (405, 406, 400, 403) */
    if ((!ctx->role_sub && !ctx->role_pub) || ctx->bad_ids
        || ngx_pubsub_origin_allowed(r, plcf) != NGX_OK)
    {
        ctx->auth_state = NGX_PUBSUB_AUTH_ACCEPTED;
        return NGX_DECLINED;
    }

    if (hlcf->token_key) {
        rc = ngx_pubsub_hook_check_token(r, hlcf, plcf, ctx);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ngx_pubsub_hook_active(hlcf->authorize)) {
        ctx->auth_state = NGX_PUBSUB_AUTH_ACCEPTED;
        return NGX_DECLINED;
    }

    ctx->call = ngx_pubsub_hook_start_for(r, NGX_PUBSUB_HOOK_AUTHORIZE,
                                          hlcf->authorize, ctx->nids,
                                          ctx->ids, ctx->sub_type,
                                          ctx->pub_type, NULL, NULL, 1,
                                          ngx_pubsub_hook_auth_done, ctx);
    if (ctx->call == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->auth_state = NGX_PUBSUB_AUTH_WAITING;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_pubsub_hooks_access(ngx_http_request_t *r)
{
    ngx_int_t  rc = ngx_pubsub_guard(r->connection->log, [r] {
        return ngx_pubsub_hooks_access_impl(r);
    });

    return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


/* configuration */

static void *
ngx_pubsub_hooks_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pubsub_hooks_loc_conf_t  *conf;

    conf = static_cast<ngx_pubsub_hooks_loc_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_hooks_loc_conf_t)));
    if (conf == NULL) {
        return NULL;
    }

    conf->poll_grace = NGX_CONF_UNSET_MSEC;
    conf->presence = NGX_CONF_UNSET_UINT;

    return conf;
}


static void *
ngx_pubsub_hooks_create_main_conf(ngx_conf_t *cf)
{
    ngx_pubsub_hooks_main_conf_t  *hmcf;

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_hooks_main_conf_t)));
    if (hmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&hmcf->presence, cf->pool, 4,
                       sizeof(ngx_pubsub_presence_target_t)) != NGX_OK)
    {
        return NULL;
    }

    return hmcf;
}


/* pubsub_presence_request URI | off: a plain URI (no variables) */
static char *
ngx_pubsub_presence_request_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_pubsub_hooks_loc_conf_t   *hlcf;
    ngx_pubsub_hooks_main_conf_t  *hmcf;
    ngx_pubsub_presence_target_t  *t;
    ngx_str_t                     *value;
    u_char                        *q;

    hlcf = static_cast<ngx_pubsub_hooks_loc_conf_t *>(conf);

    if (hlcf->presence != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        hlcf->presence = 0;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_request \"%V\" must be a URI "
                           "starting with \"/\"", &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '$')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_request \"%V\" must not use "
                           "variables: events outlive the request",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_pubsub_hooks_module));

    t = static_cast<ngx_pubsub_presence_target_t *>(
            ngx_array_push(&hmcf->presence));
    if (t == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    t->ctx = static_cast<ngx_http_conf_ctx_t *>(cf->ctx);
    q = ngx_strlchr(value[1].data, value[1].data + value[1].len, '?');
    t->uri.data = value[1].data;
    t->uri.len = q ? (size_t) (q - value[1].data) : value[1].len;
    t->args.data = q ? q + 1 : NULL;
    t->args.len = q ? (size_t) (value[1].data + value[1].len - q - 1) : 0;

    hlcf->presence = hmcf->presence.nelts;

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_hooks_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pubsub_hooks_loc_conf_t  *prev =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(parent);
    ngx_pubsub_hooks_loc_conf_t  *conf =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(child);

    if (conf->authorize == NULL) {
        conf->authorize = prev->authorize;
    }
    if (conf->subscribe == NULL) {
        conf->subscribe = prev->subscribe;
    }
    if (conf->unsubscribe == NULL) {
        conf->unsubscribe = prev->unsubscribe;
    }
    if (conf->upstream == NULL) {
        conf->upstream = prev->upstream;
    }
    if (conf->token == NULL) {
        conf->token = prev->token;
    }
    ngx_conf_merge_uint_value(conf->presence, prev->presence, 0);
    if (conf->token_key == NULL && !conf->token_key_off) {
        conf->token_key = prev->token_key;
    }

    if (conf->token_key && conf->token == NULL) {
        ngx_http_compile_complex_value_t  ccv;
        ngx_str_t                         v;

        conf->token = static_cast<ngx_http_complex_value_t *>(
                          ngx_palloc(cf->pool,
                                     sizeof(ngx_http_complex_value_t)));
        if (conf->token == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        v = ngx_pubsub_cstr("$http_authorization");

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &v;
        ccv.complex_value = conf->token;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    ngx_conf_merge_msec_value(conf->poll_grace, prev->poll_grace, 5000);

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_hook_uri_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                              *p = static_cast<char *>(conf);
    ngx_http_complex_value_t         **field;
    ngx_http_compile_complex_value_t   ccv;
    ngx_str_t                         *value;

    field = reinterpret_cast<ngx_http_complex_value_t **>(p + cmd->offset);

    if (*field != NULL) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *field = &ngx_pubsub_hook_off;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || (value[1].data[0] != '/'
                              && value[1].data[0] != '$'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": the hook URI \"%V\" must be a local URI "
                           "starting with \"/\" (a location that "
                           "proxy_passes to the application)",
                           &cmd->name, &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    *field = static_cast<ngx_http_complex_value_t *>(
                 ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t)));
    if (*field == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = *field;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


static void
ngx_pubsub_token_key_cleanup(void *data)
{
    delete static_cast<pubsub::TokenKey *>(data);
}


static char *
ngx_pubsub_token_key_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(conf);
    ngx_str_t                    *value, path;
    ngx_pool_cleanup_t           *cln;
    std::string                   spec, error;
    size_t                        colon;

    (void) cmd;

    if (hlcf->token_key || hlcf->token_key_off) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        hlcf->token_key_off = 1;
        return NGX_CONF_OK;
    }

    std::string_view arg = ngx_pubsub_sv(value[1]);
    colon = arg.find(':');

    if (colon == std::string_view::npos) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_token_key: expected hs256:SECRET, "
                           "rs256:/path/pub.pem or es256:/path/pub.pem, "
                           "got \"%V\"", &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    spec.assign(arg);

    std::string_view alg = arg.substr(0, colon);
    bool is_file = alg.size() == 5
                   && (ngx_strncasecmp((u_char *) alg.data(),
                                       (u_char *) "rs256", 5) == 0
                       || ngx_strncasecmp((u_char *) alg.data(),
                                          (u_char *) "es256", 5) == 0);

    if (is_file && colon + 1 < arg.size()) {
        path.data = value[1].data + colon + 1;
        path.len = value[1].len - colon - 1;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        spec.assign(alg);
        spec.push_back(':');
        spec.append(ngx_pubsub_sv(path));
    }

    std::unique_ptr<pubsub::TokenKey> key = pubsub::TokenKey::load(spec, error);

    if (!key) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "pubsub_token_key: %s",
                           error.c_str());
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    hlcf->token_key = key.release();
    cln->handler = ngx_pubsub_token_key_cleanup;
    cln->data = hlcf->token_key;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_pubsub_hooks_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));

    h = static_cast<ngx_http_handler_pt *>(
            ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_pubsub_hooks_access;

    return NGX_OK;
}


/* presence events (pubsub_presence_request) */

ngx_uint_t
ngx_pubsub_presence_hook_index(ngx_http_request_t *r)
{
    ngx_uint_t  i = ngx_pubsub_hooks_conf(r)->presence;

    return i == NGX_CONF_UNSET_UINT ? 0 : i;
}


ngx_int_t
ngx_pubsub_hook_presence(ngx_uint_t index, ngx_str_t json,
    ngx_str_t presence_id, ngx_str_t channel_id)
{
    ngx_pubsub_hooks_main_conf_t  *hmcf;
    ngx_pubsub_presence_target_t  *t;
    ngx_pubsub_hook_call_t        *call;
    ngx_pubsub_hook_req_t         *q;
    struct sockaddr_in            *sin;
    static ngx_str_t               post = ngx_string("POST");
    static ngx_str_t               ct = ngx_string("application/json");
    static ngx_str_t               local = ngx_string("127.0.0.1");

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_pubsub_hooks_module));

    if (hmcf == NULL || index == 0 || index > hmcf->presence.nelts) {
        return NGX_DECLINED;
    }

    t = static_cast<ngx_pubsub_presence_target_t *>(hmcf->presence.elts)
        + (index - 1);

    call = ngx_pubsub_hook_call_alloc(NGX_PUBSUB_HOOK_PRESENCE,
                                      ngx_cycle->log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    q = static_cast<ngx_pubsub_hook_req_t *>(
            ngx_pcalloc(call->pool, sizeof(ngx_pubsub_hook_req_t)));
    sin = static_cast<struct sockaddr_in *>(
              ngx_pcalloc(call->pool, sizeof(struct sockaddr_in)));
    if (q == NULL || sin == NULL) {
        goto failed;
    }

    /* a request of nobody: events outlive their clients */
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    q->main_conf = t->ctx->main_conf;
    q->srv_conf = t->ctx->srv_conf;
    q->loc_conf = t->ctx->loc_conf;
    q->method = NGX_HTTP_POST;
    q->method_name = post;
    q->http_version = NGX_HTTP_VERSION_11;
    q->sockaddr = reinterpret_cast<struct sockaddr *>(sin);
    q->socklen = sizeof(struct sockaddr_in);
    q->addr_text = local;
    q->uri = t->uri;
    q->args = t->args;
    q->orig_uri = t->uri;
    q->unparsed_uri = t->uri;
    q->request_line = t->uri;
    q->headers = static_cast<ngx_table_elt_t *>(
                     ngx_pcalloc(call->pool, sizeof(ngx_table_elt_t)));
    q->ids = static_cast<ngx_str_t *>(
                 ngx_pcalloc(call->pool, sizeof(ngx_str_t)));
    if (q->headers == NULL || q->ids == NULL
        || ngx_pubsub_dup(call->pool, &q->presence_id, presence_id) != NGX_OK)
    {
        goto failed;
    }

    if (channel_id.len) {
        q->nids = 1;
        if (ngx_pubsub_dup(call->pool, &q->ids[0], channel_id) != NGX_OK) {
            goto failed;
        }
    }

    call->req = q;
    call->post = 1;
    call->ct = ct;

    if (ngx_pubsub_dup(call->pool, &call->body, json) != NGX_OK
        || ngx_pubsub_hook_launch(call) != NGX_OK)
    {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "pubsub: out of memory: a presence hook was not sent");

    if (call->fr) {
        ngx_http_free_request(call->fr, 0);
    }

    ngx_destroy_pool(call->pool);

    return NGX_ERROR;
}
