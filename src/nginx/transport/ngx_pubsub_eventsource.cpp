/*
 * ngx_pubsub: EventSource (Server-Sent Events) subscribers.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>
#include <string>

#include "pubsub/codec/format.h"


namespace {

class ngx_pubsub_es_sub_t final : public ngx_pubsub_http_sub_t {
public:
    using ngx_pubsub_http_sub_t::ngx_pubsub_http_sub_t;
    ~ngx_pubsub_es_sub_t() override
        { if (event_own) { ngx_free(event.data); } }

    /* the event name outlives the request */
    ngx_int_t on_detach() override;

    void deliver(const pubsub::MessagePtr &msg) override;
    void gap() override;
    void channelDeleted() override;

    /* multiplexed */
    void deliver(size_t, const pubsub::MessagePtr &msg,
                 std::string_view id) override { emit(msg, id); }

    void emit(const pubsub::MessagePtr &msg, std::string_view id);
    void on_timeout() override;
    void on_shutdown() override
        { (void) write_last(":503: 503 Service Unavailable\n\n"); }
    void on_ping() override;
    void on_presence(const pubsub::PresenceEvent &ev,
                     const std::string &json) override;

    ngx_str_t  event;   /* pubsub_eventsource_event at this location */
    bool       event_own = false;   /* event.data is ours (ngx_alloc) */
};


ngx_int_t
ngx_pubsub_es_sub_t::on_detach()
{
    u_char  *p;

    if (event.len == 0 || event_own) {
        return NGX_OK;
    }

    p = static_cast<u_char *>(ngx_alloc(event.len, c->log));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, event.data, event.len);
    event.data = p;
    event_own = true;

    return NGX_OK;
}


void
ngx_pubsub_es_sub_t::deliver(const pubsub::MessagePtr &msg)
{
    char  id[pubsub::kMaxMsgIdText];

    size_t n = pubsub::writeMsgId(id, msg->id());

    emit(msg, std::string_view(id, n));
}


void
ngx_pubsub_es_sub_t::emit(const pubsub::MessagePtr &msg, std::string_view id)
{
    std::string  out;

    std::string_view ev = event.len ? ngx_pubsub_sv(event) : msg->eventName();

    out.reserve(msg->data().size() + id.size() + 64);
    pubsub::appendSseEvent(out, ev, id, msg->data());

    if (write(out) == NGX_OK) {
        ngx_pubsub_stats_delivered(1);
        reset_timeout();
    }
}


void
ngx_pubsub_es_sub_t::gap()
{
    std::string  out;
    std::string  data = "{\"event\":\"gap\",\"reason\":\"messages were "
                        "dropped before they could be delivered\"}";

    pubsub::appendSseEvent(out, "pubsub.gap", "", data);
    (void) write(out);
}


/* no id: the browser's Last-Event-ID stays the last message's */
void
ngx_pubsub_es_sub_t::on_presence(const pubsub::PresenceEvent &ev,
    const std::string &json)
{
    std::string  out;

    pubsub::appendSseEvent(out, ev.type == pubsub::PresenceEventType::kJoin
                                ? "pubsub.join" : "pubsub.leave", "", json);
    (void) write(out);
}


/*
 * The stream ends with nchan's status comment, ":<code>: <status line>",
 * byte for byte: clients written for nchan read the code from it.
 */
void
ngx_pubsub_es_sub_t::channelDeleted()
{
    (void) write_last(":410: 410 Gone\n\n");
}


void
ngx_pubsub_es_sub_t::on_timeout()
{
    (void) write_last(":408: 408 Request Timeout\n\n");
}


void
ngx_pubsub_es_sub_t::on_ping()
{
    std::string  out;

    if (plcf->es_ping_comment.len == 0 && plcf->es_ping_event.len == 0
        && plcf->es_ping_data.len == 0)
    {
        (void) write(":\n\n");
        return;
    }

    if (plcf->es_ping_comment.len) {
        out.append(":");
        out.append(ngx_pubsub_sv(plcf->es_ping_comment));
        out.push_back('\n');
    }

    if (plcf->es_ping_event.len) {
        out.append("event: ");
        out.append(ngx_pubsub_sv(plcf->es_ping_event));
        out.push_back('\n');
    }

    if (plcf->es_ping_data.len) {
        out.append("data: ");
        out.append(ngx_pubsub_sv(plcf->es_ping_data));
        out.push_back('\n');
    }

    out.push_back('\n');
    (void) write(out);
}

}  // namespace


ngx_int_t
ngx_pubsub_eventsource_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs)
{
    ngx_str_t             ct = ngx_string("text/event-stream; charset=utf-8");
    ngx_pubsub_es_sub_t  *sub;

    sub = ngx_pubsub_sub_create<ngx_pubsub_es_sub_t>(r, plcf,
              NGX_PUBSUB_SUB_EVENTSOURCE);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sub->event.len = 0;
    sub->event.data = NULL;

    if (plcf->eventsource_event
        && ngx_http_complex_value(r, plcf->eventsource_event, &sub->event)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return sub->start_stream(ch, specs, ct, ": hi\n\n", 1);
}
