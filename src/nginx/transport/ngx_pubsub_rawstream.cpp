/*
 * ngx_pubsub: HTTP raw-stream subscribers, and the payload stream the
 * chunked transport shares with them (ngx_pubsub_chunked.cpp).
 *
 * An open-ended 200 response without Content-Length whose body is
 * "<payload><separator>" per message (pubsub_subscriber_http_raw_stream_
 * separator, default "\n"); an empty message is just the separator.  Over
 * HTTP/1.1 nginx's chunked coding frames the body (clients see the same
 * bytes after decoding), over HTTP/1.0 the connection is closed at the end.
 * No ping and no gap signal: anything extra would read as a message.  The
 * body ends (last chunk / close) when the channel is deleted or the
 * subscriber times out.  The chunked transport is the same stream with no
 * separator, where an empty message is not sent at all.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>


namespace {

class ngx_pubsub_payload_sub_t final : public ngx_pubsub_http_sub_t {
public:
    using ngx_pubsub_http_sub_t::ngx_pubsub_http_sub_t;

    void deliver(const pubsub::MessagePtr &msg) override;
    void gap() override {}
    void channelDeleted() override { (void) write_last(); }
    void on_timeout() override { (void) write_last(); }

    std::string_view  separator;
};


void
ngx_pubsub_payload_sub_t::deliver(const pubsub::MessagePtr &msg)
{
    /* nothing to send: a zero-length chunk would end the body */
    if (msg->data().empty() && separator.empty()) {
        return;
    }

    if (write(msg->data(), separator) == NGX_OK) {
        ngx_pubsub_stats_delivered(1);
        reset_timeout();
    }
}

}  // namespace


/* multiplexed: the payloads of every channel, in the order they come */
ngx_int_t
ngx_pubsub_payload_start(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs,
    ngx_uint_t transport, std::string_view separator)
{
    ngx_str_t                  ct;
    ngx_pubsub_payload_sub_t  *sub;

    sub = ngx_pubsub_sub_create<ngx_pubsub_payload_sub_t>(r, plcf, transport);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sub->separator = separator;

    ngx_str_null(&ct);

    return sub->start_stream(ch, specs, ct, {}, 0);
}


ngx_int_t
ngx_pubsub_rawstream_start(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs)
{
    return ngx_pubsub_payload_start(r, plcf, ch, specs,
                                    NGX_PUBSUB_SUB_RAWSTREAM,
                                    ngx_pubsub_sv(plcf->raw_separator));
}
