// What frame a server WebSocket sends for a message or an in-band signal:
// text or binary, the ws+meta.nchan prefix, plain or compressed
// (permessage-deflate) and, when compressed, whether the worker's shared
// pre-deflated copy of the message or the connection's own Deflater makes
// the payload. No I/O: the transport writes the header, FramePlan::head and
// the payload the plan names (writeFrameHeader() with plan.opcode, plan.rsv1
// and the total length). Nothing here throws; running out of memory is a
// FrameResult.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "pubsub/codec/deflate.h"
#include "pubsub/codec/websocket.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"

namespace pubsub::ws {

// Content type of the in-band signals (gap, presence join/leave) that
// ws+meta.nchan connections get; plain connections cannot tell them from
// data and get nothing.
constexpr std::string_view kSignalContentType = "application/vnd.pubsub+json";
// Body of the gap signal (messages were missed).
constexpr std::string_view kGapSignalJson =
    "{\"event\":\"pubsub.gap\",\"reason\":\"messages were dropped before they could be "
    "delivered\"}";

// What is the same for every connection a worker sends one message to,
// worked out once: whether its data is valid UTF-8 (text frame or binary)
// and its pre-deflated copy (pubsub_deflate_message_for_websocket), made
// by the first connection that can use it.
struct MessageFacts {
    bool utf8 = false;
    bool deflateTried = false;
    std::shared_ptr<const std::string> deflated;  // null: not made, or failed
};

// The facts of the last few messages. A message goes to all subscribers of
// a channel in a row, so a few entries suffice; each entry holds a
// reference, so a cached Message* is never reused for another message.
class MessageFactsCache {
public:
    static constexpr size_t kSize = 8;

    // msg's entry; a message not cached replaces the oldest entry (its
    // UTF-8 check is done then). msg must not be null.
    MessageFacts& lookup(const MessagePtr& msg);

private:
    struct Entry {
        MessagePtr msg;
        MessageFacts facts;
    };

    Entry entries_[kSize];
    size_t next_ = 0;
};

enum class FramePayload {
    kNone,            // the frame is FramePlan::head alone
    kMessageData,     // head, then the message's data as is (keep the message until written)
    kSharedDeflated,  // head, then *FramePlan::shared (the pre-deflated copy)
};

struct FramePlan {
    Opcode opcode = Opcode::Text;
    bool rsv1 = false;  // compressed (permessage-deflate)
    // The bytes before the payload: the ws+meta.nchan prefix (deflated,
    // sync tail kept, before a shared copy), or the whole message deflated
    // by the connection's Deflater, or a signal's prefix and JSON.
    std::string head;
    FramePayload payload = FramePayload::kNone;
    std::shared_ptr<const std::string> shared;  // kSharedDeflated: the copy to send
    // A shared copy was sent on a connection with context takeover: its
    // Deflater was told to start the next message from an empty window.
    bool contextReset = false;
};

enum class FrameResult {
    kSend,      // send the frame the plan describes
    kNothing,   // nothing to send (a signal on a plain connection)
    kNoMemory,  // allocation failed: the plan is unusable
};

// One connection's framing of outgoing data: its settings from the
// handshake and its Deflater (allocated on the first compressed message).
class MessageFramer {
public:
    MessageFramer() = default;
    MessageFramer(const MessageFramer&) = delete;
    MessageFramer& operator=(const MessageFramer&) = delete;

    // meta: the ws+meta.nchan subprotocol was chosen. negotiated: the
    // agreed permessage-deflate parameters (nullptr: not negotiated). opts:
    // our deflate settings, also those of the shared pre-deflated copies
    // (every connection that shares a MessageFactsCache must use the same).
    // sharePredeflated: pubsub_deflate_message_for_websocket.
    void configure(bool meta, const DeflateParams* negotiated, const DeflateOptions& opts,
                   bool sharePredeflated);

    // The frame for a data message. compoundId: the id of a multiplexed
    // subscription's message, sent instead of the message's own id. A text
    // frame when the data is UTF-8 (facts.utf8) and the content type is
    // not application/octet-stream (nor, with meta, invalid UTF-8). With
    // deflate: the shared copy when the connection can use it (made now
    // if not tried yet), else the connection's Deflater; if zlib fails the
    // message and all later ones go uncompressed.
    FrameResult message(const Message& msg, MessageFacts& facts, std::string_view compoundId,
                        FramePlan& plan);

    // A ws+meta.nchan signal: a text frame, never compressed, of content
    // type kSignalContentType, with compoundId as id, else `at` (nothing
    // for a null `at`). kNothing on a plain connection.
    FrameResult signal(const MsgId& at, std::string_view compoundId, std::string_view json,
                       FramePlan& plan);
    FrameResult gap(const MsgId& at, std::string_view compoundId, FramePlan& plan) {
        return signal(at, compoundId, kGapSignalJson, plan);
    }

    bool meta() const { return meta_; }
    // Still compressing (negotiated, and zlib has not failed).
    bool deflating() const { return deflate_; }
    // The agreed parameters (for the connection's inbound parser), or nullptr.
    const DeflateParams* negotiated() const { return negotiated_ ? &params_ : nullptr; }

private:
    FrameResult frameMessage(const Message& msg, MessageFacts& facts, std::string_view compoundId,
                             FramePlan& plan);

    DeflateParams params_;
    DeflateOptions opts_;
    std::unique_ptr<Deflater> deflater_;
    bool meta_ = false;
    bool negotiated_ = false;
    bool deflate_ = false;
    bool share_ = false;
};

}  // namespace pubsub::ws
