// RFC 6455 WebSocket codec for the server side: handshake checks,
// permessage-deflate negotiation (RFC 7692), an incremental frame parser and
// a frame encoder. No I/O: the transport feeds the bytes it reads into a
// FrameParser and writes the bytes the encoder produces. Nothing here throws
// or aborts; allocation failures become error results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "pubsub/codec/deflate.h"
#include "pubsub/codec/utf8.h"

namespace pubsub::ws {

// ------------------------------------------------------------ constants

enum class Opcode : uint8_t {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
};

namespace close_code {
constexpr uint16_t kNormal = 1000;
constexpr uint16_t kGoingAway = 1001;
constexpr uint16_t kProtocolError = 1002;
constexpr uint16_t kUnsupportedData = 1003;
constexpr uint16_t kNoStatus = 1005;  // never sent: "close frame had no code"
constexpr uint16_t kAbnormal = 1006;  // never sent
constexpr uint16_t kInvalidPayload = 1007;
constexpr uint16_t kPolicyViolation = 1008;
constexpr uint16_t kMessageTooBig = 1009;
constexpr uint16_t kInternalError = 1011;
}  // namespace close_code

// A close code a peer may send: 1000-1003, 1007-1014, 3000-4999.
bool isValidCloseCode(uint16_t code);

constexpr size_t kMaxServerHeaderSize = 10;  // unmasked frame header
constexpr size_t kMaxClientHeaderSize = 14;  // masked frame header
constexpr size_t kMaxControlPayload = 125;
constexpr size_t kMaxCloseReason = 123;
constexpr size_t kMaxControlFrameSize = 2 + kMaxControlPayload;  // unmasked
constexpr size_t kAcceptKeySize = 28;

// ------------------------------------------------------------ handshake

// Header values as received. When a header occurs more than once, pass the
// values joined with ", " (RFC 7230 list semantics); an absent header is
// an empty view.
struct UpgradeRequest {
    std::string_view method;      // "GET"
    unsigned httpVersion = 0;     // major * 1000 + minor, as nginx's r->http_version
    std::string_view upgrade;     // Upgrade
    std::string_view connection;  // Connection
    std::string_view version;     // Sec-WebSocket-Version
    std::string_view key;         // Sec-WebSocket-Key
};

enum class HandshakeError {
    None,
    NotGet,
    BadHttpVersion,       // not HTTP/1.1 or a later 1.x
    NoUpgradeWebsocket,   // Upgrade missing or without the "websocket" token
    NoConnectionUpgrade,  // Connection missing or without the "upgrade" token
    MissingVersion,
    UnsupportedVersion,  // RFC 6455 4.4: also send "Sec-WebSocket-Version: 13"
    MissingKey,
    InvalidKey,  // not base64 of exactly 16 bytes
};

// Checks in the order of the enum; returns the first failure.
HandshakeError validateUpgrade(const UpgradeRequest& req);
// Text for the 400 response body (no trailing newline); "" for None.
std::string_view handshakeErrorText(HandshakeError err);

// True when the comma-separated header value has `token` as one element
// (case-insensitive, optional whitespace around elements).
bool headerHasToken(std::string_view value, std::string_view token);

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (surrounding whitespace is
// ignored): base64(SHA-1(key + 258EAFA5-E914-47DA-95CA-C5AB0DC85B11)).
// Writes exactly kAcceptKeySize characters (no NUL); false on OpenSSL failure.
bool computeAcceptKey(std::string_view key, char out[kAcceptKeySize]);
std::string computeAcceptKey(std::string_view key);  // "" on failure

// Subprotocol choice from the Sec-WebSocket-Protocol value: the first
// offered entry that starts with "ws+meta.nchan", to be echoed back as is.
// nullopt: no subprotocol (send no Sec-WebSocket-Protocol header).
constexpr std::string_view kMetaSubprotocol = "ws+meta.nchan";
std::optional<std::string_view> chooseSubprotocol(std::string_view offered);

// ------------------------------------------------------------ permessage-deflate

// Server policy (from configuration).
struct DeflateConfig {
    bool enabled = true;
    DeflateOptions deflate;                // deflate.windowBits (9..15) caps server_max_window_bits
    int clientMaxWindowBits = 15;          // asked of clients that offer client_max_window_bits
    bool serverNoContextTakeover = false;  // announce it even when not requested
    bool clientNoContextTakeover = false;  // request it of the client
};

// What was agreed for one connection.
struct DeflateParams {
    bool serverNoContextTakeover = false;
    bool clientNoContextTakeover = false;
    int serverMaxWindowBits = 15;  // window our Deflater uses (client inflates with this)
    int clientMaxWindowBits = 15;  // window the client may use (our Inflater)
};

struct DeflateNegotiation {
    bool accepted = false;
    DeflateParams params;
    std::string responseHeader;  // Sec-WebSocket-Extensions value to send when accepted
};

// Parses Sec-WebSocket-Extensions and accepts the first acceptable
// permessage-deflate offer. An offer with an unknown, repeated or invalid
// parameter is declined (RFC 7692 5, 7.1), as is one that asks for
// server_max_window_bits=8 (zlib cannot honour it); the next offer is tried.
// A syntactically broken header declines every offer. Other extensions are
// ignored. Never fails the handshake.
DeflateNegotiation negotiateDeflate(std::string_view extensions, const DeflateConfig& cfg);

// Whether a copy made by deflateNoContext() with DeflateOptions::windowBits
// = predeflateWindowBits may be sent unchanged (RSV1 set) on a connection
// that negotiated p (rules in deflate.h). When the connection has context
// takeover (!p.serverNoContextTakeover), call Deflater::resetContext() on its
// Deflater after sending such a frame.
bool canSharePredeflated(const DeflateParams& p, int predeflateWindowBits);

// Per-connection coders for the agreed parameters (server side). Return
// nullptr only on allocation failure; zlib memory is allocated lazily.
std::unique_ptr<Inflater> makeServerInflater(const DeflateParams& p);
std::unique_ptr<Deflater> makeServerDeflater(const DeflateParams& p, const DeflateOptions& opts);

// ------------------------------------------------------------ parser

struct ParserConfig {
    size_t maxMessageSize = 64 * 1024;      // on the wire and after inflating; 0 = no limit
    bool expectMasked = true;               // server: client frames must be masked
    bool deflate = false;                   // permessage-deflate negotiated: RSV1 allowed
    int inflateWindowBits = 15;             // DeflateParams::clientMaxWindowBits on a server
    bool inflateNoContextTakeover = false;  // DeflateParams::clientNoContextTakeover

    // Server-side configuration; `negotiated` is null without deflate.
    static ParserConfig forServer(size_t maxMessageSize, const DeflateParams* negotiated);
};

enum class EventType {
    None,     // all input consumed, need more bytes
    Message,  // complete text/binary message
    Ping,
    Pong,
    Close,  // close frame received (answer it, then stop reading)
    Error,  // protocol violation: send a close with code/reason and drop
};

struct Event {
    EventType type = EventType::None;
    Opcode opcode = Opcode::Continuation;  // Message: Text or Binary
    bool compressed = false;               // Message arrived with RSV1; payload is already inflated
    std::string payload;                   // Message data, Ping/Pong data, Close reason (UTF-8)
    uint16_t code = 0;                     // Close: code received (kNoStatus when absent)
                                           // Error: code to close with (1002, 1007, 1009, 1011)
    std::string_view reason;               // Error: short static text for the close reason
};

// Incremental frame parser. Bytes may be split anywhere. Typical use:
//
//   while (len > 0) {
//       size_t n = parser.feed(p, len, ev);
//       p += n; len -= n;
//       if (ev.type == EventType::None) break;         // wait for more input
//       if (ev.type == EventType::Error) { sendClose(ev.code, ev.reason); drop; }
//       handle(ev);                                     // Message/Ping/Pong/Close
//   }
//
// feed() stops right after a frame that produced an event, so control frames
// interleaved with a fragmented message come out in wire order. Memory:
// a message buffer that never exceeds maxMessageSize (the check happens on
// the frame header, before the payload is buffered, and while inflating),
// plus at most 125 bytes of control payload and 14 of header.
// After Error, feed() consumes nothing and reports the same error again.
// After Close, feed() discards everything (nothing may follow a close).
class FrameParser {
public:
    explicit FrameParser(const ParserConfig& cfg);
    ~FrameParser();
    FrameParser(const FrameParser&) = delete;
    FrameParser& operator=(const FrameParser&) = delete;

    // Consumes a prefix of data and returns its length; ev is overwritten.
    size_t feed(const uint8_t* data, size_t len, Event& ev);

    bool failed() const { return state_ == State::Failed; }
    bool closed() const { return state_ == State::Closed; }
    // True while a fragmented message is being assembled.
    bool inMessage() const { return inMessage_; }
    // Bytes of heap held for the current message (capacity), for tests.
    size_t bufferedBytes() const;

private:
    enum class State { Header, Payload, Failed, Closed };

    size_t headerNeed() const;
    bool checkFirstBytes();
    bool processHeader();
    bool consumePayload(const uint8_t* p, size_t n);
    bool finishFrame(Event& ev);
    bool appendMessage(const uint8_t* p, size_t n);
    bool inflateChunk(const uint8_t* p, size_t n);
    bool afterInflate(InflateStatus s);
    bool checkText();
    bool fail(uint16_t code, std::string_view reason);
    void reportError(Event& ev) const;

    ParserConfig cfg_;
    State state_ = State::Header;

    uint8_t hdr_[kMaxClientHeaderSize];
    size_t hdrLen_ = 0;

    // current frame
    bool fin_ = false;
    bool rsv1_ = false;
    bool masked_ = false;
    Opcode op_ = Opcode::Continuation;
    uint64_t remaining_ = 0;
    uint8_t mask_[4] = {0, 0, 0, 0};
    size_t maskPos_ = 0;

    // current data message (may span fragments)
    bool inMessage_ = false;
    Opcode msgOp_ = Opcode::Text;
    bool msgCompressed_ = false;
    uint64_t msgWire_ = 0;
    std::string msg_;
    size_t validated_ = 0;
    Utf8Validator utf8_;

    std::string ctrl_;
    std::unique_ptr<Inflater> inflater_;

    uint16_t errCode_ = 0;
    std::string_view errReason_;
};

// ------------------------------------------------------------ encoder

// Writes a server (unmasked) frame header for a payload of payloadLen bytes
// into out (room for kMaxServerHeaderSize) and returns its length; the
// payload follows separately (e.g. as a second iovec / ngx_buf_t).
size_t writeFrameHeader(uint8_t* out, Opcode op, uint64_t payloadLen, bool fin = true,
                        bool rsv1 = false);
// Client-side (masked) header, for tests and benchmark clients; the payload
// must then be XORed with mask (see maskPayload).
size_t writeMaskedFrameHeader(uint8_t* out, Opcode op, uint64_t payloadLen, const uint8_t mask[4],
                              bool fin = true, bool rsv1 = false);
void maskPayload(uint8_t* data, size_t len, const uint8_t mask[4], size_t offset = 0);

// Whole control frame (ping, pong) into out (room for kMaxControlFrameSize);
// returns its length, or 0 when the payload is over 125 bytes.
size_t writeControlFrame(uint8_t* out, Opcode op, std::string_view payload);
// Close frame into out (room for kMaxControlFrameSize). code 0 sends an
// empty close (no status). The reason is sent as given, cut to 123 bytes at a
// UTF-8 character boundary. Returns the frame length.
size_t writeCloseFrame(uint8_t* out, uint16_t code, std::string_view reason);

// Appending conveniences; false on allocation failure (out unchanged).
bool appendFrame(std::string& out, Opcode op, std::string_view payload, bool rsv1 = false,
                 bool fin = true);
bool appendMaskedFrame(std::string& out, Opcode op, std::string_view payload, const uint8_t mask[4],
                       bool rsv1 = false, bool fin = true);
bool appendCloseFrame(std::string& out, uint16_t code, std::string_view reason);

// ------------------------------------------------------------ ws+meta.nchan

// "id: <msgId>\ncontent-type: <contentType>\n\n" (the content-type line is
// left out when contentType is empty), sent before the payload in the same
// message when the ws+meta.nchan subprotocol was chosen.
size_t metaPrefixSize(std::string_view msgId, std::string_view contentType);
// Writes metaPrefixSize() bytes into out; returns that size.
size_t writeMetaPrefix(char* out, std::string_view msgId, std::string_view contentType);
bool appendMetaPrefix(std::string& out, std::string_view msgId, std::string_view contentType);

}  // namespace pubsub::ws
