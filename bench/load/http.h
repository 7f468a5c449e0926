// pubsub-load: HTTP/1.1 on the client side: the response head parser, the
// chunked decoder, request builders and a blocking GET for side requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util.h"

namespace load {

struct Head {
    int status = 0;
    int64_t contentLength = -1;
    bool chunked = false;
    bool connClose = false;
    std::string etag;
    std::string lastModified;
    std::string wsAccept;
    std::string contentType;
};

// Parses a response head at p[0..n). Returns bytes consumed, 0 when more
// data is needed, -1 when malformed.
long parseHead(const char* p, size_t n, Head& h);

// Incremental chunked transfer-coding decoder.
struct Chunked {
    enum class St { Size, Data, DataEnd, Trailer, Done } st = St::Size;
    uint64_t left = 0;
    bool markEnds = false;  // a '\n' after each chunk's data (stream transports)

    // Consumes what it can from p[0..n), appends payload to out. Returns the
    // bytes consumed; sets err on malformed input.
    size_t feed(const char* p, size_t n, std::string& out, bool& err);
};

std::string publishRequest(const Url& u, const std::string& target, const std::string& body);

// A blocking GET with Connection: close (side requests such as the
// server's status page; not used on measured paths). Returns the whole
// response, or "" on failure.
std::string blockingGet(const std::string& url);

// The integer after "key": in a JSON text; -1 when absent.
long long jsonInt(const std::string& text, const char* key);

}  // namespace load
