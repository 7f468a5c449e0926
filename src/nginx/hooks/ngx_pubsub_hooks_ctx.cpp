/*
 * ngx_pubsub hooks: the per-request context (ngx_pubsub_hook_ctx_t) that
 * every hook file uses: what a client's request is (subscriber, publisher,
 * transport, presence API query), its channel ids and group, its identity
 * (a token's or the authorize hook's), its message ids, and the access
 * check's state.  A detached hook
 * request has one too: the hook location's variables read it.
 */

#include "ngx_pubsub_hooks_internal.h"


ngx_str_t
ngx_pubsub_transport_name(ngx_uint_t transport)
{
    switch (transport) {
    case NGX_PUBSUB_SUB_WEBSOCKET:
        return ngx_pubsub_hook_cstr("websocket");
    case NGX_PUBSUB_SUB_EVENTSOURCE:
        return ngx_pubsub_hook_cstr("eventsource");
    case NGX_PUBSUB_SUB_LONGPOLL:
        return ngx_pubsub_hook_cstr("longpoll");
    case NGX_PUBSUB_SUB_INTERVALPOLL:
        return ngx_pubsub_hook_cstr("intervalpoll");
    case NGX_PUBSUB_SUB_CHUNKED:
        return ngx_pubsub_hook_cstr("http-chunked");
    case NGX_PUBSUB_SUB_MULTIPART:
        return ngx_pubsub_hook_cstr("http-multipart");
    case NGX_PUBSUB_SUB_RAWSTREAM:
        return ngx_pubsub_hook_cstr("http-raw-stream");
    default:
        break;
    }

    return ngx_pubsub_hook_cstr("");
}


ngx_pubsub_hook_ctx_t *
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


/* what the request is: subscriber and/or publisher, and its transport */
static void
ngx_pubsub_hook_roles(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_uint_t  t;

    if (r->method == NGX_HTTP_GET && ngx_pubsub_is_websocket(r)) {
        if (plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET) {
            ctx->role_sub = 1;
            ctx->sub_type = ngx_pubsub_hook_cstr("websocket");
        }
        if (plcf->pub_roles & NGX_PUBSUB_PUB_WEBSOCKET) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_hook_cstr("websocket");
        }

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        t = plcf->sub_roles ? ngx_pubsub_pick_transport(r, plcf->sub_roles) : 0;

        if (t) {
            ctx->role_sub = 1;
            ctx->sub_type = ngx_pubsub_transport_name(t);

        } else if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_hook_cstr("http");
        }

    } else if (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_DELETE)) {
        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            ctx->role_pub = 1;
            ctx->pub_type = ngx_pubsub_hook_cstr("http");
        }
    }
}


/* the channel ids of r as a subscriber (pub 0) or publisher (pub 1) */
static ngx_int_t
ngx_pubsub_hook_eval_ids(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t pub, ngx_pubsub_channels_t *ch, ngx_uint_t *n, ngx_str_t **ids)
{
    ngx_int_t    rc;
    const char  *err;

    rc = ngx_pubsub_channels_eval(r, plcf, pub, ch, &err);
    if (rc != NGX_OK) {
        return rc;
    }

    *n = ch->n;
    *ids = static_cast<ngx_str_t *>(
               ngx_palloc(r->pool, sizeof(ngx_str_t) * (ch->n + 1)));
    if (*ids == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(*ids, ch->id, sizeof(ngx_str_t) * ch->n);

    return NGX_OK;
}


/* the channel group of evaluated ids: their key is "group/id" */
static void
ngx_pubsub_hook_set_group(ngx_pubsub_hook_ctx_t *ctx,
    ngx_pubsub_channels_t *ch)
{
    if (ch->n == 0 || ch->key[0].len <= ch->id[0].len) {
        return;
    }

    ctx->group.data = ch->key[0].data;
    ctx->group.len = ch->key[0].len - ch->id[0].len - 1;
}


/*
 * A presence API GET: a user's state (?user=, as the API reads it: the
 * first argument of that exact name, URL-decoded) or a channel's members.
 */
static ngx_int_t
ngx_pubsub_hook_classify_presence(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_str_t               v;
    u_char                 *dst, *src;
    ngx_pubsub_channels_t  *ch;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_OK;    /* 405 */
    }

    ctx->role_presence = 1;
    ctx->sub_type = ngx_pubsub_hook_cstr("presence-api");

    if (ngx_pubsub_query_arg(r, "user", &v)) {
        ctx->has_user = 1;

        if (v.len) {
            dst = static_cast<u_char *>(ngx_pnalloc(r->pool, v.len));
            if (dst == NULL) {
                return NGX_ERROR;
            }

            ctx->user.data = dst;
            src = v.data;
            ngx_unescape_uri(&dst, &src, v.len, 0);
            ctx->user.len = dst - ctx->user.data;
        }

        return NGX_OK;
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_pubsub_hook_eval_ids(r, plcf, 0, ch, &ctx->nids, &ctx->ids);

    if (rc == NGX_DECLINED) {
        ctx->bad_ids = 1;    /* 400 */
        return NGX_OK;
    }

    if (rc == NGX_OK) {
        ngx_pubsub_hook_set_group(ctx, ch);
    }

    return rc;
}


/* what the request is (roles, transport) and its channel ids */
static ngx_int_t
ngx_pubsub_hook_classify(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_pubsub_channels_t  *ch;

    ngx_str_set(&ctx->group, "default");

    if (r->method == NGX_HTTP_OPTIONS) {
        return NGX_OK;
    }

    if (plcf->presence_api) {
        return ngx_pubsub_hook_classify_presence(r, plcf, ctx);
    }

    /*
     * A protocol whose channels come later, over the socket (Pusher): its
     * handshake is a subscriber's, with no channel yet (tokens and
     * pubsub_authorize_request see no channel id).
     */
    if (plcf->presence_channels && r->method == NGX_HTTP_GET
        && ngx_pubsub_is_websocket(r))
    {
        ctx->role_sub = 1;
        ctx->sub_type = ngx_pubsub_hook_cstr("websocket");
        ctx->nids = 0;
        return NGX_OK;
    }

    ngx_pubsub_hook_roles(r, plcf, ctx);

    if (!ctx->role_sub && !ctx->role_pub) {
        return NGX_OK;
    }

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_pubsub_hook_eval_ids(r, plcf, ctx->role_sub ? 0 : 1, ch,
                                  &ctx->nids, &ctx->ids);

    if (rc == NGX_OK) {
        ngx_pubsub_hook_set_group(ctx, ch);
    }

    /*
     * A WebSocket that subscribes and publishes: its publisher channels
     * (pubsub_publisher_channel_id) are in a token's scope too.
     */
    if (rc == NGX_OK && ctx->role_sub && ctx->role_pub) {
        rc = ngx_pubsub_hook_eval_ids(r, plcf, 1, ch, &ctx->npub_ids,
                                      &ctx->pub_ids);
    }

    if (rc == NGX_DECLINED) {
        ctx->bad_ids = 1;
        return NGX_OK;
    }

    return rc;
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

    plcf = ngx_pubsub_get_loc_conf(r);
    if (plcf->roles == 0 && !plcf->presence_api && !plcf->presence_channels) {
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
ngx_pubsub_hook_ctx_t *
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
    plcf = ngx_pubsub_get_loc_conf(mr);

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
void
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
