/*
 * ngx_pubsub: where an HTTP subscriber starts - its resume id (nchan's
 * If-Modified-Since + If-None-Match, the Etag header, the
 * pubsub_last_message_id values) and each channel's start - and the
 * message-id response headers.
 */

#include "ngx_pubsub_subscriber.h"

#include <string>


static ngx_int_t
ngx_pubsub_strip_etag(ngx_str_t *v)
{
    if (v->len >= 2 && v->data[0] == 'W' && v->data[1] == '/') {
        v->data += 2;
        v->len -= 2;
    }

    if (v->len >= 2 && v->data[0] == '"' && v->data[v->len - 1] == '"') {
        v->data++;
        v->len -= 2;
    }

    return NGX_OK;
}


/* set while ngx_pubsub_resume_hint() reads: a bad id is not answered */
static ngx_uint_t  ngx_pubsub_resume_quiet;


static ngx_int_t
ngx_pubsub_bad_msgid(ngx_http_request_t *r, const std::string &reason,
    ngx_int_t *out)
{
    if (ngx_pubsub_resume_quiet) {
        *out = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pubsub: invalid message id: %s", reason.c_str());

    ngx_http_discard_request_body(r);

    *out = ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST, "text/plain",
                                   "Message ID invalid.\n");
    return NGX_DECLINED;
}


ngx_uint_t
ngx_pubsub_resume_hint(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::StartSpec *spec)
{
    pubsub::ParsedMsgId  full;
    ngx_int_t            rc, out;

    ngx_pubsub_resume_quiet = 1;
    rc = ngx_pubsub_resume_id(r, plcf, spec, &full, &out);
    ngx_pubsub_resume_quiet = 0;

    /* a compound (multiplexed) id is no hint for one channel */
    return rc == NGX_OK && full.tags.size() <= 1;
}


ngx_int_t
ngx_pubsub_resume_spec(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::StartSpec *spec, ngx_int_t *out)
{
    pubsub::ParsedMsgId  full;

    return ngx_pubsub_resume_id(r, plcf, spec, &full, out);
}


/*
 * The sources of a resume id, in order; each answers NGX_OK (*spec set, or
 * no id at all), NGX_DECLINED (refused: *out is what the handler returns)
 * or NGX_DONE (nothing there: ask the next).
 */

/* If-Modified-Since (the time) with If-None-Match (the tags) */
static ngx_int_t
ngx_pubsub_resume_from_ims(ngx_http_request_t *r, pubsub::StartSpec *spec,
    pubsub::ParsedMsgId *full, ngx_int_t *out)
{
    ngx_table_elt_t      *ims, *inm;
    ngx_str_t             tags;
    time_t                t;
    std::string           reason;
    pubsub::ParsedMsgId   id;

    ims = r->headers_in.if_modified_since;
    inm = r->headers_in.if_none_match;

    if (ims == NULL) {
        return NGX_DONE;
    }

    t = ngx_parse_http_time(ims->value.data, ims->value.len);

    if (t == NGX_ERROR) {
        return ngx_pubsub_bad_msgid(r, "bad If-Modified-Since", out);
    }

    if (t <= 0) {
        /* at or before the epoch: no id */
        return NGX_OK;
    }

    /*
     * the time without its tag is no id (nchan: 400 too); every client
     * that sends the Last-Modified back sends the Etag
     */
    if (inm == NULL) {
        return ngx_pubsub_bad_msgid(r,
                   "If-Modified-Since without If-None-Match", out);
    }

    tags = inm->value;
    ngx_pubsub_strip_etag(&tags);

    if (!pubsub::parseMsgTags(ngx_pubsub_sv(tags), &id, &reason)) {
        return ngx_pubsub_bad_msgid(r, reason, out);
    }

    spec->kind = pubsub::StartSpec::kAfter;
    spec->after = pubsub::MsgId{t, id.tags[0]};
    id.time = t;
    *full = id;

    return NGX_OK;
}


/*
 * A whole "time:tag" id in If-None-Match, or in the "Etag" request header
 * NchanSubscriber.js resumes a long-poll with.
 */
static ngx_int_t
ngx_pubsub_resume_from_etag(ngx_http_request_t *r, pubsub::StartSpec *spec,
    pubsub::ParsedMsgId *full, ngx_int_t *out)
{
    ngx_table_elt_t      *inm, *etag;
    ngx_str_t             tags;
    std::string           reason;
    pubsub::ParsedMsgId   id;

    inm = r->headers_in.if_none_match;
    etag = ngx_pubsub_find_header(r, "Etag");

    for (ngx_table_elt_t *h : { inm, etag }) {
        if (h == NULL) {
            continue;
        }

        tags = h->value;
        ngx_pubsub_strip_etag(&tags);

        if (ngx_strlchr(tags.data, tags.data + tags.len, ':') == NULL) {
            continue;
        }

        if (!pubsub::parseMsgId(ngx_pubsub_sv(tags), &id, &reason)) {
            return ngx_pubsub_bad_msgid(r, reason, out);
        }

        spec->kind = pubsub::StartSpec::kAfter;
        spec->after = id.single();
        *full = id;
        return NGX_OK;
    }

    return NGX_DONE;
}


