#include "pubsub/codec/format.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <iterator>

namespace pubsub {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); i++) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

template <typename Fn>
void forEachListItem(std::string_view value, Fn fn) {
    size_t pos = 0;
    while (pos <= value.size()) {
        size_t comma = value.find(',', pos);
        std::string_view item = value.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (!fn(trim(item))) {
            return;
        }
        if (comma == std::string_view::npos) {
            return;
        }
        pos = comma + 1;
    }
}

// True when a ";"-separated parameter list carries a q parameter of zero.
bool qIsZero(std::string_view params) {
    bool zero = false;
    while (!params.empty()) {
        size_t semi = params.find(';');
        std::string_view param = trim(params.substr(0, semi));
        params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
        size_t eq = param.find('=');
        if (eq == std::string_view::npos || !iequals(trim(param.substr(0, eq)), "q")) {
            continue;
        }
        std::string_view qv = trim(param.substr(eq + 1));
        zero = !qv.empty() && qv[0] == '0';
        for (size_t i = 1; zero && i < qv.size(); i++) {
            if (qv[i] != '0' && qv[i] != '.') {
                zero = false;
            }
        }
    }
    return zero;
}

}  // namespace

bool headerHasToken(std::string_view value, std::string_view token) {
    bool found = false;
    forEachListItem(value, [&](std::string_view item) {
        size_t semi = item.find(';');
        std::string_view name = trim(item.substr(0, semi));
        if (!iequals(name, token)) {
            return true;
        }
        if (semi != std::string_view::npos && qIsZero(item.substr(semi + 1))) {
            return true;
        }
        found = true;
        return false;
    });
    return found;
}

InfoFormat infoFormatFromAccept(std::string_view accept) {
    InfoFormat result = InfoFormat::kText;
    forEachListItem(accept, [&](std::string_view item) {
        std::string_view type = trim(item.substr(0, item.find(';')));
        size_t slash = type.find('/');
        if (slash == std::string_view::npos) {
            return true;
        }
        std::string_view major = type.substr(0, slash);
        std::string_view sub = type.substr(slash + 1);
        if (!iequals(major, "text") && !iequals(major, "application")) {
            return true;
        }
        if (iequals(sub, "json") || iequals(sub, "x-json")) {
            result = InfoFormat::kJson;
        } else if (iequals(sub, "yaml") || iequals(sub, "x-yaml")) {
            result = InfoFormat::kYaml;
        } else if (iequals(sub, "xml")) {
            result = InfoFormat::kXml;
        } else if (iequals(sub, "plain")) {
            result = InfoFormat::kText;
        } else {
            return true;
        }
        return false;
    });
    return result;
}

std::string_view infoContentType(InfoFormat f) {
    switch (f) {
        case InfoFormat::kJson:
            return "application/json";
        case InfoFormat::kXml:
            return "text/xml";
        case InfoFormat::kYaml:
            return "text/yaml";
        case InfoFormat::kText:
            break;
    }
    return "text/plain";
}

namespace {

// Appends to a fixed buffer sized by kMaxChannelInfoText (no snprintf: this
// runs for every publish).
class InfoWriter {
public:
    explicit InfoWriter(char* buf) : p_(buf), start_(buf) {}
    InfoWriter& str(std::string_view s) {
        std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
        return *this;
    }
    InfoWriter& num(int64_t v) {
        p_ += writeDecimal(p_, v);
        return *this;
    }
    InfoWriter& unum(uint64_t v) {
        char tmp[24];
        size_t n = 0;
        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0) {
            *p_++ = tmp[--n];
        }
        return *this;
    }
    InfoWriter& id(const MsgId& m) {
        p_ += writeMsgId(p_, m);
        return *this;
    }
    size_t size() const { return static_cast<size_t>(p_ - start_); }

private:
    char* p_;
    char* start_;
};

// The text around the values of writeChannelInfo, one row a format in
// InfoFormat's order: before messages, before requested, before subscribers,
// before the last message id, before presence (empty: no presence count),
// after presence. The text form is nchan's bytes: no presence count, and no
// line break after the id (nchan's clients read the id from the last line;
// a "\r" would end up in it).
constexpr std::string_view kInfoText[][6] = {
    // kText
    {"queued messages: ", "\r\nlast requested: ", " sec. ago\r\nactive subscribers: ",
     "\r\nlast message id: ", "", ""},
    // kJson
    {"{\"messages\": ", ", \"requested\": ", ", \"subscribers\": ", ", \"last_message_id\": \"",
     "\", \"presence\": ", "}\n"},
    // kXml
    {"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<channel>\n  <messages>",
     "</messages>\n  <requested>", "</requested>\n  <subscribers>",
     "</subscribers>\n  <last_message_id>", "</last_message_id>\n  <presence>",
     "</presence>\n</channel>\n"},
    // kYaml
    {"---\nmessages: ", "\nrequested: ", "\nsubscribers: ", "\nlast_message_id: ", "\npresence: ",
     "\n"},
};

}  // namespace

