/*
 * ngx_pubsub: the WebSocket handshake and content handler (the connection
 * object and the other parts: ngx_pubsub_ws.h).  Everything that can be
 * refused with an HTTP status is settled before the 101: the upgrade
 * request, the origin, the channels and resume id, the publishing
 * parameters, the subprotocol and permessage-deflate, and the
 * subscription itself.  After the 101, start() takes the connection over.
 */

#include "ngx_pubsub_ws.h"

#include <optional>


/* every value of a request header, joined with ", " (empty when absent) */
static std::string_view
ngx_pubsub_ws_header(ngx_http_request_t *r, std::string_view name)
{
    ngx_table_elt_t  *h, *next;
    std::string       joined;

    h = ngx_pubsub_find_header(r, name);
    if (h == NULL) {
        return {};
    }

    next = ngx_pubsub_next_header(r, name, h);
    if (next == NULL) {
        return ngx_pubsub_sv(h->value);
    }

    joined.assign(ngx_pubsub_sv(h->value));

    for (h = next; h; h = ngx_pubsub_next_header(r, name, h)) {
        joined += ", ";
        joined += ngx_pubsub_sv(h->value);
    }

    ngx_str_t s = ngx_pubsub_pstr(r->pool, joined);

    return ngx_pubsub_sv(s);
}


ngx_int_t
ngx_pubsub_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view text)
{
    ngx_http_discard_request_body(r);

    return ngx_pubsub_respond_text(r, status, "text/plain", text);
}


/*
 * The upgrade request itself: NGX_OK, or NGX_DECLINED with what the
 * handler returns in *rc.
 */
