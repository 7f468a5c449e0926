// permessage-deflate inflation of what clients send: Inflater fed in pieces,
// with fuzzed window bits, context takeover and output limit, over several
// messages. Also deflate -> inflate round trips with fuzzed options.
#include <algorithm>
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/deflate.h"

using namespace pubsub;
using namespace pubsub::ws;
using pubsub::fuzz::check;

namespace {

void inflateStream(fuzz::Input& in) {
    uint8_t flags = in.byte();
    uint8_t chunk = in.byte();
    uint8_t limit = in.byte();
    Inflater inf(8 + (flags & 7), (flags & 8) != 0);
    size_t maxOut = limit == 0 ? 0 : size_t(limit) * 53;

    // Messages are separated by "\xffM" in the input.
    std::string_view rest = in.rest();
    while (!rest.empty()) {
        size_t sep = rest.find("\xffM");
        std::string_view msg = rest.substr(0, sep);
        rest = sep == std::string_view::npos ? std::string_view() : rest.substr(sep + 2);

        std::string out;
        InflateStatus st = InflateStatus::Ok;
        size_t step = chunk == 0 ? msg.size() : chunk;
        for (size_t off = 0; off < msg.size() && st == InflateStatus::Ok; off += step) {
            size_t n = std::min(step, msg.size() - off);
            st = inf.feed(reinterpret_cast<const uint8_t*>(msg.data()) + off, n, out, maxOut);
            check(maxOut == 0 || out.size() <= maxOut, "inflated past the limit");
        }
        if (st == InflateStatus::Ok) {
            st = inf.finish(out, maxOut);
        }
        check(maxOut == 0 || out.size() <= maxOut, "inflated past the limit");
        check(maxOut == 0 || out.capacity() <= std::max<size_t>(maxOut, 30),
              "inflate buffer capacity grew past the limit");
        check(st != InflateStatus::NoMemory, "no memory");
        if (st != InflateStatus::Ok) {
            return;  // the connection would be closed
        }
    }
}

void roundTrip(fuzz::Input& in) {
    uint8_t a = in.byte();
    uint8_t b = in.byte();
    DeflateOptions opts;
    opts.windowBits = 9 + (a & 7) % 7;
    opts.level = (a >> 3) % 10;
    opts.memLevel = 1 + b % 9;
    opts.strategy = (b >> 4) % 5;
    bool noContext = (a & 0x80) != 0;

    Deflater def(opts, noContext);
    Inflater inf(opts.windowBits, noContext);
    std::string_view rest = in.rest();
    for (int i = 0; i < 4; i++) {
        std::string_view msg = rest.substr(0, rest.size() / 2 + 1);
        std::string packed, unpacked;
        check(def.deflateMessage(msg, packed), "deflate");
        check(inf.inflateMessage(packed, unpacked, 0) == InflateStatus::Ok, "inflate");
        check(unpacked == msg, "round trip");
        std::string shared, back;
        check(deflateNoContext(msg, shared, opts), "deflateNoContext");
        Inflater fresh(15, false);
        check(fresh.inflateMessage(shared, back, 0) == InflateStatus::Ok && back == msg,
              "shared copy round trip");
        rest = rest.substr(msg.size() > rest.size() ? rest.size() : msg.size());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    if (in.byte() & 1) {
        roundTrip(in);
    } else {
        inflateStream(in);
    }
    return 0;
}
