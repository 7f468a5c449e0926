#include "pubsub/store_model.h"

namespace pubsub {

const char* storeStatusReason(StoreStatus s) {
    switch (s) {
        case StoreStatus::kOk:
            return "ok";
        case StoreStatus::kNoMemory:
            return "shared memory is full";
        case StoreStatus::kNotFound:
            return "channel does not exist";
        case StoreStatus::kGroupChannels:
            return "Group limit reached for number of channels.";
        case StoreStatus::kGroupSubscribers:
            return "Group limit reached for number of subscribers.";
        case StoreStatus::kGroupMemory:
            return "Group limit reached for messages memory.";
        case StoreStatus::kFreshChannels:
            return "Too many channels without messages: shared memory is kept for messages.";
    }
    return "error";
}

}  // namespace pubsub