static ngx_int_t
ngx_pubsub_ws_check_upgrade(ngx_http_request_t *r, ws::UpgradeRequest *up,
    ngx_int_t *rc)
{
    ws::HandshakeError  err;

    up->method = ngx_pubsub_sv(r->method_name);
    up->httpVersion = r->http_version;
    up->upgrade = ngx_pubsub_ws_header(r, "Upgrade");
    up->connection = ngx_pubsub_ws_header(r, "Connection");
    up->version = ngx_pubsub_ws_header(r, "Sec-WebSocket-Version");
    up->key = ngx_pubsub_ws_header(r, "Sec-WebSocket-Key");

    err = ws::validateUpgrade(*up);

    if (err == ws::HandshakeError::None) {
        return NGX_OK;
    }

    std::string text(ws::handshakeErrorText(err));

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pubsub: bad websocket handshake: %s", text.c_str());

    if ((err == ws::HandshakeError::MissingVersion
         || err == ws::HandshakeError::UnsupportedVersion)
        && ngx_pubsub_set_header(r, "Sec-WebSocket-Version", "13") != NGX_OK)
    {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    *rc = ngx_pubsub_ws_refuse(r, NGX_HTTP_BAD_REQUEST, text + ".\n");
    return NGX_DECLINED;
}


/*
 * The channels subscribed to and where to start: NGX_OK (*sch in r->pool),
 * or NGX_DECLINED with what the handler returns in *rc.
 */
static ngx_int_t
ngx_pubsub_ws_subscriber(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_ws_t *w, ngx_pubsub_channels_t **sch, pubsub::StartSpec *spec,
    std::vector<pubsub::StartSpec> *specs, ngx_int_t *rc)
{
    ngx_pubsub_channels_t  *ch;
    pubsub::ParsedMsgId     full;

    ch = ngx_pubsub_channels(r, plcf, 0, rc);
    if (ch == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_pubsub_resume_id(r, plcf, spec, &full, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_pubsub_ws_specs(r, ch, *spec, full, specs, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    *sch = ch;

    return NGX_OK;
}


/*
 * The channels published to and the request values a publishing
 * connection keeps (the request goes after the 101): NGX_OK, or
 * NGX_DECLINED with what the handler returns in *rc.
 */
static ngx_int_t
ngx_pubsub_ws_publisher(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_ws_t *w, ngx_uint_t subscribe, ngx_int_t *rc)
{
    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    w->pub = ngx_pubsub_channels(r, plcf, 1, rc);
    if (w->pub == NULL) {
        return NGX_DECLINED;
    }

    try {
        w->pub_own.reset(new ngx_pubsub_ws_pub_t);

    } catch (...) {
        return NGX_DECLINED;
    }

    ngx_pubsub_ws_pub_t  *own = w->pub_own.get();

    switch (ngx_pubsub_publish_params(r, plcf, &own->in)) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        *rc = ngx_pubsub_ws_refuse(r, NGX_HTTP_FORBIDDEN,
                  "Invalid group limit value.\n");
        return NGX_DECLINED;
    default:
        *rc = ngx_pubsub_ws_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                  "Invalid message buffer length or timeout.\n");
        return NGX_DECLINED;
    }

    try {
        for (ngx_uint_t i = 0; i < w->pub->n; i++) {
            own->keys.emplace_back(ngx_pubsub_sv(w->pub->key[i]));
        }

        if (r->headers_in.content_type) {
            own->text_type_buf.assign(
                ngx_pubsub_sv(r->headers_in.content_type->value));
        }

        own->event.assign(own->in.eventName);

        /* r goes away after the 101 (detach()): evaluate them now */
        for (ngx_uint_t i = 0;
             ngx_pubsub_chev_enabled(plcf) && i < w->pub->n; i++)
        {
            own->chev.emplace_back(ngx_pubsub_chev_prepare(r,
                plcf, pubsub::ChannelEvent::kChannelPublish,
                w->pub->id[i], w->pub->key[i]));
        }

    } catch (...) {
        return NGX_DECLINED;
    }

    own->text_type = own->text_type_buf;
    own->in.eventName = own->event;

    w->reply_info = subscribe ? 0 : 1;
    own->info_fmt = ngx_pubsub_info_format(r);
    w->upstream = ngx_pubsub_hook_has_upstream(r) ? 1 : 0;

    return NGX_OK;
}


/* what the 101 tells the client */
struct ngx_pubsub_ws_accept_t {
    std::optional<std::string_view>  proto;
    ws::DeflateNegotiation           dn;
    char                             key[ws::kAcceptKeySize];
};


/*
 * The subprotocol and permessage-deflate (the connection's framing), and
 * Sec-WebSocket-Accept: NGX_OK or NGX_ERROR.
 */
static ngx_int_t
ngx_pubsub_ws_negotiate(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_ws_t *w, const ws::UpgradeRequest &up,
    ngx_pubsub_ws_accept_t *acc)
{
    ws::DeflateConfig  dcfg;

    acc->proto = ws::chooseSubprotocol(
                     ngx_pubsub_ws_header(r, "Sec-WebSocket-Protocol"));

    dcfg.deflate = ngx_pubsub_ws_deflate_options();
    dcfg.clientMaxWindowBits = NGX_PUBSUB_WS_WINDOW_BITS;

    acc->dn = ws::negotiateDeflate(
                  ngx_pubsub_ws_header(r, "Sec-WebSocket-Extensions"), dcfg);

    w->framer.configure(acc->proto.has_value(),
                        acc->dn.accepted ? &acc->dn.params : nullptr,
                        ngx_pubsub_ws_deflate_options(),
                        plcf->deflate_for_websocket ? true : false);

    return ws::computeAcceptKey(up.key, acc->key) ? NGX_OK : NGX_ERROR;
}


/* the 101 with its headers, pushed out: NGX_OK, or an error to return */
static ngx_int_t
ngx_pubsub_ws_switch(ngx_http_request_t *r, const ngx_pubsub_ws_accept_t &acc)
{
    ngx_int_t                        rc;
    const ws::DeflateNegotiation    &dn = acc.dn;
    std::string_view                 accept(acc.key, ws::kAcceptKeySize);

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->disable_not_modified = 1;

    if (ngx_pubsub_set_header(r, "Upgrade", "websocket") != NGX_OK
        || ngx_pubsub_set_header(r, "Sec-WebSocket-Accept", accept) != NGX_OK
        || (acc.proto
            && ngx_pubsub_set_header(r, "Sec-WebSocket-Protocol", *acc.proto)
               != NGX_OK)
        || (dn.accepted
            && ngx_pubsub_set_header(r, "Sec-WebSocket-Extensions",
                                     dn.responseHeader) != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /* push the 101 out now (it would wait for postpone_output) */
    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the 101 is out: start() takes the connection over */
static void
ngx_pubsub_ws_opened(ngx_http_request_t *r, ngx_pubsub_ws_t *w,
    const pubsub::MsgId &resume)
{
    /* from here on, failures end the connection, never the handler */
    try {
        (void) w->start(resume);

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pubsub: websocket start failed (out of memory)");
        w->finish();
    }
}


/* the object is the request's until detach() gives it the connection */
static ngx_pubsub_ws_t *
ngx_pubsub_ws_create(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_pool_cleanup_t  *cln;
    ngx_pubsub_ws_t     *w;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    w = new (std::nothrow) ngx_pubsub_ws_t(r, plcf);
    if (w == NULL) {
        return NULL;
    }

    if (w->init(cln) != NGX_OK) {
        return NULL;   /* deleted by the cleanup */
    }

    return w;
}


static ngx_int_t
ngx_pubsub_ws_handshake(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t subscribe, ngx_uint_t publish,
    ngx_pubsub_ws_protocol_pt proto = NULL, ngx_uint_t upstream = 0)
{
    ngx_int_t                 rc;
    ngx_pubsub_ws_t          *w;
    ngx_pubsub_channels_t    *sch = NULL;
    ws::UpgradeRequest        up;
    ngx_pubsub_ws_accept_t    acc;
    pubsub::StartSpec         spec;
    pubsub::SubscriptionStart refused;
    std::vector<pubsub::StartSpec>  specs;

    if (ngx_pubsub_ws_check_upgrade(r, &up, &rc) != NGX_OK) {
        return rc;
    }

    rc = ngx_pubsub_cors(r, plcf, subscribe ? 1 : 0);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_ws_refuse(r, NGX_HTTP_FORBIDDEN,
                                    "Origin not allowed.\n");
    }
    if (rc != NGX_OK || ngx_pubsub_ws_worker == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = ngx_pubsub_ws_create(r, plcf);
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->subscriber = subscribe ? 1 : 0;

    if (proto) {
        /* channels come and go at run time, as the protocol says */
        w->subscriber = 1;
        w->upstream = upstream ? 1 : 0;
        w->protocol.reset(proto(w, r));

        if (!w->protocol) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* channels, resume id and publishing parameters: all before the 101 */

    if (subscribe
        && ngx_pubsub_ws_subscriber(r, plcf, w, &sch, &spec, &specs, &rc)
           != NGX_OK)
    {
        return rc;
    }

    if (publish
        && ngx_pubsub_ws_publisher(r, plcf, w, subscribe, &rc) != NGX_OK)
    {
        return rc;
    }

    if (ngx_pubsub_ws_negotiate(r, plcf, w, up, &acc) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the subscription, so that store refusals get an HTTP status */

    if (subscribe && w->subscribe(sch, specs, &refused) != NGX_OK) {
        return ngx_pubsub_ws_refuse(r,
                                    ngx_pubsub_subscribe_status(refused.status),
                                    refused.reason + "\n");
    }

    ngx_http_set_ctx(r, w, ngx_pubsub_module);

    rc = ngx_pubsub_ws_switch(r, acc);
    if (rc != NGX_OK) {
        w->stop();
        return rc;
    }

    r->main->count++;

    ngx_pubsub_ws_opened(r, w, spec.after);

    return NGX_DONE;
}


ngx_int_t
ngx_pubsub_websocket_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t subscribe, ngx_uint_t publish)
{
    return ngx_pubsub_ws_handshake(r, plcf, subscribe, publish);
}


ngx_int_t
ngx_pubsub_websocket_protocol_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_ws_protocol_pt proto,
    ngx_uint_t publisher_upstream)
{
    ngx_int_t  rc;

    if (ngx_pubsub_store_for(plcf) == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    rc = ngx_pubsub_origin_allowed(r, plcf);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_ws_refuse(r, NGX_HTTP_FORBIDDEN,
                                    "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pubsub_ws_handshake(r, plcf, 0, 0, proto, publisher_upstream);
}


/* ---------------------------------------------------------------- start */


/* After the 101 went into nginx's output: take the connection over. */
ngx_int_t
ngx_pubsub_ws_t::start(const pubsub::MsgId &resume)
{
    ngx_connection_t          *c = r->connection;
    ngx_http_core_loc_conf_t  *clcf;

    started_ = true;

    r->read_event_handler = read_handler;
    r->write_event_handler = write_handler;
    r->keepalive = 0;
    r->lingering_close = 0;
    c->idle = 1;    /* closed (with a 1001) on graceful shutdown */

    /* frames are written whole: no reason to wait for ACKs (as proxied
       upgraded connections do) */
    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        finish();
        return NGX_OK;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* the status count, presence, the backlog */
    subscription_start(resume);

    if (protocol && !finishing_ && !close_sent_) {
        protocol->start();
    }

    if (finishing_ || close_sent_) {
        return NGX_OK;
    }

    if (subscriber && plcf->subscriber_timeout) {
        ngx_add_timer(&timeout_ev_, plcf->subscriber_timeout);
    }

    if (plcf->ping_interval) {
        ngx_add_timer(&ping_ev_, plcf->ping_interval);
    }

    (void) flush();

    read_early_input();

    if (!finishing_) {
        read();
    }

    if (!finishing_) {
        schedule_detach();
    }

    return NGX_OK;
}


/* frames the client sent right behind its handshake */
void
ngx_pubsub_ws_t::read_early_input()
{
    ngx_buf_t  *hb = r->header_in;

    if (hb && hb->pos < hb->last && !finishing_) {
        const u_char *p = hb->pos;
        size_t len = hb->last - hb->pos;
        hb->pos = hb->last;
        feed(p, len);
    }
}
