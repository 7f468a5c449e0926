// pubsub-load: connections and the event loop: one epoll loop,
// non-blocking sockets, the HTTP response / WebSocket / SSE reader per
// connection; the scenario sees Events.
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "http.h"
#include "util.h"

namespace load {

// Stream: chunked, multipart or raw stream (Options::transport says which):
// an open-ended 200 whose payloads are read line by line.
enum class Proto { Http, Ws, Sse, Stream };

enum class BodyMode { None, Length, Chunked, UntilClose };

struct Conn {
    int fd = -1;
    int index = 0;
    int channel = 0;
    Proto proto = Proto::Http;
    bool connecting = false;
    bool open = false;  // WebSocket upgraded or SSE stream started
    bool headDone = false;
    bool epollOut = false;
    Head head;
    BodyMode bodyMode = BodyMode::None;
    uint64_t bodyLeft = 0;
    Chunked chunk;
    std::string body;
    std::string in;
    size_t inPos = 0;
    std::string out;
    size_t outPos = 0;
    std::string wsKey;
    std::string wsFrag;
    bool wsFragging = false;
    int wsCloseCode = 0;
    bool sseHasData = false;
    std::string sseData;
    uint64_t sentAt = 0;
    // long-poll resume state
    std::string etag;
    std::string lastModified;
    // subscriber accounting
    bool subscribed = false;
    bool warmed = false;
    bool failed = false;
    int reconnects = 0;
    uint64_t maxSeq = 0;
    std::vector<uint8_t> seen;
    uint64_t unique = 0;
    uint64_t dups = 0;
    uint64_t reorders = 0;
    // publisher state
    bool busy = false;
    uint64_t jobSeq = 0;
    int jobChannel = 0;
    bool jobWarm = false;
};

class Events {
public:
    virtual ~Events() = default;
    virtual void onConnected(Conn& c) = 0;
    // An HTTP response (head in c.head, body in c.body) is complete.
    virtual void onResponse(Conn& c) = 0;
    // WebSocket 101 (accept checked) or SSE 200 head received.
    virtual void onOpen(Conn& c) = 0;
    // A WebSocket message or SSE event.
    virtual void onMessage(Conn& c, const char* p, size_t n) = 0;
    virtual void onClosed(Conn& c, const std::string& why) = 0;
};

class Engine {
public:
    explicit Engine(Events& ev) : ev_(ev) {}
    ~Engine();

    bool init(std::string& err);

    // Source addresses for outgoing connections (empty: kernel's choice).
    void setSources(int count, const sockaddr_in& dst);

    size_t sourceCount() const { return sources_.empty() ? 1 : sources_.size(); }

    // Starts a non-blocking connect; onConnected follows. False on an
    // immediate failure (errno text in err).
    bool connect(Conn& c, const Url& u, std::string& err);

    void send(Conn& c, const char* p, size_t n);

    void send(Conn& c, const std::string& s) { send(c, s.data(), s.size()); }

    void closeConn(Conn& c, const std::string& why);

    // Closes without a callback (end of run).
    void shutdownConn(Conn& c);

    void poll(int timeoutMs);

    // WebSocket client frames are masked (RFC 6455 5.3).
    void sendWsFrame(Conn& c, int opcode, const char* p, size_t n);
    void sendWsFrame(Conn& c, int opcode, const std::string& s)
    {
        sendWsFrame(c, opcode, s.data(), s.size());
    }

    uint64_t bytesRead() const { return bytesRead_; }

private:
    static void resetConn(Conn& c);

    void wantWrite(Conn& c, bool on);

    void flush(Conn& c);

    void readable(Conn& c);

    void completeResponse(Conn& c);

    void process(Conn& c);

    // Returns false when the connection was closed.
    bool wsFrames(Conn& c);

    void sseLines(Conn& c);
    void streamLines(Conn& c);

    Events& ev_;
    int ep_ = -1;
    std::vector<sockaddr_in> sources_;
    size_t nextSource_ = 0;
    uint64_t bytesRead_ = 0;
};

// WebSocket (ws.cpp)
std::string wsAcceptFor(const std::string& key);

}  // namespace load
