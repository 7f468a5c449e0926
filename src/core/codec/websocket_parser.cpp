// Incremental RFC 6455 frame parser (see FrameParser in pubsub/websocket.h).
#include <algorithm>
#include <cstring>
#include <new>

#include "pubsub/codec/websocket.h"

namespace pubsub::ws {

namespace {

constexpr size_t kUnmaskChunk = 4096;

bool isControl(Opcode op) {
    return (static_cast<uint8_t>(op) & 0x08) != 0;
}

}  // namespace

FrameParser::FrameParser(const ParserConfig& cfg) : cfg_(cfg) {
    if (cfg_.deflate) {
        // nullptr on allocation failure: reported as 1011 on the first
        // compressed message.
        inflater_.reset(new (std::nothrow)
                            Inflater(cfg_.inflateWindowBits, cfg_.inflateNoContextTakeover));
    }
}

FrameParser::~FrameParser() = default;

size_t FrameParser::bufferedBytes() const {
    return msg_.capacity() + ctrl_.capacity();
}

bool FrameParser::fail(uint16_t code, std::string_view reason) {
    state_ = State::Failed;
    errCode_ = code;
    errReason_ = reason;
    std::string().swap(msg_);  // release the memory (assignment may keep it)
    std::string().swap(ctrl_);
    return false;
}

void FrameParser::reportError(Event& ev) const {
    ev.type = EventType::Error;
    ev.code = errCode_;
    ev.reason = errReason_;
}

size_t FrameParser::headerNeed() const {
    if (hdrLen_ < 2) {
        return 2;
    }
    size_t n = 2;
    uint8_t len7 = hdr_[1] & 0x7F;
    if (len7 == 126) {
        n += 2;
    } else if (len7 == 127) {
        n += 8;
    }
    if ((hdr_[1] & 0x80) != 0) {
        n += 4;
    }
    return n;
}

bool FrameParser::checkFirstBytes() {
    uint8_t b0 = hdr_[0];
    uint8_t b1 = hdr_[1];
    fin_ = (b0 & 0x80) != 0;
    rsv1_ = (b0 & 0x40) != 0;
    masked_ = (b1 & 0x80) != 0;
    if ((b0 & 0x30) != 0) {
        return fail(close_code::kProtocolError, "RSV2/RSV3 bit set");
    }
    uint8_t op = b0 & 0x0F;
    switch (op) {
        case 0x0:
        case 0x1:
        case 0x2:
        case 0x8:
        case 0x9:
        case 0xA:
            op_ = static_cast<Opcode>(op);
            break;
        default:
            return fail(close_code::kProtocolError, "unknown opcode");
    }
    if (cfg_.expectMasked && !masked_) {
        return fail(close_code::kProtocolError, "client frame not masked");
    }
    if (!cfg_.expectMasked && masked_) {
        return fail(close_code::kProtocolError, "server frame masked");
    }
    uint8_t len7 = b1 & 0x7F;
    if (isControl(op_)) {
        if (!fin_) {
            return fail(close_code::kProtocolError, "fragmented control frame");
        }
        if (len7 > kMaxControlPayload) {
            return fail(close_code::kProtocolError, "control frame payload over 125 bytes");
        }
        if (rsv1_) {
            return fail(close_code::kProtocolError, "RSV1 set on a control frame");
        }
    } else if (op_ == Opcode::Continuation) {
        if (!inMessage_) {
            return fail(close_code::kProtocolError, "continuation frame without a message");
        }
        if (rsv1_) {
            return fail(close_code::kProtocolError, "RSV1 set on a continuation frame");
        }
    } else {
        if (inMessage_) {
            return fail(close_code::kProtocolError, "data frame inside a fragmented message");
        }
        if (rsv1_ && !cfg_.deflate) {
            return fail(close_code::kProtocolError, "RSV1 set without permessage-deflate");
        }
    }
    return true;
}

bool FrameParser::processHeader() {
    uint8_t len7 = hdr_[1] & 0x7F;
    uint64_t len = len7;
    size_t off = 2;
    if (len7 == 126) {
        len = (static_cast<uint64_t>(hdr_[2]) << 8) | hdr_[3];
        off = 4;
    } else if (len7 == 127) {
        len = 0;
        for (size_t i = 0; i < 8; ++i) {
            len = (len << 8) | hdr_[2 + i];
        }
        off = 10;
        if ((len >> 63) != 0) {
            return fail(close_code::kProtocolError, "64-bit payload length with top bit set");
        }
    }
    if (masked_) {
        std::memcpy(mask_, hdr_ + off, 4);
    }
    maskPos_ = 0;
    remaining_ = len;
    if (isControl(op_)) {
        ctrl_.clear();
    } else {
        if (op_ != Opcode::Continuation) {
            inMessage_ = true;
            msgOp_ = op_;
            msgCompressed_ = rsv1_;
            msgWire_ = 0;
            msg_.clear();
            validated_ = 0;
            utf8_.reset();
            if (msgCompressed_ && !inflater_) {
                return fail(close_code::kInternalError, "out of memory");
            }
        }
        // Checked before any of the payload is buffered.
        if (cfg_.maxMessageSize != 0 && len > cfg_.maxMessageSize - msgWire_) {
            return fail(close_code::kMessageTooBig, "message too big");
        }
        msgWire_ += len;
    }
    state_ = State::Payload;
    return true;
}

bool FrameParser::appendMessage(const uint8_t* p, size_t n) {
    size_t old = msg_.size();
    reserveBounded(msg_, old + n, cfg_.maxMessageSize);
    msg_.resize(old + n);
    uint8_t* dst = reinterpret_cast<uint8_t*>(&msg_[old]);
    if (masked_) {
        for (size_t i = 0; i < n; ++i) {
            dst[i] = p[i] ^ mask_[(maskPos_ + i) & 3];
        }
        maskPos_ += n;
    } else {
        std::memcpy(dst, p, n);
    }
    return true;
}

bool FrameParser::inflateChunk(const uint8_t* p, size_t n) {
    uint8_t buf[kUnmaskChunk];
    while (n > 0) {
        size_t k = std::min(n, kUnmaskChunk);
        const uint8_t* src = p;
        if (masked_) {
            for (size_t i = 0; i < k; ++i) {
                buf[i] = p[i] ^ mask_[(maskPos_ + i) & 3];
            }
            maskPos_ += k;
            src = buf;
        }
        if (!afterInflate(inflater_->feed(src, k, msg_, cfg_.maxMessageSize))) {
            return false;
        }
        p += k;
        n -= k;
    }
    return true;
}

// An inflater error closes the connection; otherwise the text inflated so
// far is validated.
bool FrameParser::afterInflate(InflateStatus s) {
    if (s == InflateStatus::TooBig) {
        return fail(close_code::kMessageTooBig, "message too big");
    }
    if (s == InflateStatus::Corrupt) {
        return fail(close_code::kInvalidPayload, "invalid compressed data");
    }
    if (s == InflateStatus::NoMemory) {
        return fail(close_code::kInternalError, "out of memory");
    }
    return checkText();
}

bool FrameParser::checkText() {
    if (msgOp_ != Opcode::Text || validated_ == msg_.size()) {
        return true;
    }
    bool ok = utf8_.feed(reinterpret_cast<const uint8_t*>(msg_.data()) + validated_,
                         msg_.size() - validated_);
    validated_ = msg_.size();
    if (!ok) {
        return fail(close_code::kInvalidPayload, "invalid UTF-8 in text message");
    }
    return true;
}

bool FrameParser::consumePayload(const uint8_t* p, size_t n) {
    if (isControl(op_)) {
        size_t old = ctrl_.size();
        ctrl_.resize(old + n);  // at most 125 bytes in all
        uint8_t* dst = reinterpret_cast<uint8_t*>(&ctrl_[old]);
        for (size_t i = 0; i < n; ++i) {
            dst[i] = masked_ ? static_cast<uint8_t>(p[i] ^ mask_[(maskPos_ + i) & 3]) : p[i];
        }
        maskPos_ += n;
        return true;
    }
    if (msgCompressed_) {
        return inflateChunk(p, n);
    }
    appendMessage(p, n);
    return checkText();
}

bool FrameParser::finishFrame(Event& ev) {
    switch (op_) {
        case Opcode::Ping:
        case Opcode::Pong:
            ev.type = op_ == Opcode::Ping ? EventType::Ping : EventType::Pong;
            ev.opcode = op_;
            ev.payload.assign(ctrl_);
            return true;
        case Opcode::Close: {
            if (ctrl_.size() == 1) {
                return fail(close_code::kProtocolError, "close frame payload of 1 byte");
            }
            uint16_t code = close_code::kNoStatus;
            std::string_view reason;
            if (ctrl_.size() >= 2) {
                code = static_cast<uint16_t>((static_cast<uint8_t>(ctrl_[0]) << 8) |
                                             static_cast<uint8_t>(ctrl_[1]));
                if (!isValidCloseCode(code)) {
                    return fail(close_code::kProtocolError, "invalid close code");
                }
                reason = std::string_view(ctrl_).substr(2);
                if (!isValidUtf8(reason)) {
                    return fail(close_code::kInvalidPayload, "close reason is not UTF-8");
                }
            }
            ev.type = EventType::Close;
            ev.opcode = Opcode::Close;
            ev.code = code;
            ev.payload.assign(reason);
            state_ = State::Closed;
            std::string().swap(msg_);
            return true;
        }
        default:
            break;
    }
    if (!fin_) {
        return true;  // more fragments to come
    }
    if (msgCompressed_) {
        if (!afterInflate(inflater_->finish(msg_, cfg_.maxMessageSize))) {
            return false;
        }
    }
    if (msgOp_ == Opcode::Text && !utf8_.complete()) {
        return fail(close_code::kInvalidPayload, "truncated UTF-8 at end of text message");
    }
    ev.type = EventType::Message;
    ev.opcode = msgOp_;
    ev.compressed = msgCompressed_;
    ev.payload.swap(msg_);
    std::string().swap(msg_);  // an idle connection holds no message buffer
    inMessage_ = false;
    return true;
}

size_t FrameParser::feed(const uint8_t* data, size_t len, Event& ev) {
    ev.type = EventType::None;
    ev.opcode = Opcode::Continuation;
    ev.compressed = false;
    ev.payload.clear();
    ev.code = 0;
    ev.reason = std::string_view();
    if (state_ == State::Failed) {
        reportError(ev);
        return 0;
    }
    if (state_ == State::Closed) {
        return len;
    }
    size_t pos = 0;
    try {
        for (;;) {
            if (state_ == State::Header) {
                size_t need = headerNeed();
                if (hdrLen_ < need) {
                    if (pos == len) {
                        return pos;
                    }
                    size_t k = std::min(need - hdrLen_, len - pos);
                    std::memcpy(hdr_ + hdrLen_, data + pos, k);
                    hdrLen_ += k;
                    pos += k;
                    if (hdrLen_ == 2 && !checkFirstBytes()) {
                        reportError(ev);
                        return pos;
                    }
                    continue;
                }
                hdrLen_ = 0;
                if (!processHeader()) {
                    reportError(ev);
                    return pos;
                }
            }
            // State::Payload
            size_t k = static_cast<size_t>(std::min<uint64_t>(remaining_, len - pos));
            if (k > 0) {
                if (!consumePayload(data + pos, k)) {
                    reportError(ev);
                    return pos + k;
                }
                pos += k;
                remaining_ -= k;
            }
            if (remaining_ > 0) {
                return pos;
            }
            state_ = State::Header;
            if (!finishFrame(ev)) {
                reportError(ev);
                return pos;
            }
            if (ev.type != EventType::None) {
                return pos;
            }
        }
    } catch (const std::bad_alloc&) {
        fail(close_code::kInternalError, "out of memory");
        reportError(ev);
        return pos;
    }
}

}  // namespace pubsub::ws
