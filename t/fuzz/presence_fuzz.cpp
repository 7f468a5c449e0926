// Presence API queries (pubsub_presence_api: ?cursor=, ?limit=, ?user=) over a
// registry built by fuzzed joins and leaves: parsePresenceCursor(), page(),
// user(), stats(). Paging with the cursors handed out must visit every member
// exactly once; a malformed cursor is refused, never misread.
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "pubsub/memory/presence.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

void* heapAlloc(void*, size_t n) { return std::malloc(n); }
void heapFree(void*, void* p) { std::free(p); }

const char* kKeys[3] = {"g/a", "g/b", "h/a"};

void checkPaging(const PresenceRegistry& reg, std::string_view key, size_t limit) {
    PresenceStats st = reg.stats(key);
    std::set<std::string> seen;
    std::string cursor;
    for (int pages = 0; pages < 1000; pages++) {
        PresencePage p = reg.page(key, limit, cursor);
        check(p.status == PresenceStatus::kOk, "page with a cursor we handed out");
        check(p.members.size() <= limit, "page over its limit");
        for (const auto& m : p.members) {
            check(seen.insert(m.id).second, "member listed twice");
        }
        if (p.nextCursor.empty()) {
            check(seen.size() == st.members, "paging missed members");
            return;
        }
        uint64_t seq = 0, hash = 0;
        check(parsePresenceCursor(p.nextCursor, &seq, &hash), "our cursor does not parse");
        cursor = p.nextCursor;
    }
    fuzz::fail("paging does not end");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    ShmAllocator alloc;
    alloc.alloc = heapAlloc;
    alloc.free = heapFree;
    PresenceRoot* root = PresenceRegistry::createRoot(alloc, 4);
    check(root != nullptr, "root");
    PresenceRegistry reg(root, alloc);
    std::vector<PresenceConn*> conns;
    PresenceEvents events;
    int64_t now = 1000;

    while (in.size() > 0) {
        uint8_t op = in.byte();
        std::string_view key = kKeys[op % 3];
        switch ((op >> 2) % 6) {
        case 0:
        case 1: {  // join
            std::string_view id = in.until('\n');
            PresenceConn* c = reg.join(key, id.substr(0, 40), "{}", op & 3, 0,
                                       (op & 0x80) ? 0 : 100, now, &events);
            if (c != nullptr) {
                conns.push_back(c);
            }
            break;
        }
        case 2:  // leave
            if (!conns.empty()) {
                size_t i = in.byte() % conns.size();
                reg.leave(conns[i], now, &events);
                conns.erase(conns.begin() + static_cast<long>(i));
            }
            break;
        case 3: {  // a client's query: ?limit=&cursor=
            size_t limit = in.byte();
            std::string_view cursor = in.until('\n');
            PresencePage p = reg.page(key, limit, cursor);
            uint64_t seq = 0, hash = 0;
            bool parses = cursor.empty() || parsePresenceCursor(cursor, &seq, &hash);
            if (!parses) {
                check(p.status == PresenceStatus::kBadCursor, "bad cursor accepted");
            } else if (limit == 0 || limit > PresenceRegistry::kMaxPage) {
                check(p.status == PresenceStatus::kBadArgument, "bad limit accepted");
            } else if (p.status == PresenceStatus::kOk) {
                check(p.members.size() <= limit, "page over its limit");
            }
            if (parses && !cursor.empty()) {
                uint64_t seq2 = 0, hash2 = 0;
                check(parsePresenceCursor(presenceCursor(seq, hash), &seq2, &hash2) &&
                          seq2 == seq && hash2 == hash,
                      "cursor round trip");
            }
            break;
        }
        case 4: {  // ?user=
            PresenceUserState u = reg.user(in.until('\n'));
            check(u.status == PresenceStatus::kOk || u.status == PresenceStatus::kBadArgument,
                  "user status");
            break;
        }
        case 5:
            now += in.byte() * 10;
            reg.expire(now, &events);
            break;
        }
        events.clear();
    }

    for (const char* k : kKeys) {
        checkPaging(reg, k, 1 + (size % 7));
    }
    for (PresenceConn* c : conns) {
        reg.leave(c, now, &events);
    }
    reg.expire(now + 1000000, &events);
    check(root->totalConnections == 0, "connections left after every leave");
    check(root->totalMembers == 0, "members left after every leave and expiry");
    PresenceRegistry::destroyRoot(root, alloc);
    return 0;
}