/* the first non-empty pubsub_last_message_id value, URL-decoded */
static ngx_int_t
ngx_pubsub_resume_from_values(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::StartSpec *spec,
    pubsub::ParsedMsgId *full, ngx_int_t *out)
{
    ngx_http_complex_value_t  *cv;
    ngx_str_t                  v, decoded;
    u_char                    *buf, *src, *dst;
    std::string                reason;
    pubsub::ParsedMsgId        id;

    if (plcf->last_message_id == NULL) {
        return NGX_OK;
    }

    cv = static_cast<ngx_http_complex_value_t *>(plcf->last_message_id->elts);

    for (ngx_uint_t i = 0; i < plcf->last_message_id->nelts; i++) {
        if (ngx_http_complex_value(r, &cv[i], &v) != NGX_OK) {
            *out = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_DECLINED;
        }

        if (v.len == 0) {
            continue;
        }

        if (v.len > 1024) {
            return ngx_pubsub_bad_msgid(r, "too long", out);
        }

        buf = static_cast<u_char *>(ngx_pnalloc(r->pool, v.len));
        if (buf == NULL) {
            *out = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_DECLINED;
        }

        src = v.data;
        dst = buf;
        ngx_unescape_uri(&dst, &src, v.len, 0);

        decoded.data = buf;
        decoded.len = dst - buf;

        if (!pubsub::parseMsgId(ngx_pubsub_sv(decoded), &id, &reason)) {
            return ngx_pubsub_bad_msgid(r, reason, out);
        }

        spec->kind = pubsub::StartSpec::kAfter;
        spec->after = id.single();
        *full = id;
        return NGX_OK;
    }

    return NGX_OK;
}


/* If-Modified-Since wins over the Etag headers, they over the values */
ngx_int_t
ngx_pubsub_resume_id(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::StartSpec *spec, pubsub::ParsedMsgId *full, ngx_int_t *out)
{
    ngx_int_t  rc;

    spec->kind = static_cast<pubsub::StartSpec::Kind>(plcf->first_message_kind);
    spec->n = plcf->first_message_n;

    rc = ngx_pubsub_resume_from_ims(r, spec, full, out);
    if (rc != NGX_DONE) {
        return rc;
    }

    rc = ngx_pubsub_resume_from_etag(r, spec, full, out);
    if (rc != NGX_DONE) {
        return rc;
    }

    return ngx_pubsub_resume_from_values(r, plcf, spec, full, out);
}


ngx_int_t
ngx_pubsub_set_compound_headers(ngx_http_request_t *r,
    const pubsub::Multiplexer &mux, size_t active)
{
    if (mux.compoundTime() == 0) {
        return NGX_OK;
    }

    r->headers_out.last_modified_time = mux.compoundTime();

    return ngx_pubsub_set_header(r, "Etag", mux.compoundTags(active));
}


ngx_int_t
ngx_pubsub_set_msgid_headers(ngx_http_request_t *r, const pubsub::MsgId &id)
{
    char  tag[16];
    int   n;

    r->headers_out.last_modified_time = id.time;

    n = snprintf(tag, sizeof(tag), "%d", static_cast<int>(id.tag));

    if (ngx_pubsub_set_header(r, "Etag", std::string_view(tag, n)) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Where each channel starts: the resume id's one tag for one channel, its
 * tag per channel for several.  NGX_OK, or NGX_DECLINED after answering a
 * malformed id (*rc: what the handler returns).
 */
ngx_int_t
ngx_pubsub_subscriber_specs(ngx_http_request_t *r, ngx_pubsub_channels_t *ch,
    const pubsub::StartSpec &spec, const pubsub::ParsedMsgId &full,
    std::vector<pubsub::StartSpec> *specs, ngx_int_t *rc)
{
    std::string  reason;

    specs->assign(ch->n, spec);

    /* a compound id names one tag per channel: several for one channel
       is a malformed id, not the first of them */
    if (ch->n == 1
        && spec.kind == pubsub::StartSpec::kAfter
        && full.tags.size() > 1)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: invalid message id: %uz tags for 1 channel",
                      full.tags.size());
        *rc = ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST, "text/plain",
                                      "Message ID invalid.\n");
        return NGX_DECLINED;
    }

    if (ch->n > 1
        && spec.kind == pubsub::StartSpec::kAfter
        && !pubsub::Multiplexer::resumeSpecs(full, ch->n, specs, &reason))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: invalid message id: %s", reason.c_str());
        *rc = ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST, "text/plain",
                                      "Message ID invalid.\n");
        return NGX_DECLINED;
    }

    return NGX_OK;
}
