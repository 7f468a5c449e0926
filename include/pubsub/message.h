#pragma once
// A message as one worker process holds it while delivering: immutable,
// reference-counted, in a single allocation (header, content type, event
// name and payload side by side).  Workers copy a message out of the store
// once and share that copy among all of their subscribers.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "pubsub/msgid.h"

namespace pubsub {

class Message {
public:
    // Returns nullptr when memory is exhausted.  `origin` is opaque to the
    // store: who published the message (the Pusher protocol keeps the
    // sender's socket id there, pusher/origin.h), empty by default.
    static Message* create(const MsgId& id, const MsgId& prev, std::string_view contentType,
                           std::string_view eventName, std::string_view data,
                           std::string_view origin = {});

    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;

    const MsgId& id() const { return id_; }
    const MsgId& prev() const { return prev_; }
    std::string_view contentType() const { return {base(), ctLen_}; }
    std::string_view eventName() const { return {base() + ctLen_, evLen_}; }
    std::string_view data() const { return {base() + ctLen_ + evLen_, dataLen_}; }
    std::string_view origin() const { return {base() + ctLen_ + evLen_ + dataLen_, originLen_}; }
    size_t memorySize() const { return sizeof(Message) + ctLen_ + evLen_ + dataLen_ + originLen_; }

    void ref() { refs_++; }
    void unref();
    uint32_t refs() const { return refs_; }

private:
    Message() = default;
    const char* base() const { return reinterpret_cast<const char*>(this + 1); }

    MsgId id_;
    MsgId prev_;
    uint32_t refs_ = 1;
    uint32_t ctLen_ = 0;
    uint32_t evLen_ = 0;
    uint32_t dataLen_ = 0;
    uint32_t originLen_ = 0;
};

// Owning handle of one reference.
class MessagePtr {
public:
    MessagePtr() = default;
    // Adopts the reference the caller holds (as returned by Message::create).
    static MessagePtr adopt(Message* m) {
        MessagePtr p;
        p.m_ = m;
        return p;
    }
    MessagePtr(const MessagePtr& o) : m_(o.m_) {
        if (m_) {
            m_->ref();
        }
    }
    MessagePtr(MessagePtr&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    MessagePtr& operator=(MessagePtr o) noexcept {
        std::swap(m_, o.m_);
        return *this;
    }
    ~MessagePtr() {
        if (m_) {
            m_->unref();
        }
    }
    Message* get() const { return m_; }
    Message* operator->() const { return m_; }
    Message& operator*() const { return *m_; }
    explicit operator bool() const { return m_ != nullptr; }
    // Gives up the reference without dropping it.
    Message* release() { return std::exchange(m_, nullptr); }

private:
    Message* m_ = nullptr;
};

}  // namespace pubsub
