// WebSocket frames as a client sends them: pubsub::ws::FrameParser fed in
// pieces of a fuzzed size, with fuzzed limits and permessage-deflate
// settings. A second mode encodes fuzzed messages with the client encoder and
// checks the parser gives them back unchanged.
#include <algorithm>
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/utf8.h"
#include "pubsub/codec/websocket.h"

using namespace pubsub;
using namespace pubsub::ws;
using pubsub::fuzz::check;

namespace {

void checkEvent(const Event& ev, const ParserConfig& cfg) {
    switch (ev.type) {
    case EventType::Message:
        check(ev.opcode == Opcode::Text || ev.opcode == Opcode::Binary, "message opcode");
        check(cfg.maxMessageSize == 0 || ev.payload.size() <= cfg.maxMessageSize,
              "message over maxMessageSize");
        check(ev.opcode != Opcode::Text || isValidUtf8(ev.payload), "text is not UTF-8");
        check(!ev.compressed || cfg.deflate, "compressed without deflate");
        break;
    case EventType::Ping:
    case EventType::Pong:
        check(ev.payload.size() <= kMaxControlPayload, "control payload over 125");
        break;
    case EventType::Close:
        check(ev.payload.size() <= kMaxCloseReason, "close reason over 123");
        check(isValidUtf8(ev.payload), "close reason is not UTF-8");
        check(ev.code == close_code::kNoStatus || isValidCloseCode(ev.code), "close code");
        break;
    case EventType::Error:
        check(ev.code == close_code::kProtocolError || ev.code == close_code::kInvalidPayload ||
                  ev.code == close_code::kMessageTooBig ||
                  ev.code == close_code::kInternalError,
              "error close code");
        check(!ev.reason.empty() && ev.reason.size() <= kMaxCloseReason, "error reason");
        break;
    case EventType::None:
        break;
    }
}

// Parses the input as a client stream; returns nothing, checks invariants.
void parseStream(fuzz::Input& in) {
    uint8_t flags = in.byte();
    uint8_t chunk = in.byte();
    uint8_t limit = in.byte();

    ParserConfig cfg;
    cfg.expectMasked = (flags & 1) == 0;
    cfg.deflate = (flags & 2) != 0;
    cfg.inflateWindowBits = 8 + ((flags >> 2) & 7);
    cfg.inflateNoContextTakeover = (flags & 0x20) != 0;
    cfg.maxMessageSize = limit == 0 ? 0 : size_t(limit) * 37;

    FrameParser parser(cfg);
    const uint8_t* p = in.data();
    size_t left = in.size();
    size_t step = chunk == 0 ? left : chunk;
    bool failed = false;

    while (left > 0) {
        size_t give = step < left ? step : left;
        const uint8_t* q = p;
        size_t qn = give;
        while (qn > 0) {
            Event ev;
            size_t used = parser.feed(q, qn, ev);
            check(used <= qn, "feed consumed more than given");
            checkEvent(ev, cfg);
            if (failed) {
                check(used == 0 && ev.type == EventType::Error, "error is not sticky");
                return;
            }
            if (cfg.maxMessageSize != 0) {
                // The message buffer's capacity stays within the limit
                // (plus the small-string minimum and the control buffer).
                check(parser.bufferedBytes() <= std::max<size_t>(cfg.maxMessageSize, 30) + 256,
                      "message buffer over the limit");
            }
            q += used;
            qn -= used;
            if (ev.type == EventType::Error) {
                failed = true;
                check(parser.failed(), "failed() after an error");
                continue;
            }
            if (ev.type == EventType::None) {
                check(qn == 0, "None before the input was used up");
                break;
            }
        }
        p += give;
        left -= give;
    }
}

// Messages built with the encoder must come back as they went in.
void roundTrip(fuzz::Input& in) {
    uint8_t fragSel = in.byte();
    uint8_t mask[4] = {in.byte(), in.byte(), in.byte(), in.byte()};
    std::string wire;
    std::string expect[64];
    Opcode ops[64];
    size_t count = 0;

    while (in.size() > 0 && count < 64) {
        std::string_view payload = in.until('\xff');
        bool binary = !payload.empty() && (payload[0] & 1);
        Opcode op = binary || !isValidUtf8(payload) ? Opcode::Binary : Opcode::Text;
        // Optionally send it in two fragments with a ping in between.
        size_t cut = fragSel == 0 ? payload.size() : payload.size() * (fragSel % 7) / 7;
        if (cut > 0 && cut < payload.size()) {
            check(appendMaskedFrame(wire, op, payload.substr(0, cut), mask, false, false),
                  "encode");
            check(appendMaskedFrame(wire, Opcode::Ping, "p", mask), "encode ping");
            check(appendMaskedFrame(wire, Opcode::Continuation, payload.substr(cut), mask, false,
                                    true),
                  "encode");
        } else {
            check(appendMaskedFrame(wire, op, payload, mask), "encode");
        }
        expect[count] = std::string(payload);
        ops[count] = op;
        count++;
    }

    FrameParser parser(ParserConfig::forServer(0, nullptr));
    const uint8_t* p = reinterpret_cast<const uint8_t*>(wire.data());
    size_t left = wire.size();
    size_t got = 0;
    while (left > 0) {
        Event ev;
        size_t used = parser.feed(p, left, ev);
        p += used;
        left -= used;
        check(ev.type != EventType::Error, "round trip: parser error");
        check(ev.type != EventType::None || left == 0, "round trip: stalled");
        if (ev.type == EventType::Message) {
            check(got < count, "round trip: extra message");
            check(ev.opcode == ops[got] && ev.payload == expect[got], "round trip: payload");
            got++;
        }
        if (ev.type == EventType::None) {
            break;
        }
    }
    check(got == count, "round trip: messages missing");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    if (in.byte() & 1) {
        roundTrip(in);
    } else {
        parseStream(in);
    }
    return 0;
}