size_t writeChannelInfo(char* buf, const ChannelInfo& info, InfoFormat f, int64_t now) {
    size_t row = static_cast<size_t>(f);
    if (row >= std::size(kInfoText)) {
        return 0;
    }
    const std::string_view* t = kInfoText[row];
    int64_t requested = info.lastSeen < 0 ? -1 : now - info.lastSeen;
    InfoWriter w(buf);
    w.str(t[0]).unum(info.messages);
    w.str(t[1]).num(requested);
    w.str(t[2]).unum(info.subscribers);
    w.str(t[3]).id(info.lastId);
    if (!t[4].empty()) {
        w.str(t[4]).unum(info.presence).str(t[5]);
    }
    return w.size();
}

std::string formatChannelInfo(const ChannelInfo& info, InfoFormat f, int64_t now) {
    char buf[kMaxChannelInfoText];
    return std::string(buf, writeChannelInfo(buf, info, f, now));
}

namespace {

template <typename Fn>
void forEachLine(std::string_view data, Fn fn) {
    size_t start = 0;
    for (size_t i = 0; i < data.size(); i++) {
        char c = data[i];
        if (c == '\n' || c == '\r') {
            fn(data.substr(start, i - start));
            if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') {
                i++;
            }
            start = i + 1;
        }
    }
    fn(data.substr(start));
}

}  // namespace

void appendSseEvent(std::string& out, std::string_view event, std::string_view id,
                    std::string_view data) {
    if (!event.empty()) {
        out.append("event: ");
        forEachLine(event, [&](std::string_view l) { out.append(l); });
        out.push_back('\n');
    }
    if (!id.empty()) {
        out.append("id: ");
        out.append(id);
        out.push_back('\n');
    }
    forEachLine(data, [&](std::string_view line) {
        out.append("data: ");
        out.append(line);
        out.push_back('\n');
    });
    out.push_back('\n');
}

void appendSseComment(std::string& out, std::string_view text) {
    forEachLine(text, [&](std::string_view line) {
        out.push_back(':');
        if (!line.empty()) {
            out.push_back(' ');
            out.append(line);
        }
        out.push_back('\n');
    });
    out.push_back('\n');
}

}  // namespace pubsub

namespace pubsub {

std::string formatGroupInfo(const GroupInfo& info, InfoFormat f) {
    const uint64_t v[] = {info.channels,
                          info.subscribers,
                          info.messages,
                          info.bytes,
                          0,
                          info.limits.maxChannels,
                          info.limits.maxSubscribers,
                          0,
                          info.limits.maxBytes,
                          0};
    // the text before each value, and after the last
    static constexpr std::string_view kText[] = {"channels: ",
                                                 "\r\nsubscribers: ",
                                                 "\r\nmessages: ",
                                                 "\r\nshared memory used by messages: ",
                                                 " bytes\r\ndisk space used by messages: ",
                                                 " bytes\r\nlimits:\r\n  max channels: ",
                                                 "\r\n  max subscribers: ",
                                                 "\r\n  max messages: ",
                                                 "\r\n  max messages shared memory: ",
                                                 "\r\n  max messages disk space: ",
                                                 "\r\n"};
    static constexpr std::string_view kJson[] = {"{\"channels\": ",
                                                 ", \"subscribers\": ",
                                                 ", \"messages\": ",
                                                 ", \"messages_memory\": ",
                                                 ", \"messages_disk\": ",
                                                 ", \"limits\": {\"channels\": ",
                                                 ", \"subscribers\": ",
                                                 ", \"messages\": ",
                                                 ", \"messages_memory\": ",
                                                 ", \"messages_disk\": ",
                                                 "}}\n"};
    static constexpr std::string_view kXml[] = {
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<group>\n  <channels>",
        "</channels>\n  <subscribers>",
        "</subscribers>\n  <messages>",
        "</messages>\n  <messages_memory>",
        "</messages_memory>\n  <messages_disk>",
        "</messages_disk>\n  <limits>\n    <channels>",
        "</channels>\n    <subscribers>",
        "</subscribers>\n    <messages>",
        "</messages>\n    <messages_memory>",
        "</messages_memory>\n    <messages_disk>",
        "</messages_disk>\n  </limits>\n</group>\n"};
    static constexpr std::string_view kYaml[] = {"---\nchannels: ",
                                                 "\nsubscribers: ",
                                                 "\nmessages: ",
                                                 "\nmessages_memory: ",
                                                 "\nmessages_disk: ",
                                                 "\nlimits:\n  channels: ",
                                                 "\n  subscribers: ",
                                                 "\n  messages: ",
                                                 "\n  messages_memory: ",
                                                 "\n  messages_disk: ",
                                                 "\n"};
    const std::string_view* t = kText;
    switch (f) {
        case InfoFormat::kJson:
            t = kJson;
            break;
        case InfoFormat::kXml:
            t = kXml;
            break;
        case InfoFormat::kYaml:
            t = kYaml;
            break;
        case InfoFormat::kText:
            break;
    }
    std::string out;
    for (size_t i = 0; i < std::size(v); i++) {
        out += t[i];
        out += std::to_string(v[i]);
    }
    out += t[std::size(v)];
    return out;
}

}  // namespace pubsub
