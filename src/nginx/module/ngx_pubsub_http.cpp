/*
 * ngx_pubsub: the HTTP helpers every handler uses - pool strings, headers,
 * plain answers, store results as statuses, origins and CORS, and the
 * evaluation of a request's channel ids.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_hooks.h"

#include <string>

#include "pubsub/channel_id.h"



ngx_str_t
ngx_pubsub_pstr(ngx_pool_t *pool, std::string_view s)
{
    ngx_str_t  r;

    r.len = s.size();
    r.data = static_cast<u_char *>(ngx_pnalloc(pool, s.size() ? s.size() : 1));
    if (r.data == NULL) {
        r.len = 0;
        return r;
    }

    ngx_memcpy(r.data, s.data(), s.size());

    return r;
}


ngx_int_t
ngx_pubsub_set_header(ngx_http_request_t *r, std::string_view name,
    std::string_view value)
{
    ngx_table_elt_t  *h;

    h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = ngx_pubsub_pstr(r->pool, name);
    h->value = ngx_pubsub_pstr(r->pool, value);

    if (h->key.data == NULL || h->value.data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The next request header called `name` after `prev` (NULL: the first);
 * nginx 1.22 does not chain repeated headers.
 */
ngx_table_elt_t *
ngx_pubsub_next_header(ngx_http_request_t *r, std::string_view name,
    ngx_table_elt_t *prev)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i, seen;

    part = &r->headers_in.headers.part;
    h = static_cast<ngx_table_elt_t *>(part->elts);
    seen = (prev == NULL);

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = static_cast<ngx_table_elt_t *>(part->elts);
            i = 0;
        }

        if (!seen) {
            seen = (&h[i] == prev);
            continue;
        }

        if (h[i].key.len == name.size()
            && ngx_strncasecmp(h[i].key.data,
                   reinterpret_cast<u_char *>(const_cast<char *>(name.data())),
                   name.size()) == 0)
        {
            return &h[i];
        }
    }

    return NULL;
}


ngx_table_elt_t *
ngx_pubsub_find_header(ngx_http_request_t *r, std::string_view name)
{
    return ngx_pubsub_next_header(r, name, NULL);
}


