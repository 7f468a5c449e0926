/*
 * ngx_pubsub: WebSocket subscribers and publishers (RFC 6455).
 */

#include "ngx_pubsub.h"


ngx_int_t
ngx_pubsub_websocket_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t subscribe, ngx_uint_t publish)
{
    ngx_http_discard_request_body(r);

    return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_IMPLEMENTED, "text/plain",
                                   "WebSocket is not implemented yet.\n");
}
