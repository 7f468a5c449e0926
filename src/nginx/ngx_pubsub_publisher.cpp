/*
 * ngx_pubsub: the HTTP publisher - POST/PUT publish the body, GET answers
 * channel info, DELETE deletes the channel.
 */

#include "ngx_pubsub.h"

#include <string>

#include "pubsub/format.h"


static void ngx_pubsub_body_handler(ngx_http_request_t *r);


static ngx_int_t
ngx_pubsub_info_response(ngx_http_request_t *r, ngx_uint_t status,
    const pubsub::ChannelInfo &info)
{
    ngx_table_elt_t     *accept;
    pubsub::InfoFormat   fmt;

    accept = ngx_pubsub_find_header(r, "Accept");
    fmt = pubsub::infoFormatFromAccept(accept ? ngx_pubsub_sv(accept->value)
                                              : std::string_view());

    std::string body = pubsub::formatChannelInfo(info, fmt, ngx_time());

    return ngx_pubsub_respond_text(r, status, pubsub::infoContentType(fmt),
                                   body);
}


ngx_int_t
ngx_pubsub_channel_info(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch)
{
    ngx_int_t            rc = NGX_ERROR;
    pubsub::ChannelInfo  sum;
    ngx_uint_t           found = 0;

    /* several channels: the counts are summed, the last id is the newest */

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        ngx_pubsub_store()->info(ngx_pubsub_sv(ch->key[i]),
            [&](pubsub::StoreResult res, const pubsub::ChannelInfo &info) {
                if (res != pubsub::StoreResult::kOk) {
                    return;
                }
                found++;
                sum.found = true;
                sum.messages += info.messages;
                sum.subscribers += info.subscribers;
                sum.presence += info.presence;
                if (info.lastSeen > sum.lastSeen) {
                    sum.lastSeen = info.lastSeen;
                }
                if (info.lastId > sum.lastId) {
                    sum.lastId = info.lastId;
                }
            });
    }

    if (!found) {
        rc = ngx_pubsub_respond_text(r, NGX_HTTP_NOT_FOUND, "text/plain",
                                     "Channel not found.\n");
        return rc;
    }

    return ngx_pubsub_info_response(r, NGX_HTTP_OK, sum);
}


static ngx_int_t
ngx_pubsub_delete(ngx_http_request_t *r, ngx_pubsub_channels_t *ch)
{
    pubsub::ChannelInfo  sum;
    ngx_uint_t           found = 0;

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        ngx_pubsub_store()->remove(ngx_pubsub_sv(ch->key[i]),
            [&](pubsub::StoreResult res, const pubsub::ChannelInfo &info) {
                if (res != pubsub::StoreResult::kOk) {
                    return;
                }
                found++;
                sum.found = true;
                sum.messages += info.messages;
                sum.subscribers += info.subscribers;
                if (info.lastId > sum.lastId) {
                    sum.lastId = info.lastId;
                }
            });
    }

    if (!found) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_FOUND, "text/plain",
                                       "Channel not found.\n");
    }

    return ngx_pubsub_info_response(r, NGX_HTTP_OK, sum);
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
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_pubsub_body_handler);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    ngx_http_discard_request_body(r);

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pubsub_channels(r, plcf, 1, ch) != NGX_OK) {
        return ch->rc;
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_pubsub_delete(r, ch);
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
    ngx_str_t  v;

    if (ngx_http_complex_value(r, cv, &v) != NGX_OK || v.len == 0) {
        return -1;
    }

    if (is_time) {
        return ngx_parse_time(&v, 1);
    }

    return ngx_atoi(v.data, v.len);
}


static ngx_int_t
ngx_pubsub_publish(ngx_http_request_t *r)
{
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_pubsub_channels_t  *ch;
    ngx_str_t               body, event;
    ngx_int_t               rc, buflen, ttl;
    ngx_table_elt_t        *h;
    pubsub::PublishInput    in;
    pubsub::PublishReply    last;
    ngx_uint_t              delivered, failed;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module));

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pubsub_channels(r, plcf, 1, ch) != NGX_OK) {
        return ch->rc;
    }

    if (ngx_pubsub_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    buflen = ngx_pubsub_number(r, plcf->buffer_length, 0);
    ttl = ngx_pubsub_number(r, plcf->message_timeout, 1);

    if (buflen < 0 || ttl < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: pubsub_message_buffer_length or "
                      "pubsub_message_timeout is not a valid number");
        return ngx_pubsub_respond_text(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "text/plain",
                   "Invalid message buffer length or timeout.\n");
    }

    event.len = 0;
    event.data = NULL;

    if (plcf->eventsource_event != NULL) {
        if (ngx_http_complex_value(r, plcf->eventsource_event, &event)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        h = ngx_pubsub_find_header(r, "X-EventSource-Event");
        if (h) {
            event = h->value;
        }
    }

    in.data = ngx_pubsub_sv(body);
    in.eventName = ngx_pubsub_sv(event);
    in.maxMessages = buflen;
    in.ttl = ttl;
    in.limits = ngx_pubsub_group_limits(plcf);

    if (r->headers_in.content_type) {
        in.contentType = ngx_pubsub_sv(r->headers_in.content_type->value);
    }

    delivered = 0;
    failed = 0;

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        ngx_pubsub_store()->publish(ngx_pubsub_sv(ch->key[i]), in,
            [&](pubsub::PublishReply &&reply) {
                if (reply.status != pubsub::StoreResult::kOk) {
                    failed++;
                    last = std::move(reply);
                    return;
                }
                if (reply.info.subscribers > 0) {
                    delivered++;
                }
                if (!failed) {
                    last = std::move(reply);
                }
            });
    }

    if (failed) {
        rc = ngx_pubsub_status_of(last.status);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: publish failed: %s", last.reason.c_str());
        std::string msg = last.reason + "\n";
        return ngx_pubsub_respond_text(r, rc, "text/plain", msg);
    }

    return ngx_pubsub_info_response(r, delivered ? NGX_HTTP_CREATED
                                                 : NGX_HTTP_ACCEPTED,
                                    last.info);
}


static void
ngx_pubsub_body_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_pubsub_guard(r->connection->log, [r] {
        return ngx_pubsub_publish(r);
    });

    ngx_http_finalize_request(r, rc);
}
