#include "pubsub/pusher/api.h"

#include <new>
#include <optional>

#include "pubsub/codec/hex.h"
#include "pubsub/codec/json.h"
#include "pubsub/pusher/auth.h"

namespace pubsub {
namespace pusher {

namespace {

constexpr std::string_view kApps = "/apps/";

bool startsWith(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// %XX decoded ('+' a space when `plus`); a malformed escape stays as is
std::string unescape(std::string_view s, bool plus) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); i++) {
        if (s[i] == '%' && i + 2 < s.size()) {
            int hi = hexValue(s[i + 1]);
            int lo = hexValue(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(plus && s[i] == '+' ? ' ' : s[i]);
    }
    return out;
}

ApiError error(int status, std::string message) {
    ApiError e;
    e.status = status;
    e.message = std::move(message);
    return e;
}

ApiError checkChannel(const std::string& name) {
    if (channelKind(name) == ChannelKind::Invalid) {
        std::string m = "invalid channel name ";
        appendJsonString(m, name);
        m += " (1 to 164 characters of A-Z a-z 0-9 _ - = @ , . ;)";
        return error(400, std::move(m));
    }
    return ApiError();
}

// The event's "channel" or "channels" (exactly one of them) into `out`.
ApiError channelsFrom(const json::Value& v, std::vector<std::string>& out) {
    const json::Value* channel = v.find("channel");
    const json::Value* channels = v.find("channels");
    if ((channel != nullptr) == (channels != nullptr)) {
        return error(400, "give exactly one of \"channel\" and \"channels\"");
    }
    out.clear();
    if (channel != nullptr) {
        if (!channel->isString()) {
            return error(400, "\"channel\" must be a string");
        }
        out.push_back(channel->asString());
    } else {
        if (!channels->isArray() || channels->items().empty()) {
            return error(400, "\"channels\" must be a non-empty array of strings");
        }
        if (channels->items().size() > kMaxEventChannels) {
            return error(400, "too many channels: an event goes to at most 100");
        }
        for (const json::Value& c : channels->items()) {
            if (!c.isString()) {
                return error(400, "\"channels\" must be a non-empty array of strings");
            }
            out.push_back(c.asString());
        }
    }
    for (const std::string& c : out) {
        ApiError e = checkChannel(c);
        if (e) {
            return e;
        }
    }
    return ApiError();
}

// One event object (of /events, or an element of a batch).
ApiError eventFrom(const json::Value& v, ApiEvent& out) {
    if (!v.isObject()) {
        return error(400, "the event must be a JSON object");
    }

    const json::Value* name = v.find("name");
    if (name == nullptr || !name->isString() || name->asString().empty()) {
        return error(400, "\"name\" must be a non-empty string");
    }
    if (name->asString().size() > kMaxEventName) {
        return error(400, "\"name\" is longer than 200 characters");
    }
    if (startsWith(name->asString(), "pusher:") ||
        startsWith(name->asString(), "pusher_internal:")) {
        return error(400,
                     "event names starting with \"pusher:\" or \"pusher_internal:\" "
                     "are reserved");
    }
    out.name = name->asString();

    const json::Value* data = v.find("data");
    if (data == nullptr || !data->isString()) {
        return error(400, "\"data\" must be a string (JSON-encode objects first)");
    }
    if (data->asString().size() > kMaxEventData) {
        return error(
            413, "event data is larger than 10 KB (" + std::to_string(kMaxEventData) + " bytes)");
    }
    out.data = data->asString();

    ApiError e = channelsFrom(v, out.channels);
    if (e) {
        return e;
    }

    out.socketId.clear();
    const json::Value* socket = v.find("socket_id");
    if (socket != nullptr && !socket->isNull()) {
        if (!socket->isString() || !validSocketId(socket->asString())) {
            return error(400, "\"socket_id\" must look like \"123.456\"");
        }
        out.socketId = socket->asString();
    }

    out.info = InfoFields();
    const json::Value* info = v.find("info");
    if (info != nullptr && !info->isNull()) {
        if (!info->isString()) {
            return error(400, "\"info\" must be a string (\"user_count,subscription_count\")");
        }
        out.info = parseInfoFields(info->asString());
    }

    return ApiError();
}

ApiError parseBody(std::string_view body, std::optional<json::Document>& doc) {
    if (body.empty()) {
        return error(400, "the request body is empty (a JSON object is expected)");
    }
    json::ParseOptions opts;
    opts.maxDepth = 8;
    json::ParseResult res = json::parse(body, opts);
    if (!res) {
        return error(400, "malformed JSON body: " + res.error.message + " at byte " +
                              std::to_string(res.error.offset));
    }
    doc = std::move(res.document);
    return ApiError();
}

ApiError outOfMemory() {
    ApiError e;
    e.status = 500;
    e.message = "out of memory";
    return e;
}

void appendCounts(std::string& out, const ChannelCounts& c, const InfoFields& info) {
    out += '{';
    bool first = true;
    if (info.userCount && c.presence) {
        out += "\"user_count\":" + std::to_string(c.userCount);
        first = false;
    }
    if (info.subscriptionCount) {
        out += first ? "" : ",";
        out += "\"subscription_count\":" + std::to_string(c.subscriptionCount);
    }
    out += '}';
}

}  // namespace

bool parseApiPath(std::string_view rawPath, ApiPath& out) {
    try {
        std::size_t at = rawPath.find(kApps);
        if (at == std::string_view::npos) {
            return false;
        }
        std::string_view path = rawPath.substr(at);
        std::string_view rest = path.substr(kApps.size());
        std::size_t slash = rest.find('/');
        std::string_view id = rest.substr(0, slash);
        if (id.empty()) {
            return false;
        }
        out.signedPath = path;
        out.appId = id;
        out.route = ApiRoute::Unknown;
        out.channel.clear();
        out.user.clear();
        if (slash == std::string_view::npos) {
            return true;
        }
        rest = rest.substr(slash + 1);

        if (rest == "events") {
            out.route = ApiRoute::Events;
        } else if (rest == "batch_events") {
            out.route = ApiRoute::BatchEvents;
        } else if (rest == "channels") {
            out.route = ApiRoute::Channels;
        } else if (startsWith(rest, "channels/")) {
            std::string_view name = rest.substr(9);
            std::size_t s = name.find('/');
            if (s == std::string_view::npos) {
                out.route = ApiRoute::Channel;
            } else if (name.substr(s) == "/users") {
                out.route = ApiRoute::ChannelUsers;
                name = name.substr(0, s);
            } else {
                return true;
            }
            if (name.empty()) {
                out.route = ApiRoute::Unknown;
                return true;
            }
            out.channel = unescape(name, false);
        } else if (startsWith(rest, "users/")) {
            std::string_view user = rest.substr(6);
            std::size_t s = user.find('/');
            if (s != std::string_view::npos && s != 0 &&
                user.substr(s) == "/terminate_connections") {
                out.route = ApiRoute::TerminateConnections;
                out.user = unescape(user.substr(0, s), false);
            }
        }
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

std::string_view routeMethod(ApiRoute route) {
    switch (route) {
        case ApiRoute::Events:
        case ApiRoute::BatchEvents:
        case ApiRoute::TerminateConnections:
            return "POST";
        case ApiRoute::Channels:
        case ApiRoute::Channel:
        case ApiRoute::ChannelUsers:
            return "GET";
        default:
            return std::string_view();
    }
}

InfoFields parseInfoFields(std::string_view list) {
    InfoFields f;
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && item.front() == ' ') {
            item.remove_prefix(1);
        }
        while (!item.empty() && item.back() == ' ') {
            item.remove_suffix(1);
        }
        if (item == "user_count") {
            f.userCount = true;
        } else if (item == "subscription_count") {
            f.subscriptionCount = true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        list.remove_prefix(comma + 1);
    }
    return f;
}

ApiError parseEvent(std::string_view body, ApiEvent& out) {
    try {
        std::optional<json::Document> doc;
        ApiError e = parseBody(body, doc);
        if (e) {
            return e;
        }
        if (!doc->root().isObject()) {
            return error(400, "the request body must be a JSON object");
        }
        return eventFrom(doc->root(), out);
    } catch (const std::bad_alloc&) {
        return outOfMemory();
    }
}

ApiError parseBatch(std::string_view body, std::vector<ApiEvent>& out) {
    try {
        std::optional<json::Document> doc;
        ApiError e = parseBody(body, doc);
        if (e) {
            return e;
        }
        const json::Value* batch = doc->root().find("batch");
        if (batch == nullptr || !batch->isArray()) {
            return error(400, "the request body must be {\"batch\":[...]}");
        }
        if (batch->items().size() > kMaxBatchEvents) {
            return error(400, "too many events: a batch has at most 10");
        }
        out.clear();
        out.reserve(batch->items().size());
        for (std::size_t i = 0; i < batch->items().size(); i++) {
            out.emplace_back();
            e = eventFrom(batch->items()[i], out.back());
            if (e) {
                e.message = "batch[" + std::to_string(i) + "]: " + e.message;
                return e;
            }
        }
        return ApiError();
    } catch (const std::bad_alloc&) {
        return outOfMemory();
    }
}

bool queryArg(std::string_view query, std::string_view name, std::string& value) {
    try {
        std::string_view raw;
        if (!queryParam(query, name, raw)) {
            return false;
        }
        value = unescape(raw, true);
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

std::string decodedQuery(std::string_view query) {
    try {
        std::string out;
        out.reserve(query.size());
        while (!query.empty()) {
            std::size_t amp = query.find('&');
            std::string_view pair = query.substr(0, amp);
            std::size_t eq = pair.find('=');
            if (!out.empty()) {
                out.push_back('&');
            }
            out += unescape(pair.substr(0, eq), true);
            if (eq != std::string_view::npos) {
                out.push_back('=');
                out += unescape(pair.substr(eq + 1), true);
            }
            if (amp == std::string_view::npos) {
                break;
            }
            query.remove_prefix(amp + 1);
        }
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string eventsAnswer(const std::vector<ChannelCounts>& channels, const InfoFields& info) {
    try {
        if (!info.any()) {
            return "{}";
        }
        return channelsAnswer(channels, info);
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string batchAnswer(const std::vector<ChannelCounts>& perEvent,
                        const std::vector<InfoFields>& info) {
    try {
        bool any = false;
        for (const InfoFields& f : info) {
            any = any || f.any();
        }
        if (!any) {
            return "{}";
        }
        std::string out = "{\"batch\":[";
        for (std::size_t i = 0; i < perEvent.size() && i < info.size(); i++) {
            if (i != 0) {
                out += ',';
            }
            appendCounts(out, perEvent[i], info[i]);
        }
        out += "]}";
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string channelsAnswer(const std::vector<ChannelCounts>& channels, const InfoFields& info) {
    try {
        std::string out = "{\"channels\":{";
        for (std::size_t i = 0; i < channels.size(); i++) {
            if (i != 0) {
                out += ',';
            }
            appendJsonString(out, channels[i].name);
            out += ':';
            appendCounts(out, channels[i], info);
        }
        out += "}}";
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string channelAnswer(bool occupied, const ChannelCounts& c, const InfoFields& info) {
    try {
        std::string out = occupied ? "{\"occupied\":true" : "{\"occupied\":false";
        if (c.presence) {
            out += ",\"user_count\":" + std::to_string(c.userCount);
        }
        if (info.subscriptionCount) {
            out += ",\"subscription_count\":" + std::to_string(c.subscriptionCount);
        }
        out += '}';
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string usersAnswer(const std::vector<std::string>& ids) {
    try {
        std::string out = "{\"users\":[";
        for (std::size_t i = 0; i < ids.size(); i++) {
            out += i != 0 ? ",{\"id\":" : "{\"id\":";
            appendJsonString(out, ids[i]);
            out += '}';
        }
        out += "]}";
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string serverToUserChannel(std::string_view userId) {
    try {
        std::string out = "#server-to-user-";
        out.append(userId);
        return out;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

}  // namespace pusher
}  // namespace pubsub
