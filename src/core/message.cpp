#include "pubsub/message.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace pubsub {

Message* Message::create(const MsgId& id, const MsgId& prev, std::string_view contentType,
                         std::string_view eventName, std::string_view data,
                         std::string_view origin) {
    constexpr size_t kMax = std::numeric_limits<uint32_t>::max();
    if (contentType.size() > kMax || eventName.size() > kMax || data.size() > kMax ||
        origin.size() > kMax) {
        return nullptr;
    }
    size_t total =
        sizeof(Message) + contentType.size() + eventName.size() + data.size() + origin.size();
    void* mem = std::malloc(total);
    if (mem == nullptr) {
        return nullptr;
    }
    Message* m = new (mem) Message();
    m->id_ = id;
    m->prev_ = prev;
    m->ctLen_ = static_cast<uint32_t>(contentType.size());
    m->evLen_ = static_cast<uint32_t>(eventName.size());
    m->dataLen_ = static_cast<uint32_t>(data.size());
    m->originLen_ = static_cast<uint32_t>(origin.size());
    char* p = reinterpret_cast<char*>(m + 1);
    if (!contentType.empty()) {
        std::memcpy(p, contentType.data(), contentType.size());
    }
    p += contentType.size();
    if (!eventName.empty()) {
        std::memcpy(p, eventName.data(), eventName.size());
    }
    p += eventName.size();
    if (!data.empty()) {
        std::memcpy(p, data.data(), data.size());
    }
    p += data.size();
    if (!origin.empty()) {
        std::memcpy(p, origin.data(), origin.size());
    }
    return m;
}

void Message::unref() {
    if (--refs_ == 0) {
        this->~Message();
        std::free(this);
    }
}

}  // namespace pubsub
