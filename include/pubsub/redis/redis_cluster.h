#pragma once
// Redis Cluster helpers for the Redis engine, without a connection: the
// hash slot of a key (CRC16/XMODEM of the hash tag, as Redis defines it),
// the slot a command is routed by, the CLUSTER SLOTS reply and MOVED/ASK
// redirections.

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pubsub::redis {

constexpr int kClusterSlots = 16384;

uint16_t crc16(std::string_view data);
// The slot of a key: of its first non-empty "{...}" tag if any, else of the key.
uint16_t keySlot(std::string_view key);

// The slot a command is routed by: the first key of EVAL/EVALSHA (when
// numkeys > 0), else the first argument of SUBSCRIBE-like commands and
// the rest; -1 when the command has no key (PING, ...).
int commandSlot(const std::vector<std::string>& args);

struct SlotRange {
    uint16_t first = 0;
    uint16_t last = 0;
    std::string host;
    int port = 0;
};

// A CLUSTER SLOTS reply: the masters' ranges; false with a reason when the
// reply is an error or malformed, or the slots are not all covered.
bool parseClusterSlots(const redisReply* r, std::vector<SlotRange>* out, std::string* reason);

struct Redirect {
    enum Kind { kNone, kMoved, kAsk };
    Kind kind = kNone;
    int slot = 0;
    std::string host;
    int port = 0;
};

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" error replies;
// kind kNone for everything else (including malformed redirections).
Redirect parseRedirect(const redisReply* r);

}  // namespace pubsub::redis
