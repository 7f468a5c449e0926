/*
 * ngx_pubsub: WebSocket input (ngx_pubsub_ws.h): reading the socket into
 * the core's FrameParser, pings, the client's close, and the publishing
 * side: messages published to the connection's channels, directly or in
 * arrival order through pubsub_publisher_upstream_request (with
 * back-pressure), and the channel info replies.
 */

#include "ngx_pubsub_ws.h"


ngx_pubsub_ws_t *
ngx_pubsub_ws_t::of(ngx_http_request_t *r)
{
    ngx_pubsub_ws_t  *w;

    w = static_cast<ngx_pubsub_ws_t *>(
            ngx_http_get_module_ctx(r, ngx_pubsub_module));

    return (w == NULL || w->finishing_) ? NULL : w;
}


void
ngx_pubsub_ws_t::read_handler(ngx_http_request_t *r)
{
    ngx_pubsub_ws_t  *w = of(r);

    if (w != NULL) {
        w->guarded(w->c_->log, [w] { w->read(); });
    }
}


void
ngx_pubsub_ws_t::read()
{
    ngx_connection_t  *c = c_;
    u_char            *buf;
    ssize_t            n;
    ngx_uint_t         rounds = 0;

    if (ngx_pubsub_ws_worker == NULL) {
        finish();
        return;
    }

    /* the worker's: feed() consumes all of it before the next recv() */
    buf = ngx_pubsub_ws_worker->read_buf;

    while (!finishing_) {

        /* back-pressure, or a close waiting for the upstream answers */
        if (paused_ || close_deferred_) {
            return;
        }

        /* a client that sends without pause must not starve the others */
        if (++rounds > NGX_PUBSUB_WS_READ_ROUNDS) {
            ngx_post_event(c->read, &ngx_posted_events);
            return;
        }

        n = c->recv(c, buf, NGX_PUBSUB_WS_READ_BUF);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                finish();
            }
            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* the client went away (or closed after our close) */
            c->error = (n == NGX_ERROR);
            finish();
            return;
        }

        heard_ = true;

        if (protocol) {
            protocol->input();
        }

        feed(buf, n);
    }
}


void
ngx_pubsub_ws_t::feed(const u_char *p, size_t len)
{
    ws::Event  ev;
    size_t     n;

    while (len > 0 && !finishing_) {

        if (!parser) {
            parser.reset(new (std::nothrow) ws::FrameParser(
                ws::ParserConfig::forServer(plcf->ws_max_message_size,
                                            framer.negotiated())));
            if (!parser) {
                finish();
                return;
            }
        }

        if (lingering_ && parser->failed()) {
            return;   /* discard until the client closes */
        }

        /*
         * Too many messages wait for the upstream hook: read no more.  The
         * rest is copied: p is in the worker's read buffer, which the next
         * read of any other WebSocket overwrites.
         */
        if (in_count_ >= NGX_PUBSUB_WS_UPSTREAM_QUEUE && !close_sent_) {
            stash_.assign(reinterpret_cast<const char *>(p), len);
            paused_ = true;
            return;
        }

        n = parser->feed(p, len, ev);
        p += n;
        len -= n;

        switch (ev.type) {

        case ws::EventType::None:
            return;

        case ws::EventType::Message:
            if (!close_sent_) {
                on_message(ev);
            }
            break;

        case ws::EventType::Ping:
            if (!close_sent_) {
                (void) send_pong(ev.payload);
            }
            break;

        case ws::EventType::Pong:
            break;

        case ws::EventType::Close:
            on_close(ev);
            return;

        case ws::EventType::Error:
            ngx_log_error(NGX_LOG_INFO, c_->log, 0,
                          "pubsub: websocket protocol error %ud: %*s",
                          (unsigned) ev.code, ev.reason.size(),
                          ev.reason.data());

            if (close_sent_) {
                finish();
                return;
            }

            send_close(ev.code, ev.reason);
            return;
        }
    }
}


/* the client's close frame: nothing is read after it */
void
ngx_pubsub_ws_t::on_close(ws::Event &ev)
{
    close_received_ = true;

    if (!close_sent_ && in_head_ != nullptr) {
        /*
         * A clean close right behind messages: publish them first (their
         * upstream answers are bounded by the hook location's timeouts),
         * then answer the close.
         */
        close_deferred_ = true;
        deferred_code_ = (ev.code == ws::close_code::kNoStatus) ? 0 : ev.code;
        deferred_reason_ = ev.payload;
        return;
    }

    if (close_sent_) {
        /* the reply to our close */
        if (written()) {
            finish();
        }
        return;
    }

    /* echo the client's code and reason */
    send_close(ev.code == ws::close_code::kNoStatus ? 0 : ev.code,
               ev.payload);
}


