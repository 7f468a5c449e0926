// The WebSocket upgrade request as a client sends it: validateUpgrade(), the
// token search in Connection/Upgrade, the subprotocol choice, the accept key
// and permessage-deflate negotiation (Sec-WebSocket-Extensions). The
// extension header that negotiation answers must, offered back, give the same
// parameters.
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/websocket.h"

using namespace pubsub;
using namespace pubsub::ws;
using pubsub::fuzz::check;

namespace {

bool sameParams(const DeflateParams& a, const DeflateParams& b) {
    return a.serverNoContextTakeover == b.serverNoContextTakeover &&
           a.clientNoContextTakeover == b.clientNoContextTakeover &&
           a.serverMaxWindowBits == b.serverMaxWindowBits &&
           a.clientMaxWindowBits == b.clientMaxWindowBits;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    uint8_t flags = in.byte();
    uint8_t bits = in.byte();

    UpgradeRequest req;
    req.method = in.until('\n');
    req.httpVersion = 1000 + (flags & 3);
    req.upgrade = in.until('\n');
    req.connection = in.until('\n');
    req.version = in.until('\n');
    req.key = in.until('\n');
    std::string_view protocols = in.until('\n');
    std::string_view extensions = in.rest();

    HandshakeError err = validateUpgrade(req);
    check((err == HandshakeError::None) == handshakeErrorText(err).empty(), "error text");
    if (err == HandshakeError::None) {
        check(headerHasToken(req.upgrade, "websocket"), "accepted without websocket token");
        check(headerHasToken(req.connection, "upgrade"), "accepted without upgrade token");
        char accept[kAcceptKeySize];
        check(computeAcceptKey(req.key, accept), "accept key");
    }
    (void)computeAcceptKey(req.key);
    (void)headerHasToken(req.connection, req.upgrade);

    if (auto proto = chooseSubprotocol(protocols)) {
        check(proto->substr(0, kMetaSubprotocol.size()) == kMetaSubprotocol, "subprotocol");
        check(proto->data() >= protocols.data() &&
                  proto->data() + proto->size() <= protocols.data() + protocols.size(),
              "subprotocol is not a view of the offer");
    }

    DeflateConfig cfg;
    cfg.enabled = (flags & 4) == 0;
    cfg.deflate.windowBits = 8 + (bits & 7);
    cfg.clientMaxWindowBits = 8 + ((bits >> 3) & 7);
    cfg.serverNoContextTakeover = (flags & 8) != 0;
    cfg.clientNoContextTakeover = (flags & 16) != 0;

    DeflateNegotiation n = negotiateDeflate(extensions, cfg);
    if (!n.accepted) {
        check(n.responseHeader.empty() || !cfg.enabled, "declined with a header");
        return 0;
    }
    const DeflateParams& p = n.params;
    check(p.serverMaxWindowBits >= 9 && p.serverMaxWindowBits <= 15, "server window bits");
    check(p.clientMaxWindowBits >= 8 && p.clientMaxWindowBits <= 15, "client window bits");
    check(!n.responseHeader.empty(), "accepted without a header");

    DeflateNegotiation again = negotiateDeflate(n.responseHeader, cfg);
    check(again.accepted && sameParams(again.params, p), "answer does not negotiate the same");

    // The coders for the agreed parameters work on a small message.
    auto deflater = makeServerDeflater(p, cfg.deflate);
    auto inflater = makeServerInflater(p);
    check(deflater && inflater, "coders");
    std::string packed;
    check(deflater->deflateMessage(protocols, packed), "deflate");
    Inflater client(p.serverMaxWindowBits, p.serverNoContextTakeover);
    std::string unpacked;
    check(client.inflateMessage(packed, unpacked, 0) == InflateStatus::Ok, "client inflate");
    check(unpacked == protocols, "deflate round trip");
    return 0;
}
