#include "pubsub/pusher/protocol.h"

#include <cmath>
#include <cstdio>
#include <new>
#include <optional>

#include "pubsub/codec/json.h"

namespace pubsub {
namespace pusher {

namespace {

void appendString(std::string& out, std::string_view s) {
    if (!appendJsonString(out, s)) {
        throw std::bad_alloc();
    }
}

// a JSON string's value, or a number written as an integer when it is one
bool idOf(const json::Value& v, std::string* out) {
    if (v.isString()) {
        *out = v.asString();
        return true;
    }
    if (v.isNumber()) {
        double d = v.asNumber();
        if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
            char buf[32];
            int n = std::snprintf(buf, sizeof(buf), "%.0f", d);
            out->assign(buf, n);
            return true;
        }
    }
    return false;
}

}  // namespace

bool parseClientMessage(std::string_view text, ClientMessage* out, std::string* error) {
    *out = ClientMessage();
    json::ParseOptions po;
    po.maxSize = kMaxMessageSize;
    po.maxDepth = 32;
    po.allowDuplicateKeys = true;
    json::ParseResult doc = json::parse(text, po);
    if (!doc) {
        *error = "Invalid JSON: " + doc.error.message;
        return false;
    }
    const json::Value& root = doc.document->root();
    if (!root.isObject()) {
        *error = "Invalid message: not a JSON object";
        return false;
    }
    const json::Value* ev = root.find("event");
    if (ev == nullptr || !ev->isString() || ev->asString().empty()) {
        *error = "Invalid message: no event name";
        return false;
    }
    out->event = ev->asString();
    if (const json::Value* ch = root.find("channel")) {
        if (!ch->isString()) {
            *error = "Invalid message: channel is not a string";
            return false;
        }
        out->channel = ch->asString();
    }
    const json::Value* data = root.find("data");
    if (data == nullptr || data->isNull()) {
        return true;
    }
    out->hasData = true;
    std::optional<json::Document> inner;
    const json::Value* obj = nullptr;
    if (data->isString()) {
        out->data = data->asString();
        if (out->event.compare(0, 7, "pusher:") == 0) {
            json::ParseResult r = json::parse(out->data, po);
            if (r && r.document->root().isObject()) {
                inner = std::move(r.document);
                obj = &inner->root();
            }
        }
    } else {
        out->data.assign(doc.document->raw(*data));
        if (data->isObject()) {
            obj = data;
        }
    }
    if (obj != nullptr) {
        auto str = [&](const char* name, std::string* dst) -> bool {
            const json::Value* v = obj->find(name);
            if (v == nullptr || v->isNull()) {
                return true;
            }
            if (!v->isString()) {
                *error = std::string("Invalid message: ") + name + " is not a string";
                return false;
            }
            *dst = v->asString();
            return true;
        };
        std::string channel;
        if (!str("auth", &out->auth) || !str("channel_data", &out->channelData) ||
            !str("user_data", &out->userData) || !str("channel", &channel)) {
            return false;
        }
        if (out->channel.empty()) {
            out->channel = std::move(channel);
        }
    }
    return true;
}

std::string serverFrame(std::string_view event, std::string_view channel, std::string_view data,
                        std::string_view userId) {
    std::string out;
    out.reserve(40 + event.size() + channel.size() + data.size() + data.size() / 8 + userId.size());
    out += "{\"event\":";
    appendString(out, event);
    if (!channel.empty()) {
        out += ",\"channel\":";
        appendString(out, channel);
    }
    out += ",\"data\":";
    appendString(out, data);
    if (!userId.empty()) {
        out += ",\"user_id\":";
        appendString(out, userId);
    }
    out += '}';
    return out;
}

std::string errorFrame(int code, std::string_view message) {
    std::string data = "{\"code\":";
    data += code == 0 ? std::string("null") : std::to_string(code);
    data += ",\"message\":";
    appendString(data, message);
    data += '}';
    return serverFrame("pusher:error", {}, data);
}

std::string subscriptionErrorFrame(std::string_view channel, std::string_view type,
                                   std::string_view message, int status) {
    std::string data = "{\"type\":";
    appendString(data, type);
    data += ",\"error\":";
    appendString(data, message);
    data += ",\"status\":";
    data += std::to_string(status);
    data += '}';
    return serverFrame("pusher:subscription_error", channel, data);
}

bool parseChannelData(std::string_view channelData, ChannelData* out, std::string* error) {
    *out = ChannelData();
    json::ParseOptions po;
    po.maxSize = kMaxMessageSize;
    json::ParseResult doc = json::parse(channelData, po);
    if (!doc || !doc.document->root().isObject()) {
        *error = "channel_data is not a JSON object";
        return false;
    }
    const json::Value& root = doc.document->root();
    const json::Value* id = root.find("user_id");
    if (id == nullptr || !idOf(*id, &out->userId) || out->userId.empty()) {
        *error = "channel_data has no user_id";
        return false;
    }
    if (out->userId.size() > kMaxUserIdLength) {
        *error = "user_id is longer than 128 characters";
        return false;
    }
    if (const json::Value* info = root.find("user_info")) {
        out->userInfo.assign(doc.document->raw(*info));
        if (out->userInfo.size() > kMaxUserInfoSize) {
            *error = "user_info is larger than 1 KB";
            return false;
        }
    }
    return true;
}

bool parseUserData(std::string_view userData, std::string* id, std::string* error) {
    json::ParseOptions po;
    po.maxSize = kMaxMessageSize;
    json::ParseResult doc = json::parse(userData, po);
    if (!doc || !doc.document->root().isObject()) {
        *error = "user_data is not a JSON object";
        return false;
    }
    const json::Value* v = doc.document->root().find("id");
    if (v == nullptr || !idOf(*v, id) || id->empty()) {
        *error = "user_data has no id";
        return false;
    }
    if (id->size() > kMaxUserIdLength) {
        *error = "user id is longer than 128 characters";
        return false;
    }
    return true;
}

std::string presenceData(const std::vector<std::pair<std::string, std::string>>& members) {
    std::string out = "{\"presence\":{\"ids\":[";
    for (size_t i = 0; i < members.size(); i++) {
        if (i) {
            out += ',';
        }
        appendString(out, members[i].first);
    }
    out += "],\"hash\":{";
    for (size_t i = 0; i < members.size(); i++) {
        if (i) {
            out += ',';
        }
        appendString(out, members[i].first);
        out += ':';
        out += members[i].second.empty() ? std::string_view("null")
                                         : std::string_view(members[i].second);
    }
    out += "},\"count\":";
    out += std::to_string(members.size());
    out += "}}";
    return out;
}

std::string memberAddedData(std::string_view userId, std::string_view userInfo) {
    std::string out = "{\"user_id\":";
    appendString(out, userId);
    out += ",\"user_info\":";
    out += userInfo.empty() ? std::string_view("null") : userInfo;
    out += '}';
    return out;
}

std::string memberRemovedData(std::string_view userId) {
    std::string out = "{\"user_id\":";
    appendString(out, userId);
    out += '}';
    return out;
}

}  // namespace pusher
}  // namespace pubsub
