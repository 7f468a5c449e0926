/*
 * ngx_pubsub: the subscriber side shared by the HTTP transports.
 */

#include "ngx_pubsub_subscriber.h"

#include <new>
#include <string>


/*
 * What a queued message costs besides its buffer's bytes: its chain link
 * and buffer header, the pool's record of the buffer's allocation and the
 * allocator's own, the write filter's link, and the chunked filter's chunk
 * header and trailer (links, buffers, the size line).
 */
#define NGX_PUBSUB_SUB_BUF_OVERHEAD  384


ngx_pubsub_http_sub_t::ngx_pubsub_http_sub_t(ngx_http_request_t *req,
    ngx_pubsub_loc_conf_t *conf, ngx_uint_t t)
    : r(req), c(req->connection), plcf(conf), finish_rc(NGX_OK),
      transport(static_cast<uint32_t>(t)), finishing(0),
      sink_(this), subscription(req, conf, t, &sink_), mux(NULL),
      timeout_at_(0), ping_at_(0),
      free_(NULL), busy_(NULL), busy_tail_(NULL), held_(0),
      chunked_(0), ending_(0), detach_wanted_(0), pooled_(0)
{
    ngx_memzero(&post_ev_, sizeof(ngx_event_t));
    ngx_memzero(&timer_ev_, sizeof(ngx_event_t));
}


ngx_pubsub_http_sub_t::~ngx_pubsub_http_sub_t()
{
    /* unsubscribes; hooks, presence and events end exactly once */
    subscription.core.close();

    if (post_ev_.posted) {
        ngx_delete_posted_event(&post_ev_);
    }
    if (timer_ev_.timer_set) {
        ngx_del_timer(&timer_ev_);
    }

    free_output();
}


ngx_int_t
ngx_pubsub_http_sub_t::init()
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = cleanup;
    cln->data = this;

    post_ev_.handler = posted_handler;
    post_ev_.data = this;
    post_ev_.log = r->connection->log;

    timer_ev_.handler = timer_handler;
    timer_ev_.data = this;
    timer_ev_.log = r->connection->log;

    return NGX_OK;
}


/* the request went away with the subscriber still tied to it */
void
ngx_pubsub_http_sub_t::cleanup(void *data)
{
    ngx_pubsub_http_sub_t  *sub = static_cast<ngx_pubsub_http_sub_t *>(data);

    if (sub->pooled_) {
        sub->~ngx_pubsub_http_sub_t();
    } else {
        delete sub;
    }
}


void
ngx_pubsub_http_sub_t::stop()
{
    subscription.core.detach();
}


void
ngx_pubsub_http_sub_t::presenceEvent(const pubsub::PresenceEvent &ev)
{
    if (!plcf->presence_events || finishing) {
        return;
    }

    std::string json = pubsub::presenceEventJson(
                           ev, ngx_pubsub_presence_channel_id(ev.channel));
    if (!json.empty()) {
        on_presence(ev, json);
    }
}


void
ngx_pubsub_http_sub_t::finish(ngx_int_t rc)
{
    stop();

    if (finishing) {
        return;
    }

    finishing = 1;
    finish_rc = rc;

    timeout_at_ = 0;
    ping_at_ = 0;

    if (timer_ev_.timer_set) {
        ngx_del_timer(&timer_ev_);
    }

    post(POST_FINISH);
}


void
ngx_pubsub_http_sub_t::post(uint8_t what)
{
    posted_ |= what;

    if (!post_ev_.posted) {
        ngx_post_event(&post_ev_, &ngx_posted_events);
    }
}


void
ngx_pubsub_http_sub_t::posted_handler(ngx_event_t *ev)
{
    ngx_pubsub_http_sub_t  *sub = static_cast<ngx_pubsub_http_sub_t *>(ev->data);
    uint8_t                 what = sub->posted_;

    sub->posted_ = 0;

    if (what & POST_FINISH) {
        sub->finish_now();
        return;
    }

    if (what & POST_DETACH) {
        if (ngx_pubsub_guard(ev->log, [sub] {
                sub->detach();
                return NGX_OK;
            }) != NGX_OK)
        {
            sub->finish(NGX_ERROR);
        }
    }
}


void
ngx_pubsub_http_sub_t::finish_now()
{
    ngx_http_request_t  *req = r;
    ngx_connection_t    *conn = c;

    if (req == NULL) {
        /* detached: the connection is ours alone */
        delete this;
        ngx_http_close_connection(conn);
        return;
    }

    ngx_http_finalize_request(req, finish_rc);
    ngx_http_run_posted_requests(conn);
}


