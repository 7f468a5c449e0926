/*
 * ngx_pubsub: the content handler - a request goes to its role (publisher,
 * subscriber transport, presence API) by method and headers; OPTIONS and
 * methods a location does not serve are answered here.  The engine is
 * prepared before the request is routed (Redis: the channels' snapshots).
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_conf.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_hooks.h"

#include <string>



static ngx_int_t
ngx_pubsub_not_allowed(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    std::string_view allow;

    if (plcf->pub_roles && plcf->sub_roles) {
        allow = "GET, POST, PUT, DELETE, OPTIONS";

    } else if (plcf->pub_roles) {
        allow = "GET, POST, PUT, DELETE, OPTIONS";

    } else {
        allow = "GET, OPTIONS";
    }

    if (ngx_pubsub_set_header(r, "Allow", allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_discard_request_body(r);

    return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_ALLOWED, "text/plain",
                                   "Method not allowed.\n");
}


static ngx_int_t
ngx_pubsub_options(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t         rc;
    std::string_view  methods, headers;

    rc = ngx_pubsub_cors(r, plcf, 0);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (plcf->pub_roles) {
        methods = "GET, POST, PUT, DELETE, OPTIONS";
    } else if (plcf->group_location) {
        methods = "GET, POST, DELETE, OPTIONS";
    } else {
        methods = "GET, OPTIONS";
    }

    if (plcf->sub_roles) {
        headers = "If-None-Match, If-Modified-Since, Last-Event-ID, "
                  "Content-Type, Cache-Control, X-EventSource-Event, "
                  "Authorization";
    } else {
        headers = "Content-Type, X-EventSource-Event, Authorization";
    }

    if (ngx_pubsub_set_header(r, "Allow", methods) != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Allow-Methods", methods)
           != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Allow-Headers", headers)
           != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Max-Age", "600")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_discard_request_body(r);

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


/* whether any request header `name` lists `token` */
static ngx_uint_t
ngx_pubsub_header_has(ngx_http_request_t *r, std::string_view name,
    std::string_view token)
{
    ngx_table_elt_t  *h;

    for (h = ngx_pubsub_next_header(r, name, NULL); h;
         h = ngx_pubsub_next_header(r, name, h))
    {
        if (pubsub::headerHasToken(ngx_pubsub_sv(h->value), token)) {
            return 1;
        }
    }

    return 0;
}


ngx_uint_t
ngx_pubsub_is_websocket(ngx_http_request_t *r)
{
    if (r->headers_in.upgrade == NULL) {
        return 0;
    }

    return pubsub::headerHasToken(ngx_pubsub_sv(r->headers_in.upgrade->value),
                                  "websocket");
}


/* Picks the subscriber transport of a GET, or 0 when none fits. */
ngx_uint_t
ngx_pubsub_pick_transport(ngx_http_request_t *r, ngx_uint_t enabled)
{
    if ((enabled & NGX_PUBSUB_SUB_EVENTSOURCE)
        && ngx_pubsub_header_has(r, "Accept", "text/event-stream"))
    {
        return NGX_PUBSUB_SUB_EVENTSOURCE;
    }

    if ((enabled & NGX_PUBSUB_SUB_CHUNKED)
        && ngx_pubsub_header_has(r, "TE", "chunked"))
    {
        return NGX_PUBSUB_SUB_CHUNKED;
    }

    if ((enabled & NGX_PUBSUB_SUB_MULTIPART)
        && ngx_pubsub_header_has(r, "Accept", "multipart/mixed"))
    {
        return NGX_PUBSUB_SUB_MULTIPART;
    }

    if (enabled & NGX_PUBSUB_SUB_INTERVALPOLL) {
        return NGX_PUBSUB_SUB_INTERVALPOLL;
    }

    if (enabled & NGX_PUBSUB_SUB_RAWSTREAM) {
        return NGX_PUBSUB_SUB_RAWSTREAM;
    }

    if (enabled & NGX_PUBSUB_SUB_LONGPOLL) {
        return NGX_PUBSUB_SUB_LONGPOLL;
    }

    return 0;
}


ngx_uint_t
ngx_pubsub_subscriber_request(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf)
{
    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return 0;
    }

    if (ngx_pubsub_is_websocket(r)) {
        return plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET;
    }

    return plcf->sub_roles ? ngx_pubsub_pick_transport(r, plcf->sub_roles)
                           : 0;
}


/*
 * Answers 403 when r's Origin is refused (SPEC section 11): the status to
 * return, or NGX_DECLINED when the origin is allowed.
 */
static ngx_int_t
ngx_pubsub_origin_refused(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    switch (ngx_pubsub_origin_allowed(r, plcf)) {
    case NGX_OK:
        return NGX_DECLINED;
    case NGX_DECLINED:
        ngx_http_discard_request_body(r);
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Origin not allowed.\n");
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* a WebSocket handshake: subscriber, publisher or both */
static ngx_int_t
ngx_pubsub_route_websocket(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t   rc;
    ngx_uint_t  sub = plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET;
    ngx_uint_t  pub = plcf->pub_roles & NGX_PUBSUB_PUB_WEBSOCKET;

    if (r->method != NGX_HTTP_GET && (sub || pub)) {
        /* a WebSocket handshake is a GET (RFC 6455 4.1): not a publish */
        ngx_http_discard_request_body(r);
        return ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST, "text/plain",
                   "A WebSocket handshake must be a GET request.\n");
    }

    if (!sub && !pub) {
        ngx_http_discard_request_body(r);
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                   "WebSocket is not enabled at this location.\n");
    }

    /* WebSocket handshakes are not covered by CORS: checked here */
    rc = ngx_pubsub_origin_refused(r, plcf);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* a subscriber whose token does not allow publishing stays one */
    if (sub && pub && !ngx_pubsub_token_may_publish(r)) {
        pub = 0;
    }

    return ngx_pubsub_websocket_handler(r, plcf, sub, pub);
}


