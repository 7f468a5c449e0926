// Outgoing WebSocket frames: the choices of pubsub/codec/ws_frame.h.
#include "pubsub/codec/ws_frame.h"

#include <new>
#include <utility>

#include "pubsub/codec/utf8.h"

namespace pubsub::ws {

namespace {

constexpr std::string_view kBinaryType = "application/octet-stream";

// "id: <id>\ncontent-type: <ct>\n\n" into out (replacing it); may throw bad_alloc.
void putMetaPrefix(std::string& out, std::string_view id, std::string_view ct) {
    out.resize(metaPrefixSize(id, ct));
    writeMetaPrefix(&out[0], id, ct);
}

}  // namespace

MessageFacts& MessageFactsCache::lookup(const MessagePtr& msg) {
    for (Entry& e : entries_) {
        if (e.msg.get() == msg.get()) {
            return e.facts;
        }
    }

    Entry& e = entries_[next_++ % kSize];
    e.msg = msg;
    e.facts.utf8 = isValidUtf8(msg->data());
    e.facts.deflateTried = false;
    e.facts.deflated.reset();
    return e.facts;
}

void MessageFramer::configure(bool meta, const DeflateParams* negotiated,
                              const DeflateOptions& opts, bool sharePredeflated) {
    meta_ = meta;
    negotiated_ = negotiated != nullptr;
    deflate_ = negotiated_;
    params_ = negotiated_ ? *negotiated : DeflateParams{};
    opts_ = opts;
    share_ = sharePredeflated;
    deflater_.reset();
}

FrameResult MessageFramer::message(const Message& msg, MessageFacts& facts,
                                   std::string_view compoundId, FramePlan& plan) {
    try {
        return frameMessage(msg, facts, compoundId, plan);
    } catch (const std::bad_alloc&) {
        return FrameResult::kNoMemory;
    }
}

FrameResult MessageFramer::frameMessage(const Message& msg, MessageFacts& facts,
                                        std::string_view compoundId, FramePlan& plan) {
    std::string_view ct = msg.contentType();
    bool binary = (ct == kBinaryType) || !facts.utf8;

    plan = FramePlan{};

    if (meta_) {
        char buf[kMaxMsgIdText];
        std::string_view id = compoundId;

        if (id.empty()) {
            id = std::string_view(buf, writeMsgId(buf, msg.id()));
        }
        if (!isValidUtf8(ct)) {
            binary = true;
        }
        putMetaPrefix(plan.head, id, ct);
    }

    plan.opcode = binary ? Opcode::Binary : Opcode::Text;

    if (deflate_) {
        // one pre-deflated copy per message and worker, shared
        if (share_ && canSharePredeflated(params_, opts_.windowBits)) {
            if (!facts.deflateTried) {
                facts.deflateTried = true;
                auto s = std::make_shared<std::string>();
                if (deflateNoContext(msg.data(), *s, opts_)) {
                    facts.deflated = std::move(s);
                }
            }

            std::string head;
            if (facts.deflated &&
                (plan.head.empty() || deflateNoContext(plan.head, head, opts_, true))) {
                plan.head = std::move(head);
                plan.rsv1 = true;
                plan.payload = FramePayload::kSharedDeflated;
                plan.shared = facts.deflated;

                // the client saw bytes our own window does not hold
                if (deflater_ && !params_.serverNoContextTakeover) {
                    deflater_->resetContext();
                    plan.contextReset = true;
                }
                return FrameResult::kSend;
            }
        }

        if (!deflater_) {
            deflater_ = makeServerDeflater(params_, opts_);
        }

        std::string out;
        std::string_view parts[2] = {plan.head, msg.data()};

        if (deflater_ && deflater_->deflateMessage(parts, 2, out)) {
            plan.head = std::move(out);
            plan.rsv1 = true;
            plan.payload = FramePayload::kNone;
            return FrameResult::kSend;
        }

        // zlib failed: send this and later messages uncompressed
        deflate_ = false;
    }

    plan.payload = FramePayload::kMessageData;
    return FrameResult::kSend;
}

FrameResult MessageFramer::signal(const MsgId& at, std::string_view compoundId,
                                  std::string_view json, FramePlan& plan) {
    if (!meta_) {
        return FrameResult::kNothing;
    }

    try {
        char buf[kMaxMsgIdText];
        std::string_view id = compoundId;

        // never an empty "id:" line: before any message (a null position)
        // the id is "0:0", nchan's "no message yet", which resumes from
        // the oldest stored message (docs/protocol.md)
        if (id.empty()) {
            id = std::string_view(buf, writeMsgId(buf, at));
        }

        plan = FramePlan{};
        putMetaPrefix(plan.head, id, kSignalContentType);
        plan.head += json;

    } catch (const std::bad_alloc&) {
        return FrameResult::kNoMemory;
    }

    return FrameResult::kSend;
}

}  // namespace pubsub::ws
