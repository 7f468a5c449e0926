/*
 * ngx_pubsub hooks: what a hook request carries (docs/hooks.md, "What every
 * hook request carries").  A snapshot of the client's request - its
 * configuration, address, headers (hop-by-hop and pubsub's own left out),
 * URI, method, channel ids, identity - copied into a pool of the hook's,
 * so that a hook never depends on the client still being there; and the
 * hook's URI, with the client's query string merged after its own
 * arguments (which the client cannot override).
 */

#include "ngx_pubsub_hooks_internal.h"


/* the client's headers a hook request does not carry */
static ngx_uint_t
ngx_pubsub_hook_skip_header(ngx_str_t key)
{
    static const char * const  skip[] = {
        "content-length", "content-type", "transfer-encoding", "connection",
        "keep-alive", "upgrade", "expect", "te", "x-channel-id",
        "x-subscriber-type", "x-publisher-type", "x-original-uri",
        "x-original-method", "x-presence-id", "x-message-id",
    };

    return ngx_pubsub_hook_header_is(key, skip, sizeof(skip) / sizeof(skip[0]));
}


/*
 * The name of the argument `kv` ("name=value") as backends may read it,
 * into dst (room for kv.len bytes): URL-decoded ("+" is a space), lower
 * case (nginx's $arg_x and some frameworks ignore case), "." and " " as
 * "_" (PHP), cut at "[" (PHP and Rails arrays: "a[]=1" is "a").
 */
static ngx_str_t
ngx_pubsub_hook_arg_name(ngx_str_t kv, u_char *dst)
{
    u_char     *p, *src, *eq;
    ngx_str_t   name;

    eq = ngx_strlchr(kv.data, kv.data + kv.len, '=');

    p = dst;
    src = kv.data;
    ngx_unescape_uri(&p, &src, (eq ? eq : kv.data + kv.len) - kv.data, 0);

    name.data = dst;
    name.len = p - dst;

    for (p = dst; p < dst + name.len; p++) {
        if (*p == '[') {
            name.len = p - dst;
            break;
        }

        if (*p == '+' || *p == ' ' || *p == '.') {
            *p = '_';
        }

        *p = ngx_tolower(*p);
    }

    return name;
}


/* the next argument of `args` from *pos ("a=1&b=2"), empty ones skipped */
static ngx_uint_t
ngx_pubsub_hook_next_arg(ngx_str_t args, size_t *pos, ngx_str_t *kv)
{
    u_char  *p, *end, *amp;

    end = args.data + args.len;

    while (*pos < args.len) {
        p = args.data + *pos;
        amp = ngx_strlchr(p, end, '&');

        kv->data = p;
        kv->len = (amp ? amp : end) - p;
        *pos += kv->len + 1;

        if (kv->len) {
            return 1;
        }
    }

    return 0;
}


/*
 * The hook's arguments: its URI's own, then the client's query (SPEC
 * section 11, docs/hooks.md): the client's arguments whose name is also
 * one of the URI's (as a backend reads names: ngx_pubsub_hook_arg_name)
 * are dropped, so the client can neither override nor duplicate them.
 */
