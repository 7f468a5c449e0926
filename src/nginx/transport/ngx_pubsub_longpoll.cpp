/*
 * ngx_pubsub: long-poll and interval-poll subscribers.
 *
 * A long-poll request is answered with the first message after its resume
 * position (or with all of them, pubsub_longpoll_multipart_response), and
 * waits for one when there is none.  An interval-poll request never waits:
 * with nothing to send it gets 304.  Each response carries the message id
 * in Last-Modified (time) and Etag (tag), which the client sends back as
 * If-Modified-Since and If-None-Match.
 *
 * Every answer carries Cache-Control: no-store.  With no-cache Chromium
 * still makes the polls of one URL (several tabs of one profile) wait, one
 * after the other, for the cache entry of the poll in flight.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>
#include <string>
#include <vector>


namespace {

class ngx_pubsub_lp_sub_t final : public ngx_pubsub_http_sub_t {
public:
    using ngx_pubsub_http_sub_t::ngx_pubsub_http_sub_t;

    void deliver(const pubsub::MessagePtr &msg) override;
    void gap() override { gap_ = 1; }
    void channelDeleted() override;
    void on_timeout() override;
    void on_shutdown() override;
    void on_presence(const pubsub::PresenceEvent &ev,
                     const std::string &json) override;

    /* multiplexed */
    void deliver(size_t channel, const pubsub::MessagePtr &msg,
                 std::string_view) override;
    void gap(size_t) override { gap_ = 1; }

    /* multiplexed backlog being gathered for one response */
    std::vector<pubsub::MessagePtr>  *collect = nullptr;
    size_t                            active = 0;

    ngx_int_t respond(const std::vector<pubsub::MessagePtr> &msgs,
                      ngx_uint_t gap);
    ngx_int_t respond_status(ngx_uint_t status, std::string_view body);

    pubsub::MsgId  resume;
    ngx_uint_t     gap_ = 0;
};


