/*
 * ngx_pubsub: the HTTP publisher - POST/PUT publish the body, GET answers
 * channel info, DELETE deletes the channel.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_hooks.h"

#include <string>

#include "pubsub/codec/format.h"


static void ngx_pubsub_body_handler(ngx_http_request_t *r);


/* The channel info format the request's Accept header asks for. */
pubsub::InfoFormat
ngx_pubsub_info_format(ngx_http_request_t *r)
{
    ngx_table_elt_t  *accept;

    accept = ngx_pubsub_find_header(r, "Accept");

    return pubsub::infoFormatFromAccept(accept ? ngx_pubsub_sv(accept->value)
                                               : std::string_view());
}


static ngx_int_t
ngx_pubsub_info_response(ngx_http_request_t *r, ngx_uint_t status,
    const pubsub::ChannelInfo &info)
{
    pubsub::InfoFormat   fmt;

    fmt = ngx_pubsub_info_format(r);

    char    body[pubsub::kMaxChannelInfoText];
    size_t  len = pubsub::writeChannelInfo(body, info, fmt, ngx_time());

    return ngx_pubsub_respond_text(r, status, pubsub::infoContentType(fmt),
                                   std::string_view(body, len));
}


/*
 * Store operations on a request's channels.  Replies may come at once
 * (memory store) or later (Redis): the last one answers.  When it is late,
 * the request was kept with r->main->count++ and NGX_DONE, and the answer
 * finalizes it.
 */
struct ngx_pubsub_op_t {
    ngx_http_request_t     *r;
    ngx_uint_t              left;
    ngx_uint_t              async;
    ngx_uint_t              found;
    ngx_uint_t              failed;
    ngx_uint_t              delivered;
    pubsub::StoreResult     fail_status;
    pubsub::ChannelInfo     sum;
    pubsub::PublishReply    last;
    ngx_int_t             (*answer)(ngx_pubsub_op_t *op);
};


static ngx_pubsub_op_t *
ngx_pubsub_op_create(ngx_http_request_t *r, ngx_uint_t n,
    ngx_int_t (*answer)(ngx_pubsub_op_t *op))
{
    ngx_pubsub_op_t     *op;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pubsub_op_t));
    if (cln == NULL) {
        return NULL;
    }

    op = new (cln->data) ngx_pubsub_op_t();
    cln->handler = [](void *data) {
        static_cast<ngx_pubsub_op_t *>(data)->~ngx_pubsub_op_t();
    };

    op->r = r;
    op->left = n + 1;   /* +1: held until every operation is started */
    op->answer = answer;
    op->fail_status = pubsub::StoreResult::kOk;

    return op;
}


/* one reply is in; the last one answers (late: and finalizes) */
static void
ngx_pubsub_op_done(ngx_pubsub_op_t *op)
{
    ngx_http_request_t  *r;
    ngx_connection_t    *c;
    ngx_int_t            rc;

    if (--op->left != 0 || !op->async) {
        return;
    }

    r = op->r;
    c = r->connection;

    rc = ngx_pubsub_guard(c->log, [op] { return op->answer(op); });

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* every operation started: answer now, or wait for the late replies */
static ngx_int_t
ngx_pubsub_op_wait(ngx_pubsub_op_t *op)
{
    if (--op->left == 0) {
        return op->answer(op);
    }

    op->async = 1;
    op->r->main->count++;

    return NGX_DONE;
}


static void
ngx_pubsub_op_add_info(ngx_pubsub_op_t *op, pubsub::StoreResult res,
    const pubsub::ChannelInfo &info)
{
    if (res != pubsub::StoreResult::kOk) {
        if (res != pubsub::StoreResult::kNotFound) {
            op->failed++;
            op->fail_status = res;
        }
        return;
    }

    op->found++;
    op->sum.found = true;
    op->sum.messages += info.messages;
    op->sum.subscribers += info.subscribers;
    op->sum.presence += info.presence;
    if (info.lastSeen > op->sum.lastSeen) {
        op->sum.lastSeen = info.lastSeen;
    }
    if (info.lastId > op->sum.lastId) {
        op->sum.lastId = info.lastId;
    }
}


static ngx_int_t
ngx_pubsub_op_info_answer(ngx_pubsub_op_t *op)
{
    if (op->failed) {
        return ngx_pubsub_respond_text(op->r,
                   ngx_pubsub_status_of(op->fail_status), "text/plain",
                   op->fail_status == pubsub::StoreResult::kUnavailable
                   ? "Redis is unavailable.\n" : "Channel info failed.\n");
    }

    if (!op->found) {
        return ngx_pubsub_respond_text(op->r, NGX_HTTP_NOT_FOUND, "text/plain",
                                       "Channel not found.\n");
    }

    return ngx_pubsub_info_response(op->r, NGX_HTTP_OK, op->sum);
}


/*
 * One operation per channel of ch, started by start(op, i); the summed
 * info answers once every reply is in (ngx_pubsub_op_info_reply()).
 */
template <typename F>
static ngx_int_t
ngx_pubsub_op_info_each(ngx_http_request_t *r, ngx_pubsub_channels_t *ch,
    F start)
{
    ngx_pubsub_op_t  *op;

    op = ngx_pubsub_op_create(r, ch->n, ngx_pubsub_op_info_answer);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        start(op, i);
    }

    return ngx_pubsub_op_wait(op);
}


