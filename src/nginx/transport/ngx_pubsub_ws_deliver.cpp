/*
 * ngx_pubsub: WebSocket delivery (ngx_pubsub_ws.h): what the store hands a
 * subscriber (messages, the gap signal, presence join/leave, the channel's
 * deletion), for one channel or several multiplexed ones.  The core
 * (pubsub/codec/ws_frame.h) chooses each frame: text or binary, the
 * ws+meta.nchan prefix, compressed or not and with which copy; this file
 * queues what it chose.
 */

#include "ngx_pubsub_ws.h"


/* ------------------------------------------------------------------ sink */


void
ngx_pubsub_ws_sink_t::deliver(size_t i, const pubsub::MessagePtr &msg,
    std::string_view id)
{
    if (w_->protocol) {
        if (!w_->closing()) {
            w_->protocol->deliver(i, msg);
        }
        return;
    }

    if (w_->mux) {
        w_->deliver(i, msg, id);
    } else {
        w_->deliver(msg);
    }
}


void
ngx_pubsub_ws_sink_t::gap(size_t i)
{
    if (w_->protocol) {
        if (!w_->closing()) {
            w_->protocol->gap(i);
        }
        return;
    }

    if (w_->mux) {
        w_->gap(i);
    } else {
        w_->gap();
    }
}


void
ngx_pubsub_ws_sink_t::channelDeleted(size_t i)
{
    if (w_->protocol) {
        if (!w_->closing()) {
            w_->protocol->deleted(i);
        }
        return;
    }

    if (w_->mux) {
        w_->channelDeleted(i);
    } else {
        w_->channelDeleted();
    }
}


void
ngx_pubsub_ws_sink_t::presenceEvent(size_t i, const pubsub::PresenceEvent &ev)
{
    if (w_->protocol) {
        if (!w_->closing()) {
            w_->protocol->presence(i, ev);
        }
        return;
    }

    if (w_->mux) {
        w_->channelPresence(i, ev);
    } else {
        w_->presenceEvent(ev);
    }
}


/* ------------------------------------------------------------ nchan's */


void
ngx_pubsub_ws_t::deliver(const pubsub::MessagePtr &msg)
{
    send_message(msg, {});
}


/* id: the compound id of a multiplexed subscription's message, or empty */
void
ngx_pubsub_ws_t::send_message(const pubsub::MessagePtr &msg,
    std::string_view id)
{
    ws::FramePlan  plan;

    if (finishing_ || close_sent_) {
        return;
    }

    if (ngx_pubsub_ws_worker == NULL) {
        finish();
        return;
    }

    /* what is the same for every subscriber of the message: the worker's */
    ws::MessageFacts &facts = ngx_pubsub_ws_worker->facts.lookup(msg);

    if (framer.message(*msg, facts, id, plan) != ws::FrameResult::kSend) {
        ngx_log_error(NGX_LOG_ERR, c_->log, 0,
                      "pubsub: websocket delivery failed (out of memory)");
        finish();
        return;
    }

    if (enqueue_plan(plan, msg) != NGX_OK) {
        finish();
        return;
    }

    schedule_flush();

    ngx_pubsub_stats_delivered(1);

    if (timeout_ev_.timer_set && !lingering_) {
        ngx_add_timer(&timeout_ev_, plcf->subscriber_timeout);
    }
}


/*
 * A signal frame, written at once: only ws+meta.nchan connections get one
 * (content type application/vnd.pubsub+json, a JSON body); a plain
 * connection cannot tell a signal from data and gets nothing
 * (docs/protocol.md).
 */
void
ngx_pubsub_ws_t::send_signal(const pubsub::MsgId &at, std::string_view id,
    std::string_view json)
{
    ws::FramePlan  plan;

    switch (framer.signal(at, id, json, plan)) {

    case ws::FrameResult::kSend:
        (void) send_data(plan.opcode, std::move(plan.head), {},
                         pubsub::MessagePtr());
        return;

    case ws::FrameResult::kNothing:
        return;

    default: /* kNoMemory */
        finish();
        return;
    }
}


/*
 * Messages were missed.  The gap signal's id is the position before the
 * gap, so a client that resumes from it is told again.
 */
void
ngx_pubsub_ws_t::send_gap(const pubsub::MsgId &at, std::string_view id)
{
    if (!framer.meta() || finishing_ || close_sent_) {
        return;
    }

    send_signal(at, id, ws::kGapSignalJson);
}


void
ngx_pubsub_ws_t::gap()
{
    send_gap(position(), {});
}


void
ngx_pubsub_ws_t::presenceEvent(const pubsub::PresenceEvent &ev)
{
    send_presence(ev, {});
}


/*
 * Join / leave (pubsub_presence_events): like the gap signal, a meta frame
 * on ws+meta.nchan connections; its id is the current position, so
 * resuming from it loses nothing (docs/presence.md).
 */
void
ngx_pubsub_ws_t::send_presence(const pubsub::PresenceEvent &ev,
    std::string_view id)
{
    if (!plcf->presence_events || !framer.meta() || finishing_
        || close_sent_)
    {
        return;
    }

    try {
        std::string json = pubsub::presenceEventJson(
                               ev, ngx_pubsub_presence_channel_id(ev.channel));
        if (json.empty()) {
            return;
        }

        send_signal(position(), id, json);

    } catch (...) {
        finish();
    }
}


void
ngx_pubsub_ws_t::channelDeleted()
{
    try {
        send_close(ws::close_code::kNormal, "410 Gone");

    } catch (...) {
        finish();
    }
}


/* ----------------------------------------------------------- multiplexed */


/*
 * Several channels on one connection (docs/multiplexing.md): one adapter
 * per channel delivers through deliver(channel, msg, id), where id is the
 * compound id ws+meta.nchan frames carry; a deleted channel closes the
 * connection.
 */
void
ngx_pubsub_ws_t::deliver(size_t, const pubsub::MessagePtr &msg,
    std::string_view id)
{
    send_message(msg, id);
}


void
ngx_pubsub_ws_t::gap(size_t)
{
    try {
        std::string id = mux->compoundId(mux->size());

        send_gap(pubsub::MsgId{}, id);

    } catch (...) {
        finish();
    }
}


void
ngx_pubsub_ws_t::channelDeleted(size_t)
{
    channelDeleted();
}


void
ngx_pubsub_ws_t::channelPresence(size_t, const pubsub::PresenceEvent &ev)
{
    try {
        std::string id = mux->compoundTime() ? mux->compoundId(mux->size())
                                             : std::string();

        send_presence(ev, id);

    } catch (...) {
        finish();
    }
}
