#include "pubsub/redis/redis_cluster.h"

#include <cctype>

namespace pubsub::redis {

namespace {

// CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
struct Crc16Table {
    uint16_t t[256];
    Crc16Table() {
        for (int i = 0; i < 256; i++) {
            uint16_t c = static_cast<uint16_t>(i << 8);
            for (int b = 0; b < 8; b++) {
                c = (c & 0x8000) ? static_cast<uint16_t>((c << 1) ^ 0x1021)
                                 : static_cast<uint16_t>(c << 1);
            }
            t[i] = c;
        }
    }
};

const Crc16Table kTable;

bool upperEq(std::string_view a, const char* b) {
    size_t i = 0;
    for (; i < a.size() && b[i] != '\0'; i++) {
        if (std::toupper(static_cast<unsigned char>(a[i])) != b[i]) {
            return false;
        }
    }
    return i == a.size() && b[i] == '\0';
}

bool toInt(const redisReply* r, long long* v) {
    if (r == nullptr) {
        return false;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return true;
    }
    return false;
}

bool parseHostPort(std::string_view s, std::string* host, int* port) {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= s.size()) {
        return false;
    }
    long p = 0;
    for (size_t i = colon + 1; i < s.size(); i++) {
        if (s[i] < '0' || s[i] > '9' || p > 65535) {
            return false;
        }
        p = p * 10 + (s[i] - '0');
    }
    if (p < 1 || p > 65535) {
        return false;
    }
    host->assign(s.substr(0, colon));
    *port = static_cast<int>(p);
    return true;
}

}  // namespace

uint16_t crc16(std::string_view data) {
    uint16_t crc = 0;
    for (unsigned char ch : data) {
        crc = static_cast<uint16_t>((crc << 8) ^ kTable.t[((crc >> 8) ^ ch) & 0xff]);
    }
    return crc;
}

uint16_t keySlot(std::string_view key) {
    size_t open = key.find('{');
    if (open != std::string_view::npos) {
        size_t close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) {
            key = key.substr(open + 1, close - open - 1);
        }
    }
    return static_cast<uint16_t>(crc16(key) & (kClusterSlots - 1));
}

int commandSlot(const std::vector<std::string>& args) {
    if (args.empty()) {
        return -1;
    }
    const std::string& name = args[0];
    if (upperEq(name, "EVAL") || upperEq(name, "EVALSHA")) {
        if (args.size() < 4 || args[2].empty() || args[2] == "0") {
            return -1;
        }
        return keySlot(args[3]);
    }
    if (upperEq(name, "PING") || upperEq(name, "CLUSTER") || upperEq(name, "ASKING") ||
        upperEq(name, "AUTH") || upperEq(name, "SELECT") || upperEq(name, "COMMAND") ||
        upperEq(name, "INFO") || args.size() < 2) {
        return -1;
    }
    return keySlot(args[1]);
}

namespace {

bool readClusterSlots(const redisReply* r, std::vector<SlotRange>* out, std::string* reason);

}  // namespace

// `out` is empty unless the whole map was read.
bool parseClusterSlots(const redisReply* r, std::vector<SlotRange>* out, std::string* reason) {
    out->clear();
    if (!readClusterSlots(r, out, reason)) {
        out->clear();
        return false;
    }
    return true;
}

namespace {

bool readClusterSlots(const redisReply* r, std::vector<SlotRange>* out, std::string* reason) {
    if (r == nullptr) {
        *reason = "no reply";
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        reason->assign(r->str, r->len);
        if (reason->empty()) {
            *reason = "CLUSTER SLOTS failed with an empty error";
        }
        return false;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        *reason = "CLUSTER SLOTS reply is not an array";
        return false;
    }
    std::vector<bool> covered(kClusterSlots, false);
    size_t count = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply* e = r->element[i];
        long long lo = 0;
        long long hi = 0;
        long long port = 0;
        if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            !toInt(e->element[0], &lo) || !toInt(e->element[1], &hi) || lo < 0 || hi < lo ||
            hi >= kClusterSlots) {
            *reason = "CLUSTER SLOTS has a malformed slot range";
            return false;
        }
        const redisReply* node = e->element[2];
        if (node == nullptr || node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
            node->element[0]->type != REDIS_REPLY_STRING || !toInt(node->element[1], &port) ||
            port < 1 || port > 65535) {
            *reason = "CLUSTER SLOTS has a malformed node";
            return false;
        }
        SlotRange sr;
        sr.first = static_cast<uint16_t>(lo);
        sr.last = static_cast<uint16_t>(hi);
        sr.host.assign(node->element[0]->str, node->element[0]->len);
        sr.port = static_cast<int>(port);
        if (sr.host.empty() || sr.host == "?") {
            *reason = "CLUSTER SLOTS has a node without an address";
            return false;
        }
        for (long long s = lo; s <= hi; s++) {
            if (!covered[static_cast<size_t>(s)]) {
                covered[static_cast<size_t>(s)] = true;
                count++;
            }
        }
        out->push_back(std::move(sr));
    }
    if (count != static_cast<size_t>(kClusterSlots)) {
        *reason = "the cluster does not cover all slots (" + std::to_string(count) + " of 16384)";
        return false;
    }
    return true;
}

}  // namespace

Redirect parseRedirect(const redisReply* r) {
    Redirect out;
    if (r == nullptr || r->type != REDIS_REPLY_ERROR) {
        return out;
    }
    std::string_view s(r->str, r->len);
    Redirect::Kind kind;
    if (s.substr(0, 6) == "MOVED ") {
        kind = Redirect::kMoved;
        s.remove_prefix(6);
    } else if (s.substr(0, 4) == "ASK ") {
        kind = Redirect::kAsk;
        s.remove_prefix(4);
    } else {
        return out;
    }
    size_t sp = s.find(' ');
    if (sp == std::string_view::npos || sp == 0) {
        return out;
    }
    long slot = 0;
    for (size_t i = 0; i < sp; i++) {
        if (s[i] < '0' || s[i] > '9' || slot >= kClusterSlots) {
            return out;
        }
        slot = slot * 10 + (s[i] - '0');
    }
    if (slot >= kClusterSlots) {
        return out;
    }
    if (!parseHostPort(s.substr(sp + 1), &out.host, &out.port)) {
        return out;
    }
    out.slot = static_cast<int>(slot);
    out.kind = kind;
    return out;
}

}  // namespace pubsub::redis
