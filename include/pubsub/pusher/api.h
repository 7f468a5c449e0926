// Pusher's HTTP API (SPEC §12): the routes under /apps/<id>/, the bodies of
// events and batch_events and their checks, the query's arguments, and the
// JSON answers - what npm `pusher` and pusher-php-server send and expect.
// The request signature itself is auth.h's verifyApiRequest().
//
// Nothing here throws: every function catches std::bad_alloc and reports
// it (an ApiError with status 500, or an empty string).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pubsub {
namespace pusher {

constexpr std::size_t kMaxEventData = 10240;  // bytes of `data`; more: 413
constexpr std::size_t kMaxEventChannels = 100;
constexpr std::size_t kMaxBatchEvents = 10;
constexpr std::size_t kMaxEventName = 200;
// GET /channels lists at most this many occupied channels (docs/pusher.md).
constexpr std::size_t kMaxListedChannels = 1000;

enum class ApiRoute {
    Unknown,
    Events,                // POST /apps/<id>/events
    BatchEvents,           // POST /apps/<id>/batch_events
    Channels,              // GET  /apps/<id>/channels
    Channel,               // GET  /apps/<id>/channels/<name>
    ChannelUsers,          // GET  /apps/<id>/channels/<name>/users
    TerminateConnections,  // POST /apps/<id>/users/<uid>/terminate_connections
};

struct ApiPath {
    std::string_view signedPath;  // from "/apps/" on: what the signature covers
    std::string_view appId;
    ApiRoute route = ApiRoute::Unknown;
    std::string channel;  // Channel, ChannelUsers: decoded
    std::string user;     // TerminateConnections: decoded
};

// Finds "/apps/<id>" in a raw request path (no query) and the route after
// it; false when the path has no "/apps/<id>" (the route may still be
// Unknown when it has).
bool parseApiPath(std::string_view rawPath, ApiPath& out);
// The method the route answers ("GET" or "POST"); empty for Unknown.
std::string_view routeMethod(ApiRoute route);

// A failure: the HTTP status and a specific message for the body.
struct ApiError {
    int status = 0;  // 0: no error
    std::string message;
    explicit operator bool() const { return status != 0; }
};

// info=... of an event or a query ("user_count,subscription_count").
struct InfoFields {
    bool userCount = false;
    bool subscriptionCount = false;
    bool any() const { return userCount || subscriptionCount; }
};
// Unknown attributes are ignored (as Pusher does).
InfoFields parseInfoFields(std::string_view list);

// One event of POST /events or of a batch.
struct ApiEvent {
    std::string name;
    std::string data;  // exactly as sent (published as is)
    std::vector<std::string> channels;
    std::string socketId;  // empty: none
    InfoFields info;
};

// The body of POST /events: {name, data, channel | channels, socket_id?,
// info?}.  400 for malformed JSON or a missing/invalid field (a reserved
// event name, an invalid channel name, more than 100 channels, a bad
// socket id), 413 for data over 10 KB.
ApiError parseEvent(std::string_view body, ApiEvent& out);
// The body of POST /batch_events: {batch: [event, ...]}, at most 10, each
// checked as above (the message says which one failed).
ApiError parseBatch(std::string_view body, std::vector<ApiEvent>& out);

// A query argument's value (the first one), percent-decoded ('+' is a
// space); false when absent.
bool queryArg(std::string_view query, std::string_view name, std::string& value);
// The query with every key and value percent-decoded: what clients that
// URL-encode their query (pusher-php-server through Guzzle) signed.
std::string decodedQuery(std::string_view query);

// The answers.
struct ChannelCounts {
    std::string name;
    bool presence = false;
    uint64_t userCount = 0;
    uint64_t subscriptionCount = 0;
};
// {} or {"channels":{"<name>":{"user_count":N,"subscription_count":N}}}
// (user_count for presence channels only; only the fields asked for).
std::string eventsAnswer(const std::vector<ChannelCounts>& channels, const InfoFields& info);
// {"batch":[{...},{...}]}: one object per event (its own info), or {} when
// no event asked for any.
std::string batchAnswer(const std::vector<ChannelCounts>& perEvent,
                        const std::vector<InfoFields>& info);
// {"channels":{"<name>":{...},...}}
std::string channelsAnswer(const std::vector<ChannelCounts>& channels, const InfoFields& info);
// {"occupied":B[,"user_count":N][,"subscription_count":N]}
std::string channelAnswer(bool occupied, const ChannelCounts& c, const InfoFields& info);
// {"users":[{"id":"..."},...]}
std::string usersAnswer(const std::vector<std::string>& ids);

// The channel name of a user's server-to-user channel.
std::string serverToUserChannel(std::string_view userId);

}  // namespace pusher
}  // namespace pubsub