ngx_int_t
ngx_pubsub_lp_sub_t::respond_status(ngx_uint_t status, std::string_view body)
{
    if (mux) {
        if (ngx_pubsub_set_compound_headers(r, *mux, mux->size()) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (!resume.isNull()
               && ngx_pubsub_set_msgid_headers(r, resume) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pubsub_set_header(r, "Cache-Control", "no-store") != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pubsub_respond_text(r, status, body.empty() ? "" : "text/plain",
                                   body);
}


ngx_int_t
ngx_pubsub_lp_sub_t::respond(const std::vector<pubsub::MessagePtr> &msgs,
    ngx_uint_t gap)
{
    const pubsub::MessagePtr  &last = msgs.back();
    std::string                body, ct, boundary;

    /* the polling sessions park where this answer leaves the client */
    if (mux) {
        subscription.core.pollNextCompound();
    } else {
        subscription.core.pollNext(last->id());
    }

    ngx_pubsub_stats_delivered(msgs.size());

    if ((mux ? ngx_pubsub_set_compound_headers(r, *mux, active)
             : ngx_pubsub_set_msgid_headers(r, last->id())) != NGX_OK
        || ngx_pubsub_set_header(r, "Vary", "If-None-Match, If-Modified-Since")
           != NGX_OK
        || ngx_pubsub_set_header(r, "Cache-Control", "no-store") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (gap && ngx_pubsub_set_header(r, "X-Pubsub-Gap", "1") != NGX_OK) {
        return NGX_ERROR;
    }

    if (plcf->longpoll_multipart == NGX_PUBSUB_LP_MULTIPART_OFF
        || msgs.size() == 1)
    {
        return ngx_pubsub_respond_text(r, NGX_HTTP_OK, last->contentType(),
                                       last->data());
    }

    if (plcf->longpoll_multipart == NGX_PUBSUB_LP_MULTIPART_RAW) {
        for (const pubsub::MessagePtr &m : msgs) {
            body.append(m->data());
            body.append(ngx_pubsub_sv(plcf->raw_separator));
        }

        return ngx_pubsub_respond_text(r, NGX_HTTP_OK, "", body);
    }

    ngx_pubsub_multipart_boundary(&boundary);

    for (const pubsub::MessagePtr &m : msgs) {
        body.append("--").append(boundary).append("\r\n");
        if (!m->contentType().empty()) {
            body.append("Content-Type: ").append(m->contentType());
            body.append("\r\n");
        }
        body.append("\r\n").append(m->data()).append("\r\n");
    }

    body.append("--").append(boundary).append("--\r\n");
    ct = "multipart/mixed; boundary=" + boundary;

    return ngx_pubsub_respond_text(r, NGX_HTTP_OK, ct, body);
}


void
ngx_pubsub_lp_sub_t::deliver(const pubsub::MessagePtr &msg)
{
    if (finishing) {
        return;
    }

    stop();

    std::vector<pubsub::MessagePtr> msgs;
    msgs.push_back(msg);

    finish(respond(msgs, gap_));
}


/*
 * A waiting poll is answered with the event (X-Pubsub-Event, JSON body) and
 * the position it was waiting at, so the next poll misses no message.
 */
void
ngx_pubsub_lp_sub_t::on_presence(const pubsub::PresenceEvent &ev,
    const std::string &json)
{
    pubsub::MsgId  at;

    if (finishing || !live()) {
        return;
    }

    if (mux) {
        /* the sessions stay at this poll's position */
        stop();

    } else {
        at = subscription.core.subscriber(0)->cursor();
        stop();

        /* the next poll continues this polling session */
        subscription.core.pollNext(at);
    }

    finish([&]() -> ngx_int_t {
        ngx_int_t  rc;

        if (mux) {
            rc = ngx_pubsub_set_compound_headers(r, *mux, mux->size());

        } else {
            rc = at.isNull() ? NGX_OK : ngx_pubsub_set_msgid_headers(r, at);
        }

        if (rc != NGX_OK
            || ngx_pubsub_set_header(r, "Cache-Control", "no-store") != NGX_OK
            || ngx_pubsub_set_header(r, "X-Pubsub-Event",
                   ev.type == pubsub::PresenceEventType::kJoin
                   ? "join" : "leave") != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_pubsub_respond_text(r, NGX_HTTP_OK,
                                       "application/vnd.pubsub+json", json);
    }());
}


void
ngx_pubsub_lp_sub_t::deliver(size_t channel, const pubsub::MessagePtr &msg,
    std::string_view)
{
    if (collect) {
        collect->push_back(msg);
        active = channel;
        return;
    }

    active = channel;
    deliver(msg);
}


void
ngx_pubsub_lp_sub_t::channelDeleted()
{
    if (finishing) {
        return;
    }

    subscription.core.markDeleted();
    finish(respond_status(410, "Channel deleted.\n"));
}


void
ngx_pubsub_lp_sub_t::on_timeout()
{
    if (finishing) {
        return;
    }

    stop();
    finish(respond_status(NGX_HTTP_REQUEST_TIME_OUT, ""));
}


/*
 * nginx shuts down (reload, quit): a waiting poll is answered 503 with
 * Retry-After and the position it was waiting at, so that the client
 * polls the new workers again from there (docs/operations.md)
 */
void
ngx_pubsub_lp_sub_t::on_shutdown()
{
    if (finishing) {
        return;
    }

    stop();

    if (ngx_pubsub_set_header(r, "Retry-After", "1") != NGX_OK) {
        finish(NGX_ERROR);
        return;
    }

    finish(respond_status(NGX_HTTP_SERVICE_UNAVAILABLE,
                          "Server shutting down.\n"));
}

}  // namespace


ngx_int_t
ngx_pubsub_longpoll_start(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs,
    ngx_uint_t interval)
{
    ngx_pubsub_lp_sub_t             *sub;
    pubsub::SubscriptionStart        start;
    std::vector<pubsub::MessagePtr>  msgs;
    bool                             any;
    size_t                           max;

    /* a poll never outlives its request: in its pool */
    sub = ngx_pubsub_sub_create<ngx_pubsub_lp_sub_t>(r, plcf,
              interval ? NGX_PUBSUB_SUB_INTERVALPOLL
                       : NGX_PUBSUB_SUB_LONGPOLL, true);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ch->n == 1 && specs[0].kind == pubsub::StartSpec::kAfter) {
        sub->resume = specs[0].after;
    }

    /* an interval-poll never attaches when anything is owed either */
    max = (plcf->longpoll_multipart == NGX_PUBSUB_LP_MULTIPART_OFF) ? 1 : 0;

    /* one polling session per channel spans the polls that resume it */
    start = sub->subscription.subscribe(ch, specs, true, true, max);
    if (start.status != pubsub::StoreResult::kOk) {
        return sub->subscription.refuse(start);
    }

    sub->mux = sub->subscription.core.mux();
    sub->subscription.core.open();

    any = false;
    for (const auto &b : start.backlogs) {
        any = any || !b.empty();
    }

    if (any) {
        sub->stop();

        if (sub->mux == NULL) {
            return sub->respond(start.backlogs[0], start.gap);
        }

        if (max == 1) {
            /* the earliest message only: the others come next time */
            size_t c = sub->mux->earliest(start.backlogs).first;

            for (size_t i = 0; i < start.backlogs.size(); i++) {
                if (i != c) {
                    start.backlogs[i].clear();
                }
            }
        }

        sub->collect = &msgs;
        sub->subscription.core.deliverBacklog(start.backlogs);
        sub->collect = NULL;

        return sub->respond(msgs, start.gap);
    }

    if (interval) {
        sub->stop();
        return sub->respond_status(NGX_HTTP_NOT_MODIFIED, "");
    }

    sub->gap_ = start.gap;

    ngx_http_set_ctx(r, sub, ngx_pubsub_module);

    r->main->count++;
    ngx_pubsub_watch_client(r);
    sub->watch_shutdown();

    sub->start_timers(0);

    return NGX_DONE;
}