static void
ngx_pubsub_op_info_reply(ngx_pubsub_op_t *op, pubsub::StoreResult res,
    const pubsub::ChannelInfo &info)
{
    ngx_pubsub_op_add_info(op, res, info);
    ngx_pubsub_op_done(op);
}


ngx_int_t
ngx_pubsub_channel_info(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch)
{
    /* several channels: the counts are summed, the last id is the newest */

    return ngx_pubsub_op_info_each(r, ch,
        [plcf, ch](ngx_pubsub_op_t *op, ngx_uint_t i) {
            /* presence included, however the engine counts it */
            plcf->engine->info(plcf, ngx_pubsub_sv(ch->key[i]),
                [op](pubsub::StoreResult res,
                     const pubsub::ChannelInfo &info)
                {
                    ngx_pubsub_op_info_reply(op, res, info);
                });
        });
}


static ngx_int_t
ngx_pubsub_delete(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch)
{
    return ngx_pubsub_op_info_each(r, ch,
        [plcf, ch](ngx_pubsub_op_t *op, ngx_uint_t i) {
            ngx_pubsub_store_for(plcf)->remove(ngx_pubsub_sv(ch->key[i]),
                [op, plcf, ch, i](pubsub::StoreResult res,
                                  const pubsub::ChannelInfo &info)
                {
                    pubsub::ChannelInfo  copy = info;

                    /* r waits for the last reply: it is still there */
                    if (res == pubsub::StoreResult::kOk) {
                        ngx_pubsub_chev_now(op->r, plcf,
                            pubsub::ChannelEvent::kChannelDelete,
                            ch->id[i], ch->key[i]);
                    }

                    copy.presence = 0;
                    ngx_pubsub_op_info_reply(op, res, copy);
                });
        });
}


ngx_int_t
ngx_pubsub_publisher_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t              rc;
    ngx_pubsub_channels_t *ch;

    rc = ngx_pubsub_cors(r, plcf, 0);
    if (rc == NGX_DECLINED) {
        ngx_http_discard_request_body(r);
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_POST || r->method == NGX_HTTP_PUT) {

        /*
         * Handed over by X-Accel-Redirect (ngx_pubsub_router.cpp): the body
         * the proxy read is there, and reading it again returns it.  A proxy
         * that streamed it (proxy_request_buffering off) kept none of it.
         */
        if (r->request_body != NULL && r->request_body_no_buffering) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "pubsub: cannot publish the body of a request "
                          "passed on unbuffered (proxy_request_buffering "
                          "off) before its X-Accel-Redirect");
            return ngx_pubsub_respond_text(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                       "text/plain",
                       "The request body was not kept for the publisher.\n");
        }

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_pubsub_body_handler);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    ngx_http_discard_request_body(r);

    ch = ngx_pubsub_channels(r, plcf, 1, &rc);
    if (ch == NULL) {
        return rc;
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_pubsub_delete(r, plcf, ch);
    }

    return ngx_pubsub_channel_info(r, plcf, ch);
}


/* The request body as one contiguous string (read from a file if spooled). */
static ngx_int_t
ngx_pubsub_body(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_chain_t  *cl;
    ngx_buf_t    *b;
    size_t        len;
    u_char       *p;
    ssize_t       n;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    if (len == 0) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;
    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    p = static_cast<u_char *>(ngx_pnalloc(r->pool, len));
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    return NGX_OK;
}


/* Evaluates a number-valued complex value; returns -1 when invalid. */
static ngx_int_t
ngx_pubsub_number(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_uint_t is_time)
{
    ngx_str_t   v;
    ngx_int_t   n;
    ngx_uint_t  constant;

    /* values without variables are parsed once per worker (both the
       buffer length and the timeout stay in this small cache) */
    static ngx_http_complex_value_t  *cached_cv[2];
    static ngx_int_t                  cached_n[2];

    constant = (cv->lengths == NULL);

    if (constant) {
        if (cached_cv[is_time] == cv) {
            return cached_n[is_time];
        }

        v = cv->value;

    } else if (ngx_http_complex_value(r, cv, &v) != NGX_OK) {
        return -1;
    }

    if (v.len == 0) {
        return -1;
    }

    n = is_time ? ngx_parse_time(&v, 1) : ngx_atoi(v.data, v.len);

    if (constant) {
        cached_cv[is_time] = cv;
        cached_n[is_time] = n;
    }

    return n;
}