/* plain HTTP: a subscriber transport that fits, or the publisher */
static ngx_int_t
ngx_pubsub_route_http(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_uint_t  transport;

    switch (r->method) {

    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        if (plcf->sub_roles) {
            transport = ngx_pubsub_pick_transport(r, plcf->sub_roles);

            if (transport) {
                return ngx_pubsub_subscriber_handler(r, plcf, transport);
            }

            if (!(plcf->pub_roles & NGX_PUBSUB_PUB_HTTP)) {
                ngx_http_discard_request_body(r);
                return ngx_pubsub_respond_text(r, 406,
                           "text/plain",
                           "No subscriber transport enabled here fits "
                           "this request.\n");
            }
        }

        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            return ngx_pubsub_publisher_handler(r, plcf);
        }

        break;

    case NGX_HTTP_POST:
    case NGX_HTTP_PUT:
    case NGX_HTTP_DELETE:
        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            return ngx_pubsub_publisher_handler(r, plcf);
        }

        break;

    default:
        break;
    }

    return ngx_pubsub_not_allowed(r, plcf);
}


static ngx_int_t
ngx_pubsub_route(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_pubsub_loc_conf_t  *plcf;

    plcf = ngx_pubsub_get_loc_conf(r);

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_pubsub_options(r, plcf);
    }

    if (ngx_pubsub_store_for(plcf) == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (plcf->presence_api) {
        rc = ngx_pubsub_origin_refused(r, plcf);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_pubsub_presence_api_handler(r, plcf);
    }

    if (plcf->group_location || plcf->subscriber_info == 1) {
        rc = ngx_pubsub_origin_refused(r, plcf);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return plcf->group_location ? ngx_pubsub_group_handler(r, plcf)
                                    : ngx_pubsub_subinfo_handler(r, plcf);
    }

    /* a non-GET "handshake" where no WebSocket role is: plain HTTP */
    if (ngx_pubsub_is_websocket(r)
        && (r->method == NGX_HTTP_GET
            || (plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET)
            || (plcf->pub_roles & NGX_PUBSUB_PUB_WEBSOCKET)))
    {
        return ngx_pubsub_route_websocket(r, plcf);
    }

    return ngx_pubsub_route_http(r, plcf);
}



/*
 * X-Accel-Redirect.  An application location that proxies a POST can hand
 * it to a publisher location with "X-Accel-Redirect: /pub/..." so that it
 * publishes after the application's own checks (nchan does this).  nginx's
 * upstream module turns such a request into a GET before the internal
 * redirect (ngx_http_upstream_process_headers), but the request line still
 * has the client's method and the body the proxy read is kept with the
 * request.  In a location that publishes over HTTP, the method comes back
 * here, in the rewrite phase, before the hooks' access phase classifies
 * the request.
 */
static ngx_int_t
ngx_pubsub_x_accel_method(ngx_http_request_t *r)
{
    static ngx_str_t        post = ngx_string("POST");
    static ngx_str_t        put = ngx_string("PUT");
    static ngx_str_t        del = ngx_string("DELETE");
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_str_t              *name;
    ngx_uint_t              method;

    if (r->method != NGX_HTTP_GET
        || !r->internal
        || r->upstream == NULL
        || r->upstream->headers_in.x_accel_redirect == NULL)
    {
        return NGX_DECLINED;
    }

    plcf = ngx_pubsub_get_loc_conf(r);

    if (plcf == NULL || !(plcf->pub_roles & NGX_PUBSUB_PUB_HTTP)) {
        return NGX_DECLINED;
    }

    std::string_view line = ngx_pubsub_sv(r->request_line);

    if (line.substr(0, 5) == "POST ") {
        method = NGX_HTTP_POST;
        name = &post;

    } else if (line.substr(0, 4) == "PUT ") {
        method = NGX_HTTP_PUT;
        name = &put;

    } else if (line.substr(0, 7) == "DELETE ") {
        method = NGX_HTTP_DELETE;
        name = &del;

    } else {
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pubsub: X-Accel-Redirect of a %V", name);

    r->method = method;
    r->method_name = *name;

    return NGX_DECLINED;
}


ngx_int_t
ngx_pubsub_router_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));

    h = static_cast<ngx_http_handler_pt *>(
            ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_pubsub_x_accel_method;

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_handler(ngx_http_request_t *r)
{
    return ngx_pubsub_guard(r->connection->log, [r] {
        ngx_pubsub_loc_conf_t *plcf = ngx_pubsub_get_loc_conf(r);

        /* the engine makes subscribe() ready first (Redis: snapshots) */
        return plcf->engine->prepare(r, plcf, ngx_pubsub_route);
    });
}
