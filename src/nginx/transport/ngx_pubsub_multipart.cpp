/*
 * ngx_pubsub: multipart/mixed streaming subscribers.
 *
 * "Accept: multipart/mixed" gets an open-ended 200 response of
 * "multipart/mixed; boundary=<32 chars>".  The first "--boundary" is sent at
 * once; each message is then one part that ends with the next boundary:
 *
 *     \r\nLast-Modified: <time>\r\nEtag: <tag>\r\n
 *     [Content-Type: <type>\r\n][X-Pubsub-Gap: 1\r\n]\r\n<payload>\r\n--boundary
 *
 * so a client has every part complete as soon as it arrives.  The stream
 * ends with "--\r\n" (making the last boundary the closing delimiter) when
 * the channel is deleted or the subscriber times out.  Messages that were
 * dropped before they could be delivered are signalled by the header
 * "X-Pubsub-Gap: 1" on the next part.  No ping: bytes between boundaries
 * belong to a part.
 *
 * Multiplexed, the parts carry the compound position like nchan's: the
 * newest time in Last-Modified and the tags ("0,[1],-") in Etag, which a
 * client resumes from with If-Modified-Since and If-None-Match.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>
#include <string>


namespace {

class ngx_pubsub_mp_sub_t final : public ngx_pubsub_http_sub_t {
public:
    using ngx_pubsub_http_sub_t::ngx_pubsub_http_sub_t;

    void deliver(const pubsub::MessagePtr &msg) override;
    void deliver(size_t, const pubsub::MessagePtr &msg,
                 std::string_view id) override;
    void gap() override { gap_ = 1; }
    void channelDeleted() override;
    void on_timeout() override;

    void emit(const pubsub::MessagePtr &msg, time_t time,
              std::string_view tag);

    std::string_view  boundary;   /* "\r\n--" + 32 chars, in delim_ */
    ngx_uint_t        gap_ = 0;
    char              delim_[4 + 32];
};


void
ngx_pubsub_mp_sub_t::deliver(const pubsub::MessagePtr &msg)
{
    char  tag[16];
    int   n;

    n = snprintf(tag, sizeof(tag), "%d", static_cast<int>(msg->id().tag));

    emit(msg, msg->id().time, std::string_view(tag, n));
}


/* id is "time:tags"; the time is the multiplexer's */
void
ngx_pubsub_mp_sub_t::deliver(size_t, const pubsub::MessagePtr &msg,
    std::string_view id)
{
    size_t colon = id.find(':');

    emit(msg, mux->compoundTime(),
         colon == std::string_view::npos ? id : id.substr(colon + 1));
}


void
ngx_pubsub_mp_sub_t::emit(const pubsub::MessagePtr &msg, time_t time,
    std::string_view tag)
{
    u_char       date[sizeof("Mon, 28 Sep 1970 06:00:00 GMT")];
    std::string  head;

    if (finishing) {
        return;
    }

    u_char *end = ngx_http_time(date, time);

    head.reserve(128 + tag.size() + msg->contentType().size());
    head.append("\r\nLast-Modified: ");
    head.append(reinterpret_cast<char *>(date), end - date);
    head.append("\r\nEtag: ");
    head.append(tag);
    head.append("\r\n");

    if (!msg->contentType().empty()) {
        head.append("Content-Type: ");
        head.append(msg->contentType());
        head.append("\r\n");
    }

    if (gap_) {
        head.append("X-Pubsub-Gap: 1\r\n");
        gap_ = 0;
    }

    head.append("\r\n");

    if (write(head, msg->data(), boundary) == NGX_OK) {
        ngx_pubsub_stats_delivered(1);
        reset_timeout();
    }
}


void
ngx_pubsub_mp_sub_t::channelDeleted()
{
    (void) write_last("--\r\n");
}


void
ngx_pubsub_mp_sub_t::on_timeout()
{
    (void) write_last("--\r\n");
}

}  // namespace


ngx_int_t
ngx_pubsub_multipart_start(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs)
{
    ngx_str_t             ct;
    std::string           b, delim;
    ngx_pubsub_mp_sub_t  *sub;

    sub = ngx_pubsub_sub_create<ngx_pubsub_mp_sub_t>(r, plcf,
              NGX_PUBSUB_SUB_MULTIPART);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pubsub_multipart_boundary(&b);

    ct = ngx_pubsub_pstr(r->pool, "multipart/mixed; boundary=" + b);

    if (ct.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;   /* the pool cleanup ends sub */
    }

    /* the subscriber's own: it outlives the request (detached streams) */
    delim = "\r\n--" + b;
    ngx_memcpy(sub->delim_, delim.data(), sizeof(sub->delim_));
    sub->boundary = std::string_view(sub->delim_, sizeof(sub->delim_));

    /* the first delimiter has no CRLF before it */
    return sub->start_stream(ch, specs, ct, sub->boundary.substr(2), 0);
}
