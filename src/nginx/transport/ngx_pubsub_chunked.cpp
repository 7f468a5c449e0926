/*
 * ngx_pubsub: HTTP chunked subscribers.
 *
 * A GET with "TE: chunked" gets an open-ended 200 response whose body is
 * chunked by nginx's chunked filter, one chunk per message: each message is
 * written as one buffer with a flush, and the filter frames every output
 * call as one chunk.  Empty messages are not sent (a zero-length chunk ends
 * the body).  The stream ends with the last chunk "0\r\n\r\n" when the
 * channel is deleted or the subscriber times out.
 *
 * There is no keep-alive ping: nothing can be sent inside a chunked body
 * that a client would not read as data, and nginx writes the chunk headers
 * itself, so chunk extensions are not available either.  Message ids and
 * gaps are not signalled: the chunked body carries payloads only.
 *
 * The transport needs HTTP/1.1 framing: over HTTP/2 nginx sends the body as
 * DATA frames without chunking, and HTTP/1.0 has no chunked coding, so
 * such requests (and locations with chunked_transfer_encoding off) are
 * refused with 406 instead of streaming payloads with no boundaries.
 */

#include "ngx_pubsub_subscriber.h"


/* the chunked coding is needed; NGX_OK or the handler's rc in *rc */
static ngx_int_t
ngx_pubsub_chunked_check(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_http_core_module));

    if (r->http_version != NGX_HTTP_VERSION_11) {
        *rc = ngx_pubsub_respond_text(r, 406 /* Not Acceptable */,
                  "text/plain",
                  "The chunked transport needs HTTP/1.1 "
                  "(HTTP/2 and HTTP/1.0 have no chunked coding).\n");
        return NGX_DECLINED;
    }

    if (!clcf->chunked_transfer_encoding) {
        *rc = ngx_pubsub_respond_text(r, 406 /* Not Acceptable */,
                  "text/plain",
                  "The chunked transport is not available here "
                  "(chunked_transfer_encoding is off).\n");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the payloads of every channel, one chunk each (ngx_pubsub_rawstream.cpp) */
ngx_int_t
ngx_pubsub_chunked_start(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs)
{
    ngx_int_t  rc;

    if (ngx_pubsub_chunked_check(r, &rc) != NGX_OK) {
        return rc;
    }

    return ngx_pubsub_payload_start(r, plcf, ch, specs,
                                    NGX_PUBSUB_SUB_CHUNKED, {});
}