void
ngx_pubsub_ws_t::on_message(ws::Event &ev)
{
    if (protocol) {
        protocol->message(ev.payload, ev.opcode == ws::Opcode::Binary);
        return;
    }

    if (!pub_own) {
        send_close(ws::close_code::kPolicyViolation, "Publishing not allowed.");
        return;
    }

    if (upstream) {
        queue_upstream(ev);
        return;
    }

    publish(ev.payload, (ev.opcode == ws::Opcode::Binary)
                        ? std::string_view("application/octet-stream")
                        : pub_own->text_type);
}


/* ---------------------------------------------------------------- upstream */


/* sends a message to pubsub_publisher_upstream_request, in arrival order */
void
ngx_pubsub_ws_t::queue_upstream(ws::Event &ev)
{
    ngx_pubsub_ws_in_t  *in;
    ngx_str_t            body, ct, type;

    in = new (std::nothrow) ngx_pubsub_ws_in_t;
    if (in == nullptr) {
        finish();
        return;
    }

    in->w = this;
    in->data = std::move(ev.payload);
    in->ct.assign((ev.opcode == ws::Opcode::Binary)
                  ? std::string_view("application/octet-stream")
                  : pub_own->text_type);

    if (in_tail_) {
        in_tail_->next = in;
    } else {
        in_head_ = in;
    }

    in_tail_ = in;
    in_count_++;

    body.data = reinterpret_cast<u_char *>(&in->data[0]);
    body.len = in->data.size();
    ct.data = reinterpret_cast<u_char *>(&in->ct[0]);
    ct.len = in->ct.size();
    ngx_str_set(&type, "websocket");

    /* bind = 0: the destructor cancels what is still in flight */
    in->call = ngx_pubsub_hook_publish_upstream(r, pub, body, ct, type, 0,
                                                upstream_done, in);

    if (in->call == nullptr) {
        /* in order: the messages before it are still published */
        in->answered = true;
        in->failed = true;
        in->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        drain_upstream();
    }
}


void
ngx_pubsub_ws_t::upstream_done(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_ws_in_t  *in = static_cast<ngx_pubsub_ws_in_t *>(data);
    ngx_pubsub_ws_t     *w = in->w;

    (void) r;

    in->call = nullptr;
    in->answered = true;
    in->failed = res->failed ? true : false;
    in->status = res->status;

    try {
        if (!in->failed && res->status >= 200 && res->status < 300
            && res->status != NGX_HTTP_NO_CONTENT)
        {
            in->res_body.assign(ngx_pubsub_sv(res->body));
            in->res_ct.assign(ngx_pubsub_sv(res->content_type));

        } else if (!in->failed && res->status >= 300
                   && res->status != NGX_HTTP_NOT_MODIFIED)
        {
            in->res_body.assign(ngx_pubsub_sv(res->body));
        }

        w->drain_upstream();

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, w->c_->log, 0,
                      "pubsub: websocket upstream answer failed "
                      "(out of memory)");
        w->finish();
    }
}


/* applies the answered messages at the head of the queue, in order */
void
ngx_pubsub_ws_t::drain_upstream()
{
    while (in_head_ && in_head_->answered && !finishing_ && !close_sent_) {
        ngx_pubsub_ws_in_t *in = in_head_;

        in_head_ = in->next;
        if (in_head_ == nullptr) {
            in_tail_ = nullptr;
        }

        in_count_--;

        apply_upstream(in);
        delete in;
    }

    if (finishing_) {
        return;
    }

    if (close_sent_) {
        return;
    }

    if (in_head_ == nullptr && close_deferred_) {
        close_deferred_ = false;
        send_close(deferred_code_, deferred_reason_);
        return;
    }

    if (paused_ && in_count_ < NGX_PUBSUB_WS_UPSTREAM_QUEUE) {
        post(POST_RESUME);
    }
}


/*
 * The backend's answer: 2xx publishes its body and Content-Type, 204
 * nothing, 304 the original message; any other answer refuses the message
 * and ends the connection with close 1008 "<status> <body>" (1011 when the
 * hook got no answer), so nothing after a refused message is published.
 */