ngx_int_t
ngx_pubsub_respond_text(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view content_type, std::string_view body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body.size();

    if (!content_type.empty()) {
        r->headers_out.content_type = ngx_pubsub_pstr(r->pool, content_type);
        r->headers_out.content_type_len = content_type.size();
        r->headers_out.content_type_lowcase = NULL;
    }

    if (body.empty() || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_create_temp_buf(r->pool, body.size());
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->pos, body.data(), body.size());
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_pubsub_status_of(pubsub::StoreResult rc)
{
    switch (rc) {
    case pubsub::StoreResult::kOk:
        return NGX_HTTP_OK;
    case pubsub::StoreResult::kNoMemory:
        return 507;
    case pubsub::StoreResult::kNotFound:
        return NGX_HTTP_NOT_FOUND;
    case pubsub::StoreResult::kForbidden:
        return NGX_HTTP_FORBIDDEN;
    case pubsub::StoreResult::kUnavailable:
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    case pubsub::StoreResult::kError:
        break;
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* the first query argument called exactly `name` */
ngx_uint_t
ngx_pubsub_query_arg(ngx_http_request_t *r, std::string_view name,
    ngx_str_t *value)
{
    std::string_view  args = ngx_pubsub_sv(r->args);

    while (!args.empty()) {
        size_t amp = args.find('&');
        std::string_view kv = args.substr(0, amp);
        size_t eq = kv.find('=');

        if (kv.substr(0, eq) == name) {
            if (value) {
                std::string_view v = (eq == std::string_view::npos)
                                     ? std::string_view() : kv.substr(eq + 1);
                value->data = reinterpret_cast<u_char *>(
                                  const_cast<char *>(v.data()));
                value->len = v.size();
            }
            return 1;
        }

        if (amp == std::string_view::npos) {
            break;
        }
        args.remove_prefix(amp + 1);
    }

    return 0;
}


static ngx_uint_t
ngx_pubsub_equal_nocase(std::string_view a, std::string_view b)
{
    return a.size() == b.size()
           && (a.empty()
               || ngx_strncasecmp(
                      reinterpret_cast<u_char *>(const_cast<char *>(a.data())),
                      reinterpret_cast<u_char *>(const_cast<char *>(b.data())),
                      a.size()) == 0);
}


/*
 * Whether Origin `o` is the request's own origin: the scheme of the
 * connection (the listen's: https with ssl, else http) and the Host
 * header, a default port (:80, :443) written or not.
 */
static ngx_uint_t
ngx_pubsub_same_origin(ngx_http_request_t *r, std::string_view o)
{
    std::string_view  scheme = "http://", port = ":80", host;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        scheme = "https://";
        port = ":443";
    }
#endif

    if (r->headers_in.host == NULL
        || o.size() <= scheme.size()
        || !ngx_pubsub_equal_nocase(o.substr(0, scheme.size()), scheme))
    {
        return 0;
    }

    o.remove_prefix(scheme.size());
    host = ngx_pubsub_sv(r->headers_in.host->value);

    for (std::string_view *v : { &o, &host }) {
        if (v->size() > port.size()
            && v->substr(v->size() - port.size()) == port)
        {
            v->remove_suffix(port.size());
        }
    }

    return !o.empty() && ngx_pubsub_equal_nocase(o, host);
}


/*
 * The Origin check (SPEC section 11, docs/security.md).  NGX_OK (also
 * when there is no Origin), NGX_DECLINED when refused, NGX_ERROR.
 * *allow gets the Access-Control-Allow-Origin value (empty: none) and
 * *credentials whether Access-Control-Allow-Credentials goes with it.
 *
 * Without pubsub_allowed_origins: the request's own origin is allowed with
 * credentials; another origin is allowed without them (its value is
 * echoed, "null" never), and refused where an authorize hook, which may
 * read cookies, decides.  With a list (space-separated): a listed origin
 * is allowed with credentials (as nchan); "*" allows any other origin
 * without credentials (Access-Control-Allow-Origin: *); the request's own
 * origin is always allowed; anything else is refused.
 */
static ngx_int_t
ngx_pubsub_origin_check(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    std::string_view *allow, ngx_uint_t *credentials)
{
    ngx_table_elt_t  *origin;
    ngx_str_t         allowed;
    ngx_uint_t        any;

    *allow = std::string_view();
    *credentials = 0;

    origin = ngx_pubsub_find_header(r, "Origin");
    if (origin == NULL) {
        return NGX_OK;
    }

    std::string_view o = ngx_pubsub_sv(origin->value);

    if (o.empty()) {
        return NGX_OK;
    }

    if (o != "null" && ngx_pubsub_same_origin(r, o)) {
        *allow = o;
        *credentials = plcf->allow_credentials ? 1 : 0;
        return NGX_OK;
    }

    if (plcf->allowed_origins == NULL) {
        /* cross-origin: never with the browser's ambient credentials */
        if (ngx_pubsub_hook_has_authorize(r)) {
            return NGX_DECLINED;
        }

        if (o != "null") {
            *allow = o;
        }

        return NGX_OK;
    }

    if (ngx_http_complex_value(r, plcf->allowed_origins, &allowed) != NGX_OK) {
        return NGX_ERROR;
    }

    std::string_view list = ngx_pubsub_sv(allowed);
    size_t pos = 0;

    any = 0;

    while (pos < list.size()) {
        size_t sp = list.find(' ', pos);
        std::string_view item = list.substr(pos, sp == std::string_view::npos
                                                 ? std::string_view::npos
                                                 : sp - pos);
        if (item == "*") {
            any = 1;

        } else if (!item.empty() && item == o && o != "null") {
            *allow = o;
            *credentials = plcf->allow_credentials ? 1 : 0;
            return NGX_OK;
        }

        if (sp == std::string_view::npos) {
            break;
        }
        pos = sp + 1;
    }

    if (any) {
        *allow = "*";
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_pubsub_origin_allowed(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    std::string_view  allow;
    ngx_uint_t        credentials;

    return ngx_pubsub_origin_check(r, plcf, &allow, &credentials);
}


/*
 * CORS: checks the Origin (ngx_pubsub_origin_check) and adds the response
 * headers; returns NGX_DECLINED when the origin is refused.
 */
ngx_int_t
ngx_pubsub_cors(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t subscriber)
{
    ngx_int_t         rc;
    ngx_uint_t        credentials;
    std::string_view  allow_value;

    rc = ngx_pubsub_origin_check(r, plcf, &allow_value, &credentials);
    if (rc != NGX_OK || allow_value.empty()) {
        return rc;
    }

    if (ngx_pubsub_set_header(r, "Access-Control-Allow-Origin", allow_value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (allow_value != "*"
        && ngx_pubsub_set_header(r, "Vary", "Origin") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (credentials
        && ngx_pubsub_set_header(r, "Access-Control-Allow-Credentials", "true")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (subscriber
        && ngx_pubsub_set_header(r, "Access-Control-Expose-Headers",
                                 "Last-Modified, Etag, Content-Type, "
                                 "X-Pubsub-Gap") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the location's channel group ("default" when none): NGX_DECLINED, *err */
ngx_int_t
ngx_pubsub_channels_group(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t *group, const char **err)
{
    pubsub::ChannelIdError  ge;

    group->len = 0;
    group->data = NULL;

    if (plcf->channel_group != NULL
        && ngx_http_complex_value(r, plcf->channel_group, group) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (group->len == 0) {
        ngx_str_set(group, "default");
    }

    ge = pubsub::checkChannelGroup(ngx_pubsub_sv(*group));
    if (ge != pubsub::ChannelIdError::kNone) {
        *err = pubsub::channelIdErrorText(ge).data();
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* appends channel `id` (pointing into r's memory) and its key "group/id" */
static ngx_int_t
ngx_pubsub_channels_add(ngx_http_request_t *r, ngx_pubsub_channels_t *ch,
    ngx_str_t group, std::string_view id)
{
    ngx_str_t  *nid, *nkey;
    ngx_uint_t  cap;
    u_char     *p;

    if (ch->n == ch->cap) {
        cap = ch->cap * 4 < NGX_PUBSUB_MAX_CHANNELS
              ? ch->cap * 4 : NGX_PUBSUB_MAX_CHANNELS;

        nid = static_cast<ngx_str_t *>(
                  ngx_palloc(r->pool, 2 * cap * sizeof(ngx_str_t)));
        if (nid == NULL) {
            return NGX_ERROR;
        }

        nkey = nid + cap;
        ngx_memcpy(nid, ch->id, ch->n * sizeof(ngx_str_t));
        ngx_memcpy(nkey, ch->key, ch->n * sizeof(ngx_str_t));
        ch->id = nid;
        ch->key = nkey;
        ch->cap = cap;
    }

    /* the id points into the evaluated value (r->pool or the request's own
       buffers: both live as long as r) */
    ch->id[ch->n].data = reinterpret_cast<u_char *>(
                             const_cast<char *>(id.data()));
    ch->id[ch->n].len = id.size();
    ch->key[ch->n].len = group.len + 1 + id.size();
    ch->key[ch->n].data = static_cast<u_char *>(
                              ngx_pnalloc(r->pool, ch->key[ch->n].len));
    if (ch->key[ch->n].data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ch->key[ch->n].data, group.data, group.len);
    *p++ = '/';
    ngx_memcpy(p, id.data(), id.size());
    ch->n++;

    return NGX_OK;
}


/*
 * Evaluates the channel ids of a request without answering it: NGX_OK,
 * NGX_DECLINED with *err set (a bad id), or NGX_ERROR.
 */
ngx_int_t
ngx_pubsub_channels_eval(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t publisher, ngx_pubsub_channels_t *ch, const char **err_out)
{
    ngx_array_t               *ids;
    ngx_http_complex_value_t  *cv;
    ngx_str_t                  value, group;
    ngx_int_t                  rc;
    std::string_view           split[NGX_PUBSUB_MAX_CHANNELS];
    size_t                     n, from;
    pubsub::ChannelIdError     e;

    ids = publisher ? plcf->pub_channel_id : plcf->sub_channel_id;
    if (ids == NULL) {
        ids = plcf->channel_id;
    }

    ch->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    ch->n = 0;
    ch->cap = 4;
    ch->id = ch->id_inline;
    ch->key = ch->key_inline;
    *err_out = NULL;

    rc = ngx_pubsub_channels_group(r, plcf, &group, err_out);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ids == NULL || ids->nelts == 0) {
        *err_out = "No channel id provided.\n";
        return NGX_DECLINED;
    }

    cv = static_cast<ngx_http_complex_value_t *>(ids->elts);

    for (ngx_uint_t i = 0; i < ids->nelts; i++) {
        if (ngx_http_complex_value(r, &cv[i], &value) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the pure splitting and checks are in the core (channel_id.h) */
        n = ch->n;
        from = n;
        e = pubsub::splitChannelIds(ngx_pubsub_sv(value),
                                    ngx_pubsub_sv(plcf->split_delimiter),
                                    plcf->max_channel_id_length, split, &n,
                                    NGX_PUBSUB_MAX_CHANNELS);

        for (size_t k = from; k < n; k++) {
            if (ngx_pubsub_channels_add(r, ch, group, split[k]) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        if (e != pubsub::ChannelIdError::kNone) {
            *err_out = pubsub::channelIdErrorText(e).data();
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * Evaluates the channel ids of a request into channels of r->pool.
 * NULL after answering the request with the reason, or failing: *rc is
 * what the handler returns.
 */
ngx_pubsub_channels_t *
ngx_pubsub_channels(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t publisher, ngx_int_t *rc)
{
    ngx_int_t               res;
    const char             *err;
    ngx_pubsub_channels_t  *ch;

    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NULL;
    }

    res = ngx_pubsub_channels_eval(r, plcf, publisher, ch, &err);

    if (res == NGX_OK) {
        return ch;
    }

    if (res == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "pubsub: %s", err);

        *rc = ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST,
                                      "text/plain", err);
    }

    return NULL;
}