/*
 * The per-request publishing parameters shared by HTTP and WebSocket
 * publishers: pubsub_message_buffer_length, pubsub_message_timeout and the
 * event name (pubsub_eventsource_event or X-EventSource-Event).  The views
 * point into r->pool.  NGX_ERROR (logged) when a value is invalid.
 */
ngx_int_t
ngx_pubsub_publish_params(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::PublishInput *in)
{
    ngx_int_t         buflen, ttl;
    ngx_str_t         event;
    ngx_table_elt_t  *h;

    buflen = ngx_pubsub_number(r, plcf->buffer_length, 0);
    ttl = ngx_pubsub_number(r, plcf->message_timeout, 1);

    if (buflen < 0 || ttl < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: pubsub_message_buffer_length or "
                      "pubsub_message_timeout is not a valid number");
        return NGX_ERROR;
    }

    event.len = 0;
    event.data = NULL;

    if (plcf->eventsource_event != NULL) {
        if (ngx_http_complex_value(r, plcf->eventsource_event, &event)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        h = ngx_pubsub_find_header(r, "X-EventSource-Event");
        if (h) {
            event = h->value;
        }
    }

    in->eventName = ngx_pubsub_sv(event);
    in->maxMessages = buflen;
    in->ttl = ttl;

    {
        const char  *err;
        ngx_int_t    rc;

        rc = ngx_pubsub_group_limits(r, plcf, &in->limits, &err);
        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "pubsub: %s", err);
        }
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_publish_answer(ngx_pubsub_op_t *op)
{
    ngx_http_request_t  *r = op->r;
    ngx_int_t            rc;

    if (op->failed) {
        rc = ngx_pubsub_status_of(op->last.status);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: publish failed: %s", op->last.reason.c_str());
        std::string msg = op->last.reason + "\n";
        return ngx_pubsub_respond_text(r, rc, "text/plain", msg);
    }

    ngx_pubsub_hook_set_message_ids(r, op->last.id, pubsub::MsgId());

    return ngx_pubsub_info_response(r, op->delivered ? NGX_HTTP_CREATED
                                                     : NGX_HTTP_ACCEPTED,
                                    op->last.info);
}


/*
 * Publishes `body` (Content-Type `ct`) to the request's channels.  Returns
 * the answer's rc, or NGX_DONE (after r->main->count++) when the store
 * answers later and finalizes then.
 */
static ngx_int_t
ngx_pubsub_publish_data(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, ngx_str_t body, ngx_str_t ct)
{
    pubsub::PublishInput    in;
    ngx_pubsub_op_t        *op;

    switch (ngx_pubsub_publish_params(r, plcf, &in)) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Invalid group limit value.\n");
    default:
        return ngx_pubsub_respond_text(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "text/plain",
                   "Invalid message buffer length or timeout.\n");
    }

    in.data = ngx_pubsub_sv(body);
    in.contentType = ngx_pubsub_sv(ct);

    op = ngx_pubsub_op_create(r, ch->n, ngx_pubsub_publish_answer);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the store copies the input before publish() returns */
    for (ngx_uint_t i = 0; i < ch->n; i++) {
        ngx_pubsub_store_for(plcf)->publish(ngx_pubsub_sv(ch->key[i]), in,
            [op, plcf, ch, i](pubsub::PublishReply &&reply) {
                if (reply.status != pubsub::StoreResult::kOk) {
                    op->failed++;
                    op->last = std::move(reply);

                } else {
                    /* r waits for the last reply: it is still there */
                    if (ngx_pubsub_chev_enabled(plcf)) {
                        /* $pubsub_message_id: this channel's new message */
                        ngx_pubsub_hook_set_message_ids(op->r, reply.id,
                                                        pubsub::MsgId());
                        ngx_pubsub_chev_now(op->r, plcf,
                                   pubsub::ChannelEvent::kChannelPublish,
                                   ch->id[i], ch->key[i]);
                    }

                    if (reply.info.subscribers > 0) {
                        op->delivered++;
                    }
                    if (!op->failed) {
                        op->last = std::move(reply);
                    }
                }

                ngx_pubsub_op_done(op);
            });
    }

    return ngx_pubsub_op_wait(op);
}