void
ngx_pubsub_ws_t::apply_upstream(ngx_pubsub_ws_in_t *in)
{
    char  text[64];
    int   n;

    if (in->failed) {
        ngx_log_error(NGX_LOG_WARN, c_->log, 0,
                      "pubsub: websocket publisher upstream hook failed "
                      "with status %ui", in->status);
        n = snprintf(text, sizeof(text),
                     "%u publisher upstream hook failed",
                     static_cast<unsigned>(in->status));
        send_close(ws::close_code::kInternalError, std::string_view(text, n));
        return;
    }

    if (in->status == NGX_HTTP_NO_CONTENT) {
        return;
    }

    if (in->status == NGX_HTTP_NOT_MODIFIED) {
        publish(in->data, in->ct);
        return;
    }

    if (in->status >= 200 && in->status < 300) {
        publish(in->res_body, in->res_ct);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c_->log, 0,
                  "pubsub: websocket message refused by the publisher "
                  "upstream hook with status %ui", in->status);

    n = snprintf(text, sizeof(text), "%u",
                 static_cast<unsigned>(in->status));

    std::string reason(text, n);
    std::string_view body = in->res_body;

    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'
                             || body.back() == ' ' || body.back() == '\t'))
    {
        body.remove_suffix(1);
    }

    if (!body.empty() && pubsub::isValidUtf8(body)) {
        reason += ' ';
        reason += body;   /* cut to 123 bytes by writeCloseFrame() */
    }

    send_close(ws::close_code::kPolicyViolation, reason);
}


/* the queue has room again: the held-back input, then the socket */
void
ngx_pubsub_ws_t::resume()
{
    std::string  held;

    if (!paused_ || finishing_) {
        return;
    }

    paused_ = false;
    heard_ = true;    /* pongs were not read while paused */

    held.swap(stash_);

    if (!held.empty()) {
        feed(reinterpret_cast<const u_char *>(held.data()), held.size());
    }

    if (!paused_ && !finishing_) {
        read();
    }
}


void
ngx_pubsub_ws_t::publish(std::string_view data, std::string_view ct)
{
    struct state_t {
        std::shared_ptr<ngx_pubsub_ws_t *>  self;
        ngx_uint_t                          left = 0;
        ngx_uint_t                          failed = 0;
        pubsub::PublishReply                last;
    };

    pubsub::PublishInput  in = pub_own->in;

    in.data = data;
    in.contentType = ct;

    if (!self_) {
        self_ = std::make_shared<ngx_pubsub_ws_t *>(this);
    }

    auto st = std::make_shared<state_t>();
    st->self = self_;
    st->left = pub_own->keys.size();

    /*
     * The store copies the input before publish() returns; its replies may
     * come later (Redis), when this connection may be gone: self says.
     */
    for (size_t i = 0; i < pub_own->keys.size(); i++) {
        std::shared_ptr<const ngx_pubsub_chev_t>  chev;

        if (i < pub_own->chev.size()) {
            chev = pub_own->chev[i];
        }

        ngx_pubsub_store_for(plcf)->publish(pub_own->keys[i], in,
            [st, chev](pubsub::PublishReply &&reply) {
                if (reply.status != pubsub::StoreResult::kOk) {
                    st->failed++;
                    st->last = std::move(reply);

                } else {
                    /* queued only: published later from a posted event */
                    ngx_pubsub_chev_emit(chev.get());

                    if (!st->failed) {
                        st->last = std::move(reply);
                    }
                }

                if (--st->left == 0 && *st->self != nullptr) {
                    ngx_pubsub_ws_t *w = *st->self;

                    try {
                        w->published(std::move(st->last), st->failed);

                    } catch (...) {
                        w->finish();
                    }
                }
            });
    }
}


void
ngx_pubsub_ws_t::published(pubsub::PublishReply &&last, ngx_uint_t failed)
{
    if (finishing_ || close_sent_) {
        return;
    }

    if (failed) {
        ngx_log_error(NGX_LOG_WARN, c_->log, 0,
                      "pubsub: websocket publish failed: %s",
                      last.reason.c_str());

        /* refusals are policy, everything else is the server's fault */
        uint16_t code = (last.status == pubsub::StoreResult::kNotFound)
                        ? ws::close_code::kPolicyViolation
                        : ws::close_code::kInternalError;
        std::string reason = last.reason.empty() ? "Publish failed."
                                                 : last.reason;

        send_close(code, reason);
        return;
    }

    if (!reply_info) {
        return;
    }

    std::string info = pubsub::formatChannelInfo(last.info,
                                                 pub_own->info_fmt,
                                                 ngx_time());

    (void) send_data(ws::Opcode::Text, std::move(info), {},
                     pubsub::MessagePtr());
}