static ngx_int_t
ngx_pubsub_hook_args(ngx_http_request_t *r, ngx_pool_t *pool, ngx_str_t own,
    ngx_str_t *args)
{
    u_char      *p, *names, *buf;
    size_t       pos, npos;
    ngx_str_t    kv, okv, name, oname;
    ngx_uint_t   dup;

    args->len = 0;
    args->data = NULL;

    if (own.len + r->args.len == 0) {
        return NGX_OK;
    }

    args->data = static_cast<u_char *>(
                     ngx_pnalloc(pool, own.len + 1 + r->args.len));
    names = static_cast<u_char *>(ngx_pnalloc(pool, own.len + 1));
    buf = static_cast<u_char *>(ngx_pnalloc(pool, r->args.len + 1));
    if (args->data == NULL || names == NULL || buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(args->data, own.data, own.len);

    pos = 0;

    while (ngx_pubsub_hook_next_arg(r->args, &pos, &kv)) {
        name = ngx_pubsub_hook_arg_name(kv, buf);
        dup = 0;
        npos = 0;

        while (!dup && ngx_pubsub_hook_next_arg(own, &npos, &okv)) {
            oname = ngx_pubsub_hook_arg_name(okv, names);
            dup = (oname.len == name.len
                   && ngx_memcmp(oname.data, name.data, name.len) == 0);
        }

        if (dup) {
            continue;
        }

        if (p != args->data) {
            *p++ = '&';
        }

        p = ngx_cpymem(p, kv.data, kv.len);
    }

    args->len = p - args->data;

    return NGX_OK;
}


/* the hook URI of r, split into path and arguments (the client's merged) */
ngx_int_t
ngx_pubsub_hook_target(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_pool_t *pool, ngx_str_t *uri, ngx_str_t *args)
{
    ngx_str_t   v, own;
    u_char     *q;

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
    own.data = q ? q + 1 : NULL;
    own.len = q ? (size_t) (v.data + v.len - q - 1) : 0;

    if (ngx_pubsub_hook_dup(pool, uri, *uri) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pubsub_hook_args(r, pool, own, args);
}


static ngx_int_t
ngx_pubsub_hook_dup_addr(ngx_pool_t *pool, struct sockaddr **dst,
    struct sockaddr *src, socklen_t len)
{
    *dst = NULL;

    if (src == NULL || len == 0) {
        return NGX_OK;
    }

    *dst = static_cast<struct sockaddr *>(ngx_palloc(pool, len));
    if (*dst == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(*dst, src, len);

    return NGX_OK;
}


/* appends a copy of a header to q (which has room for it) */
static ngx_int_t
ngx_pubsub_hook_add_header(ngx_pool_t *pool, ngx_pubsub_hook_req_t *q,
    ngx_str_t key, ngx_str_t value)
{
    ngx_table_elt_t  *h = &q->headers[q->nheaders];

    if (ngx_pubsub_hook_dup(pool, &h->key, key) != NGX_OK
        || ngx_pubsub_hook_dup(pool, &h->value, value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->nheaders++;

    return NGX_OK;
}


/*
 * A copy of src in pool: its strings, addresses, channel ids and headers,
 * with room for `room` headers in all.  Every hook request is made by it:
 * from a view of the client's request (whose headers are then added), from
 * a session's snapshot (its unsubscribe, its subscribe), for a presence
 * event (a request of nobody).
 */
ngx_pubsub_hook_req_t *
ngx_pubsub_hook_req_copy(ngx_pool_t *pool, const ngx_pubsub_hook_req_t *src,
    ngx_uint_t room)
{
    ngx_pubsub_hook_req_t  *q;
    ngx_uint_t              i;

    static ngx_str_t ngx_pubsub_hook_req_t::* const  strings[] = {
        &ngx_pubsub_hook_req_t::uri, &ngx_pubsub_hook_req_t::args,
        &ngx_pubsub_hook_req_t::method_name, &ngx_pubsub_hook_req_t::orig_uri,
        &ngx_pubsub_hook_req_t::orig_args,
        &ngx_pubsub_hook_req_t::unparsed_uri,
        &ngx_pubsub_hook_req_t::request_line, &ngx_pubsub_hook_req_t::server,
        &ngx_pubsub_hook_req_t::addr_text, &ngx_pubsub_hook_req_t::sub_type,
        &ngx_pubsub_hook_req_t::pub_type, &ngx_pubsub_hook_req_t::msg_id,
        &ngx_pubsub_hook_req_t::prev_id, &ngx_pubsub_hook_req_t::presence_id,
    };

    q = static_cast<ngx_pubsub_hook_req_t *>(
            ngx_palloc(pool, sizeof(ngx_pubsub_hook_req_t)));
    if (q == NULL) {
        return NULL;
    }

    *q = *src;

    for (auto s : strings) {
        if (ngx_pubsub_hook_dup(pool, &(q->*s), src->*s) != NGX_OK) {
            return NULL;
        }
    }

    if (ngx_pubsub_hook_dup_addr(pool, &q->sockaddr, src->sockaddr,
                                 src->socklen) != NGX_OK
        || ngx_pubsub_hook_dup_addr(pool, &q->local_sockaddr,
                                    src->local_sockaddr, src->local_socklen)
           != NGX_OK)
    {
        return NULL;
    }

    q->headers = static_cast<ngx_table_elt_t *>(
        ngx_pcalloc(pool, sizeof(ngx_table_elt_t) * (room + 1)));
    q->ids = static_cast<ngx_str_t *>(
        ngx_pcalloc(pool, sizeof(ngx_str_t) * (src->nids + 1)));
    if (q->headers == NULL || q->ids == NULL) {
        return NULL;
    }

    q->nheaders = 0;

    for (i = 0; i < src->nheaders; i++) {
        if (ngx_pubsub_hook_add_header(pool, q, src->headers[i].key,
                                       src->headers[i].value) != NGX_OK)
        {
            return NULL;
        }
    }

    for (i = 0; i < src->nids; i++) {
        if (ngx_pubsub_hook_dup(pool, &q->ids[i], src->ids[i]) != NGX_OK) {
            return NULL;
        }
    }

    return q;
}


/* the snapshot of the client's request r for a hook about channels `ids` */
ngx_pubsub_hook_req_t *
ngx_pubsub_hook_snapshot(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_uint_t nids, ngx_str_t *ids, ngx_str_t sub_type, ngx_str_t pub_type)
{
    ngx_pubsub_hook_req_t   v, *q;
    ngx_pubsub_hook_ctx_t  *ctx;
    ngx_connection_t       *c = r->connection;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_uint_t              i, n;

    /* a view of r: its data, copied by ngx_pubsub_hook_req_copy() */

    ngx_memzero(&v, sizeof(ngx_pubsub_hook_req_t));

    v.conf.main_conf = r->main_conf;
    v.conf.srv_conf = r->srv_conf;
    v.conf.loc_conf = r->loc_conf;
    v.addr_conf = r->http_connection ? r->http_connection->addr_conf : NULL;
    v.method = r->method;
    v.method_name = r->method_name;
    v.orig_uri = r->uri;
    v.orig_args = r->args;
    v.unparsed_uri = r->unparsed_uri;
    v.request_line = r->request_line;
    v.server = r->headers_in.server;
    v.http_version = r->http_version;
    v.sockaddr = c->sockaddr;
    v.socklen = c->sockaddr ? c->socklen : 0;
    v.local_sockaddr = c->local_sockaddr;
    v.local_socklen = c->local_sockaddr ? c->local_socklen : 0;
    v.addr_text = c->addr_text;
    v.nids = nids;
    v.ids = ids;
    v.sub_type = sub_type;
    v.pub_type = pub_type;

    ctx = ngx_pubsub_hook_find_ctx(r);

    if (ctx) {
        ngx_pubsub_hook_ids_text(r->main->pool, ctx);

        v.msg_id = ctx->msg_id;
        v.prev_id = ctx->prev_id;
        v.presence_id = ctx->ident.presence_id;
    }

    n = 0;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    q = ngx_pubsub_hook_req_copy(pool, &v, n);
    if (q == NULL) {
        return NULL;
    }

    /* the client's headers */

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = static_cast<ngx_table_elt_t *>(part->elts);

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0 || ngx_pubsub_hook_skip_header(h[i].key)) {
                continue;
            }

            if (ngx_pubsub_hook_add_header(pool, q, h[i].key, h[i].value)
                != NGX_OK)
            {
                return NULL;
            }
        }
    }

    return q;
}


/*
 * A POST of nobody to uri?args written in ctx (the presence hook, the
 * Pusher webhooks): such events outlive the clients that caused them, so
 * the request comes from 127.0.0.1 with no client headers.  *sin must live
 * as long as *v.
 */
void
ngx_pubsub_hook_req_nobody(ngx_pubsub_hook_req_t *v, ngx_http_conf_ctx_t *ctx,
    ngx_str_t *uri, ngx_str_t *args, struct sockaddr_in *sin)
{
    static ngx_str_t  post = ngx_string("POST");
    static ngx_str_t  local = ngx_string("127.0.0.1");

    ngx_memzero(sin, sizeof(struct sockaddr_in));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    ngx_memzero(v, sizeof(ngx_pubsub_hook_req_t));

    v->conf = *ctx;
    v->method = NGX_HTTP_POST;
    v->method_name = post;
    v->http_version = NGX_HTTP_VERSION_11;
    v->sockaddr = reinterpret_cast<struct sockaddr *>(sin);
    v->socklen = sizeof(struct sockaddr_in);
    v->addr_text = local;
    v->uri = *uri;
    v->args = *args;
    v->orig_uri = *uri;
    v->unparsed_uri = *uri;
    v->request_line = *uri;
}