typedef struct {
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_pubsub_channels_t  *ch;
    ngx_str_t               body;
    ngx_str_t               ct;
} ngx_pubsub_upstream_ctx_t;


/*
 * The answer of pubsub_publisher_upstream_request: 2xx publishes the
 * backend's body and Content-Type, 204 publishes nothing, 304 publishes the
 * original message, anything else is relayed to the publisher.
 */
static ngx_int_t
ngx_pubsub_upstream_answer(ngx_http_request_t *r,
    ngx_pubsub_upstream_ctx_t *uc, ngx_pubsub_hook_result_t *res)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;
    char              text[128];
    int               n;

    if (res->failed) {
        n = snprintf(text, sizeof(text),
                     "The publisher upstream hook failed (%u).\n",
                     static_cast<unsigned>(res->status));
        return ngx_pubsub_respond_text(r, res->status, "text/plain",
                                       std::string_view(text, n));
    }

    if (res->status == NGX_HTTP_NO_CONTENT) {
        r->headers_out.status = NGX_HTTP_NO_CONTENT;
        r->headers_out.content_length_n = 0;
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    if (res->status == NGX_HTTP_NOT_MODIFIED) {
        return ngx_pubsub_publish_data(r, uc->plcf, uc->ch, uc->body, uc->ct);
    }

    if (res->status >= 200 && res->status < 300) {
        ngx_str_t body, ct;

        /* res lives until the callback returns: publish copies the data */
        body = res->body;
        ct = res->content_type;

        return ngx_pubsub_publish_data(r, uc->plcf, uc->ch, body, ct);
    }

    /* refused: the backend's status, headers and body */

    for (part = res->headers ? &res->headers->part : NULL; part;
         part = part->next)
    {
        h = static_cast<ngx_table_elt_t *>(part->elts);

        for (i = 0; i < part->nelts; i++) {
            std::string_view k = ngx_pubsub_sv(h[i].key);

            if (h[i].hash == 0 || k.size() == 0) {
                continue;
            }

            if (k.size() == 4 && ngx_strncasecmp(h[i].key.data,
                                                 (u_char *) "date", 4) == 0)
            {
                continue;
            }

            if (k.size() == 6 && ngx_strncasecmp(h[i].key.data,
                                                 (u_char *) "server", 6) == 0)
            {
                continue;
            }

            if (ngx_pubsub_set_header(r, k, ngx_pubsub_sv(h[i].value))
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    return ngx_pubsub_respond_text(r, res->status,
                                   ngx_pubsub_sv(res->content_type),
                                   ngx_pubsub_sv(res->body));
}


static void
ngx_pubsub_upstream_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_upstream_ctx_t  *uc = static_cast<ngx_pubsub_upstream_ctx_t *>(
                                     data);
    ngx_int_t                   rc;

    rc = ngx_pubsub_guard(r->connection->log, [r, uc, res] {
        return ngx_pubsub_upstream_answer(r, uc, res);
    });

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_pubsub_publish(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_pubsub_loc_conf_t      *plcf;
    ngx_pubsub_channels_t      *ch;
    ngx_pubsub_upstream_ctx_t  *uc;
    ngx_str_t                   body, ct, type;

    plcf = ngx_pubsub_get_loc_conf(r);

    ch = ngx_pubsub_channels(r, plcf, 1, &rc);
    if (ch == NULL) {
        return rc;
    }

    if (ngx_pubsub_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ct.len = 0;
    ct.data = NULL;

    if (r->headers_in.content_type) {
        ct = r->headers_in.content_type->value;
    }

    if (!ngx_pubsub_hook_has_upstream(r)) {
        return ngx_pubsub_publish_data(r, plcf, ch, body, ct);
    }

    uc = static_cast<ngx_pubsub_upstream_ctx_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_upstream_ctx_t)));
    if (uc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    uc->plcf = plcf;
    uc->ch = ch;
    uc->body = body;
    uc->ct = ct;

    ngx_str_set(&type, "http");

    if (ngx_pubsub_hook_publish_upstream(r, ch, body, ct, type, 1,
                                         ngx_pubsub_upstream_done, uc)
        == NULL)
    {
        return ngx_pubsub_respond_text(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "text/plain",
                   "The publisher upstream hook could not be sent.\n");
    }

    /* ngx_pubsub_upstream_done() finalizes */
    r->main->count++;
    return NGX_DONE;
}


static void
ngx_pubsub_body_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_pubsub_guard(r->connection->log, [r] {
        return ngx_pubsub_publish(r);
    });

    /*
     * NGX_DONE: waiting for the publisher upstream hook or the store, which
     * took a reference (r->main->count++) that this releases
     */
    ngx_http_finalize_request(r, rc);
}