/*
 * One timer for the subscriber timeout and the pings: it fires at the
 * earlier of the two; a delivery only moves the timeout's deadline (the
 * timer, when early, is set again from its handler).
 */
void
ngx_pubsub_http_sub_t::start_timers(ngx_uint_t ping)
{
    ngx_msec_t  now = ngx_current_msec;

    timeout_at_ = plcf->subscriber_timeout ? now + plcf->subscriber_timeout
                                           : 0;
    ping_at_ = (ping && plcf->ping_interval) ? now + plcf->ping_interval : 0;

    arm_timer();
}


void
ngx_pubsub_http_sub_t::arm_timer()
{
    ngx_msec_t  at, now;

    at = timeout_at_;

    if (ping_at_ && (at == 0 || ping_at_ < at)) {
        at = ping_at_;
    }

    if (at == 0) {
        if (timer_ev_.timer_set) {
            ngx_del_timer(&timer_ev_);
        }
        return;
    }

    now = ngx_current_msec;

    /* pings alone do not keep a worker that shuts down (as before) */
    timer_ev_.cancelable = (timeout_at_ == 0);

    ngx_add_timer(&timer_ev_, at > now ? at - now : 1);
}


void
ngx_pubsub_http_sub_t::reset_timeout()
{
    if (timeout_at_) {
        timeout_at_ = ngx_current_msec + plcf->subscriber_timeout;
    }
}


void
ngx_pubsub_http_sub_t::timer_handler(ngx_event_t *ev)
{
    ngx_pubsub_http_sub_t  *sub = static_cast<ngx_pubsub_http_sub_t *>(ev->data);
    ngx_msec_t              now = ngx_current_msec;

    if (sub->ending_) {
        /* detached: the client did not take the stream's end in time */
        sub->finish(NGX_ERROR);
        return;
    }

    if (sub->finishing) {
        return;
    }

    if (sub->timeout_at_ && now >= sub->timeout_at_) {
        sub->timeout_at_ = 0;
        sub->ping_at_ = 0;

        (void) ngx_pubsub_guard(ev->log, [sub] {
            sub->on_timeout();
            return NGX_OK;
        });

        return;
    }

    if (sub->ping_at_ && now >= sub->ping_at_) {
        sub->ping_at_ = 0;

        (void) ngx_pubsub_guard(ev->log, [sub] {
            sub->on_ping();
            return NGX_OK;
        });

        if (sub->finishing || sub->ending_) {
            return;
        }

        if (sub->plcf->ping_interval) {
            sub->ping_at_ = now + sub->plcf->ping_interval;
        }
    }

    sub->arm_timer();
}


void
ngx_pubsub_http_sub_t::write_handler(ngx_http_request_t *r)
{
    ngx_pubsub_http_sub_t  *sub;

    sub = static_cast<ngx_pubsub_http_sub_t *>(
              ngx_http_get_module_ctx(r, ngx_pubsub_module));
    if (sub == NULL || sub->finishing) {
        return;
    }

    /* nginx calls this: nothing may throw out of it */
    if (ngx_pubsub_guard(r->connection->log, [sub] {
            return sub->flush(NULL);
        }) == NGX_ERROR)
    {
        sub->finish(NGX_ERROR);
    }
}


/*
 * What an unsent message holds, not its bytes on the wire: its buffer whole
 * (at least 512 bytes) and the bookkeeping that goes with it until it is
 * sent, so that tiny messages to a client that does not read are bounded
 * by pubsub_subscriber_max_pending too.
 */
static size_t
ngx_pubsub_sub_buf_cost(ngx_buf_t *b)
{
    return (b->end - b->start) + NGX_PUBSUB_SUB_BUF_OVERHEAD;
}


/*
 * in: one new buffer of ours, or NULL.  Our buffers go to busy_ once given
 * to the output filter and back to free_ once written, in order (as
 * ngx_chain_update_chains() would, without walking the list: held_ counts
 * what busy_ holds).
 */
