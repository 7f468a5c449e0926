// permessage-deflate (RFC 7692) compression with zlib raw deflate.
//
// Wire format: a compressed message payload is a raw DEFLATE stream flushed
// with Z_SYNC_FLUSH whose trailing 00 00 ff ff has been removed; the receiver
// appends 00 00 ff ff before inflating. With "context takeover" each side keeps
// its LZ77 window from one message to the next; with "no context takeover" it
// starts every message from an empty window.
//
// Memory: zlib state is allocated lazily on the first message. An inflater
// costs about 7 KiB + 2^windowBits; a deflater about 2^(windowBits+2) +
// 2^(memLevel+9) (windowBits 10 / memLevel 8: ~132 KiB). Nothing throws; all
// failures (zlib errors, out of memory) are reported through return values.
//
// Sharing one pre-deflated copy of a message among subscribers
// (pubsub_deflate_message_for_websocket): compress it once with
// deflateNoContext(); the bytes are a valid permessage-deflate payload for a
// connection when ALL of these hold:
//   1. permessage-deflate was negotiated on that connection;
//   2. the copy was made with DeflateOptions::windowBits <= the connection's
//      negotiated DeflateParams::serverMaxWindowBits (the client's inflater
//      window may be no larger than that);
//   3. the connection's own Deflater does not reference data the client saw
//      in the shared frame: if the connection uses context takeover
//      (DeflateParams::serverNoContextTakeover == false) call
//      Deflater::resetContext() after sending a shared frame, before the
//      Deflater compresses the next message. With server_no_context_takeover
//      nothing needs doing.
// The client's window setting (client_max_window_bits / client context
// takeover) does not matter for this; it only affects the Inflater.
//
// ws+meta.nchan with a shared copy: deflateNoContext(prefix, out, opts,
// /*keepSyncTail=*/true) followed by the pre-deflated payload bytes is a
// valid compressed payload for "prefix + payload" (the kept 00 00 ff ff ends
// the prefix on a byte boundary; the payload never references the prefix).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pubsub::ws {

struct DeflateOptions {
    int windowBits = 15;  // 9..15 (zlib cannot produce raw deflate with 8)
    int level = 6;        // 0..9
    int memLevel = 8;     // 1..9
    int strategy = 0;     // Z_DEFAULT_STRATEGY; Z_FILTERED=1, Z_HUFFMAN_ONLY=2, Z_RLE=3, Z_FIXED=4
};

enum class InflateStatus {
    Ok,
    TooBig,    // output would exceed maxOut: close with 1009
    Corrupt,   // not a valid deflate stream: close with 1007
    NoMemory,  // allocation failed: close with 1011
};

class Inflater {
public:
    // windowBits 8..15: the peer's window (client_max_window_bits on a
    // server); noContextTakeover: the window is dropped after each message.
    Inflater(int windowBits, bool noContextTakeover);
    ~Inflater();
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;

    // Inflates the next piece of a compressed message, appending to out.
    // out.size() never grows beyond maxOut (0 = unlimited), nor its capacity.
    InflateStatus feed(const uint8_t* data, size_t len, std::string& out, size_t maxOut);
    // End of the message: inflates the implicit 00 00 ff ff tail.
    InflateStatus finish(std::string& out, size_t maxOut);
    // feed() + finish() for a whole message payload.
    InflateStatus inflateMessage(std::string_view in, std::string& out, size_t maxOut);
    // Forgets the window (no-op before first use). Call between messages only.
    void reset();

private:
    struct State;
    InflateStatus run(const uint8_t* data, size_t len, std::string& out, size_t maxOut);
    std::unique_ptr<State> st_;
    int windowBits_;
    bool noContextTakeover_;
    bool broken_ = false;
    bool fedThisMessage_ = false;
};

class Deflater {
public:
    // noContextTakeover: each message is compressed from an empty window.
    Deflater(const DeflateOptions& opts, bool noContextTakeover);
    ~Deflater();
    Deflater(const Deflater&) = delete;
    Deflater& operator=(const Deflater&) = delete;

    // Appends the compressed payload (tail stripped) of one whole message to
    // out. Returns false on failure (out is left as it was; the Deflater is
    // then unusable: send uncompressed or drop the connection).
    bool deflateMessage(std::string_view in, std::string& out);
    // Same for a message given in pieces (e.g. ws+meta prefix + payload),
    // compressed as if concatenated, without copying them together.
    bool deflateMessage(const std::string_view* parts, size_t count, std::string& out);
    // Starts the next message from an empty window (see the sharing rules).
    void resetContext();

private:
    struct State;
    std::unique_ptr<State> st_;
    DeflateOptions opts_;
    bool noContextTakeover_;
    bool broken_ = false;
};

// Grows s's capacity to hold `need` bytes without letting it pass cap
// (0 = unlimited) just because of doubling: the inflater's output and the
// frame parser's message buffer stay within the message size limit.
void reserveBounded(std::string& s, size_t need, size_t cap);

// One-shot compression of a message with no context (empty window, nothing
// kept): the publish-time pre-deflated copy. keepSyncTail keeps the final
// 00 00 ff ff (only for a prefix that is followed by more deflate data).
// Appends to out; false on failure.
bool deflateNoContext(std::string_view in, std::string& out, const DeflateOptions& opts = {},
                      bool keepSyncTail = false);

}  // namespace pubsub::ws
