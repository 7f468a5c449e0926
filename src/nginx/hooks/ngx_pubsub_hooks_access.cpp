/*
 * ngx_pubsub hooks: the access phase (docs/hooks.md, "Authorize";
 * docs/tokens.md; SPEC section 11).  For every request that reaches a
 * pubsub location or a presence API location (OPTIONS excepted, WebSocket
 * handshakes included): the token is checked first (pubsub_token_key: JWT,
 * its channel scope, its sub as the presence identity), then the authorize
 * hook is sent and the request waits for it; a refusal or a failed hook is
 * the client's answer.
 */

#include "ngx_pubsub_hooks_internal.h"

#include <string>


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


/*
 * The token's scope (SPEC section 11, docs/tokens.md): "channels" for
 * subscribing and presence reads, "publish" for publishing; the reason of
 * a refusal, or NULL.  A WebSocket that both subscribes and publishes is
 * a subscriber: without "publish" for its publisher channels it stays
 * one, and the messages it sends are refused (ctx->publish_denied).
 */
static const char *
ngx_pubsub_hook_token_scope(ngx_pubsub_hooks_loc_conf_t *hlcf,
    ngx_pubsub_hook_ctx_t *ctx, const pubsub::TokenResult &res)
{
    ngx_uint_t              i;
    std::string_view        group = ngx_pubsub_sv(ctx->group);
    pubsub::TokenScope      scope;

    if (ctx->role_presence && ctx->has_user) {
        /* a user's whereabouts: that user's token, or the authorize hook */
        if ((res.hasSub && res.sub == ngx_pubsub_sv(ctx->user))
            || ngx_pubsub_hook_active(hlcf->authorize))
        {
            return NULL;
        }

        return pubsub::kTokenUserDenied;
    }

    scope = (ctx->role_sub || ctx->role_presence)
            ? pubsub::TokenScope::kSubscribe : pubsub::TokenScope::kPublish;

    for (i = 0; i < ctx->nids; i++) {
        if (!res.allows(scope, group, ngx_pubsub_sv(ctx->ids[i]))) {
            return scope == pubsub::TokenScope::kSubscribe
                   ? pubsub::kTokenChannelDenied
                   : pubsub::kTokenPublishDenied;
        }
    }

    for (i = 0; i < ctx->npub_ids; i++) {
        if (!res.allows(pubsub::TokenScope::kPublish, group,
                        ngx_pubsub_sv(ctx->pub_ids[i])))
        {
            ctx->publish_denied = 1;
            break;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_pubsub_hook_check_token(ngx_http_request_t *r,
    ngx_pubsub_hooks_loc_conf_t *hlcf, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_hook_ctx_t *ctx)
{
    ngx_str_t            value;
    const char          *denied;
    pubsub::TokenResult  res;

    if (ngx_http_complex_value(r, hlcf->token, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    res = pubsub::verifyToken(ngx_pubsub_sv(value), *hlcf->token_key,
                              ngx_time());

    if (!res.ok) {
        return ngx_pubsub_hook_respond_401(r, plcf, ctx, res.reason);
    }

    denied = ngx_pubsub_hook_token_scope(hlcf, ctx, res);
    if (denied) {
        return ngx_pubsub_hook_respond_401(r, plcf, ctx, denied);
    }

    if (res.hasSub) {
        ctx->ident.presence_id = ngx_pubsub_pstr(r->pool, res.sub);
        ctx->ident.presence_info = ngx_pubsub_pstr(r->pool, res.infoJson);

        /* ngx_pubsub_pstr() gives an empty string when out of memory */
        if (ctx->ident.presence_id.len != res.sub.size()
            || ctx->ident.presence_info.len != res.infoJson.size())
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->has_ident = 1;
    }

    ctx->ident.token_verified = 1;

    return NGX_OK;
}


/* the answer headers a refusal relays to the client */
static ngx_uint_t
ngx_pubsub_hook_pass_header(ngx_str_t key)
{
    static const char * const  hop[] = {
        "content-length", "content-type", "connection", "keep-alive",
        "transfer-encoding", "server", "date", "upgrade", "te", "trailer",
        "proxy-authenticate",
    };

    return !ngx_pubsub_hook_header_is(key, hop, sizeof(hop) / sizeof(hop[0]));
}


/* an accepting answer's header: the client's presence identity */
static void
ngx_pubsub_hook_auth_identity(ngx_http_request_t *r,
    ngx_pubsub_hook_ctx_t *ctx, ngx_table_elt_t *h)
{
    static const char * const  id[] = { "x-presence-id" };
    static const char * const  info[] = { "x-presence-info" };

    if (ctx->has_ident) {
        return;   /* the token's sub wins */
    }

    if (ngx_pubsub_hook_header_is(h->key, id, 1)) {
        (void) ngx_pubsub_hook_dup(r->pool, &ctx->ident.presence_id,
                                   h->value);
    }

    if (ngx_pubsub_hook_header_is(h->key, info, 1)) {
        (void) ngx_pubsub_hook_dup(r->pool, &ctx->ident.presence_info,
                                   h->value);
    }
}


/* a refusing answer's header, kept to be relayed */
static ngx_int_t
ngx_pubsub_hook_auth_keep(ngx_http_request_t *r, ngx_pubsub_hook_ctx_t *ctx,
    ngx_table_elt_t *h)
{
    ngx_keyval_t  *kv;

    if (ctx->auth_headers == NULL || !ngx_pubsub_hook_pass_header(h->key)) {
        return NGX_OK;
    }

    kv = static_cast<ngx_keyval_t *>(ngx_array_push(ctx->auth_headers));
    if (kv == NULL
        || ngx_pubsub_hook_dup(r->pool, &kv->key, h->key) != NGX_OK
        || ngx_pubsub_hook_dup(r->pool, &kv->value, h->value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a refusal: its status, body and headers, kept for the access phase */
static void
ngx_pubsub_hook_auth_refused(ngx_http_request_t *r,
    ngx_pubsub_hook_ctx_t *ctx, ngx_pubsub_hook_result_t *res)
{
    ctx->auth_state = NGX_PUBSUB_AUTH_REFUSED;
    ctx->auth_status = res->status;
    ctx->auth_failed = res->failed;

    (void) ngx_atomic_fetch_add(&ngx_pubsub_hook_stats->refused, 1);

    if (ngx_pubsub_hook_dup(r->pool, &ctx->auth_ct, res->content_type)
        != NGX_OK
        || ngx_pubsub_hook_dup(r->pool, &ctx->auth_body, res->body) != NGX_OK)
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


static void
ngx_pubsub_hook_auth_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_hook_ctx_t  *ctx = static_cast<ngx_pubsub_hook_ctx_t *>(data);
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_uint_t              i;

    ctx->call = NULL;

    if (!res->failed && res->status >= 200 && res->status < 300) {
        ctx->auth_state = NGX_PUBSUB_AUTH_ACCEPTED;

    } else {
        ngx_pubsub_hook_auth_refused(r, ctx, res);
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
                ngx_pubsub_hook_auth_identity(r, ctx, &h[i]);

            } else if (ngx_pubsub_hook_auth_keep(r, ctx, &h[i]) != NGX_OK) {
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

    plcf = ngx_pubsub_get_loc_conf(r);
    if (plcf->roles == 0 && !plcf->presence_api && !plcf->presence_channels) {
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
    if ((!ctx->role_sub && !ctx->role_pub && !ctx->role_presence)
        || ctx->bad_ids
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


ngx_int_t
ngx_pubsub_hooks_access(ngx_http_request_t *r)
{
    ngx_int_t  rc = ngx_pubsub_guard(r->connection->log, [r] {
        return ngx_pubsub_hooks_access_impl(r);
    });

    return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


ngx_uint_t
ngx_pubsub_hook_has_authorize(ngx_http_request_t *r)
{
    return ngx_pubsub_hook_active(ngx_pubsub_hooks_conf(r)->authorize);
}


ngx_uint_t
ngx_pubsub_token_may_publish(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    ctx = ngx_pubsub_hook_find_ctx(r);

    return (ctx == NULL || !ctx->publish_denied) ? 1 : 0;
}