ngx_int_t
ngx_pubsub_http_sub_t::flush(ngx_chain_t *in)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    rc = ngx_http_output_filter(r, in);

    if (in) {
        if (busy_ == NULL) {
            busy_ = in;
        } else {
            busy_tail_->next = in;
        }

        busy_tail_ = in;
        held_ += ngx_pubsub_sub_buf_cost(in->buf);
    }

    while (busy_ && ngx_buf_size(busy_->buf) == 0) {
        cl = busy_;
        busy_ = cl->next;

        held_ -= ngx_pubsub_sub_buf_cost(cl->buf);
        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start;
        cl->next = free_;
        free_ = cl;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (busy_ != NULL || c->buffered) {

        if (held_ > plcf->max_pending) {
            size_t unsent = 0;

            for (cl = busy_; cl; cl = cl->next) {
                unsent += ngx_buf_size(cl->buf);
            }

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "pubsub: subscriber dropped: %uz bytes unsent, "
                          "%uz bytes held (pubsub_subscriber_max_pending)",
                          unsent, held_);
            return NGX_ERROR;
        }

        r->write_event_handler = write_handler;

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (detach_wanted_ && r->out == NULL) {
        /* all written: the request can go now */
        detach_wanted_ = 0;
        post(POST_DETACH);
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_http_sub_t::write(std::string_view a, std::string_view b,
    std::string_view c)
{
    ngx_chain_t  *cl;
    ngx_buf_t    *buf;
    size_t        size;

    if (finishing) {
        return NGX_OK;
    }

    size = a.size() + b.size() + c.size();

    if (size == 0) {
        /* an empty buffer would be a "zero size buf" alert */
        return NGX_OK;
    }

    if (r == NULL) {
        if (queue(a, b, c, chunked_) != NGX_OK) {
            finish(NGX_ERROR);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    cl = ngx_chain_get_free_buf(r->pool, &free_);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    buf = cl->buf;

    if (buf->start == NULL || (size_t) (buf->end - buf->start) < size) {
        if (buf->start != NULL) {
            ngx_pfree(r->pool, buf->start);
            buf->start = NULL;
        }

        size_t cap = size < 512 ? 512 : size;

        /*
         * ngx_pmemalign() always makes a "large" allocation, which
         * ngx_pfree() releases: a long stream of messages of growing sizes
         * does not pile up dead buffers in the request's pool.
         */
        buf->start = static_cast<u_char *>(
                         ngx_pmemalign(r->pool, cap, NGX_ALIGNMENT));
        if (buf->start == NULL) {
            return NGX_ERROR;
        }
        buf->end = buf->start + cap;
    }

    buf->pos = buf->start;
    buf->last = buf->start;
    buf->temporary = 1;
    buf->memory = 0;
    buf->flush = 1;
    buf->last_buf = 0;
    buf->tag = (ngx_buf_tag_t) &ngx_pubsub_module;

    buf->last = ngx_cpymem(buf->last, a.data(), a.size());
    buf->last = ngx_cpymem(buf->last, b.data(), b.size());
    buf->last = ngx_cpymem(buf->last, c.data(), c.size());

    cl->next = NULL;

    if (flush(cl) == NGX_ERROR) {
        finish(NGX_ERROR);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_http_sub_t::write_last(std::string_view tail)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (finishing) {
        return NGX_OK;
    }

    if (!tail.empty() && write(tail) != NGX_OK) {
        return NGX_ERROR;
    }

    if (r == NULL) {
        end_detached();
        return NGX_OK;
    }

    b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
    if (b == NULL) {
        finish(NGX_ERROR);
        return NGX_ERROR;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    stop();
    finish(ngx_http_output_filter(r, &out));

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_http_sub_t::stream_header(ngx_str_t content_type)
{
    ngx_int_t  rc;

    ngx_http_set_ctx(r, this, ngx_pubsub_module);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);

    if (content_type.len) {
        r->headers_out.content_type = content_type;
        r->headers_out.content_type_len = content_type.len;
        r->headers_out.content_type_lowcase = NULL;
    }

    if (ngx_pubsub_set_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_pubsub_set_header(r, "X-Accel-Buffering", "no") != NGX_OK)
    {
        stop();
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        stop();
        return rc == NGX_OK ? NGX_DECLINED : rc;
    }

    r->main->count++;
    ngx_pubsub_watch_client(r);
    watch_shutdown();

    return NGX_OK;
}


/*
 * nginx's own read handler of the connection (ngx_http_request_handler,
 * not exported): the one conn_read_handler() hands every event on to.
 */
static ngx_event_handler_pt  ngx_pubsub_http_read_handler;


void
ngx_pubsub_http_sub_t::watch_shutdown()
{
    ngx_connection_t  *c = r->connection;

    c->idle = 1;   /* closed on graceful shutdown */

    if (r != r->main || c->data != r) {
        return;    /* subrequests: nginx's own way */
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;    /* HTTP/2: the connection's GOAWAY, nginx's own way */
    }
#endif

    if (c->read->handler != conn_read_handler) {
        ngx_pubsub_http_read_handler = c->read->handler;
        c->read->handler = conn_read_handler;
    }
}


/*
 * A graceful shutdown (reload, quit) sets c->close on idle connections and
 * calls their read handler, which terminates the request at once: before
 * that, end the response as the transport ends it (the last chunk, the
 * closing boundary, a long-poll's answer), written now, as the worker may
 * exit before posted events run.
 */
void
ngx_pubsub_http_sub_t::conn_read_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_http_request_t     *r = static_cast<ngx_http_request_t *>(c->data);
    ngx_pubsub_http_sub_t  *sub;

    if (c->close && r != NULL) {
        sub = static_cast<ngx_pubsub_http_sub_t *>(
                  ngx_http_get_module_ctx(r, ngx_pubsub_module));

        if (sub != NULL && !sub->finishing) {
            (void) ngx_pubsub_guard(c->log, [sub] {
                sub->on_shutdown();
                return NGX_OK;
            });
        }
    }

    ngx_pubsub_http_read_handler(ev);
}


/* NGX_OK: go on with the backlog; otherwise the stream is finishing */
ngx_int_t
ngx_pubsub_http_sub_t::stream_preamble(std::string_view preamble)
{
    if (!preamble.empty()) {
        return write(preamble);
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR
        || flush(NULL) == NGX_ERROR)
    {
        /* the header must not wait for the first message */
        finish(NGX_ERROR);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_http_sub_t::start_stream(ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs, ngx_str_t content_type,
    std::string_view preamble, ngx_uint_t ping)
{
    ngx_int_t                  rc;
    pubsub::SubscriptionStart  start;

    start = subscription.subscribe(ch, specs);
    if (start.status != pubsub::StoreResult::kOk) {
        return subscription.refuse(start);
    }

    mux = subscription.core.mux();

    rc = stream_header(content_type);
    if (rc != NGX_OK) {
        /* header_only: nothing more to send */
        return rc == NGX_DECLINED ? NGX_OK : rc;
    }

    /* hooks, presence, events; ended by the destructor */
    subscription.core.open();

    if (stream_preamble(preamble) != NGX_OK) {
        return NGX_DONE;
    }

    if (start.gap) {
        gap();
    }

    if (!finishing) {
        subscription.core.deliverBacklog(start.backlogs);
    }

    if (!finishing) {
        start_timers(ping);
        schedule_detach();
    }

    return NGX_DONE;
}


void
ngx_pubsub_multipart_boundary(std::string *boundary)
{
    static const char  alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    boundary->clear();

    for (int i = 0; i < 32; i++) {
        boundary->push_back(alphabet[ngx_random() % (sizeof(alphabet) - 1)]);
    }
}


/* hands the request to its transport */
static ngx_int_t
ngx_pubsub_subscriber_start(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t transport,
    ngx_pubsub_channels_t *ch, const std::vector<pubsub::StartSpec> &specs)
{
    switch (transport) {

    case NGX_PUBSUB_SUB_EVENTSOURCE:
        return ngx_pubsub_eventsource_start(r, plcf, ch, specs);

    case NGX_PUBSUB_SUB_LONGPOLL:
        return ngx_pubsub_longpoll_start(r, plcf, ch, specs, 0);

    case NGX_PUBSUB_SUB_INTERVALPOLL:
        return ngx_pubsub_longpoll_start(r, plcf, ch, specs, 1);

    case NGX_PUBSUB_SUB_CHUNKED:
        return ngx_pubsub_chunked_start(r, plcf, ch, specs);

    case NGX_PUBSUB_SUB_MULTIPART:
        return ngx_pubsub_multipart_start(r, plcf, ch, specs);

    case NGX_PUBSUB_SUB_RAWSTREAM:
        return ngx_pubsub_rawstream_start(r, plcf, ch, specs);

    default:
        break;
    }

    return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_IMPLEMENTED, "text/plain",
                                   "This transport is not implemented yet.\n");
}


ngx_int_t
ngx_pubsub_subscriber_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t transport)
{
    ngx_int_t               rc;
    ngx_pubsub_channels_t  *ch;
    pubsub::StartSpec       spec;
    pubsub::ParsedMsgId     full;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_pubsub_cors(r, plcf, 1);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ch = ngx_pubsub_channels(r, plcf, 0, &rc);
    if (ch == NULL) {
        return rc;
    }

    if (ngx_pubsub_resume_id(r, plcf, &spec, &full, &rc) != NGX_OK) {
        return rc;
    }

    /* responses to subscribers must never become 304s */
    r->disable_not_modified = 1;

    std::vector<pubsub::StartSpec>  specs;

    if (ngx_pubsub_subscriber_specs(r, ch, spec, full, &specs, &rc)
        != NGX_OK)
    {
        return rc;
    }

    return ngx_pubsub_subscriber_start(r, plcf, transport, ch, specs);
}
