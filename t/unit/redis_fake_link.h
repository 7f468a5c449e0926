// A RedisLink for the Redis engine's unit tests: commands are queued, not
// sent; a test answers them (with redis_tree.h replies) in any order.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/redis/redis_store.h"

namespace pubsub_test {

class FakeLink : public pubsub::RedisLink {
public:
    struct Cmd {
        std::vector<std::string> args;
        ReplyFn cb;
    };

    bool up = true;
    bool shard = false;
    std::set<std::string> downTags;  // hash tags whose master is down
    std::deque<Cmd> cmds;
    std::vector<std::string> subs, unsubs;

    static std::string tagOf(std::string_view key) {
        size_t close = key.find('}');
        return std::string(key.substr(0, close == std::string_view::npos ? key.size() : close + 1));
    }
    bool ready() const override { return up; }
    bool readyFor(std::string_view key) const override {
        return up && downTags.count(tagOf(key)) == 0;
    }
    bool command(const std::vector<std::string>& args, ReplyFn cb) override {
        if (!up || (args.size() > 3 && args[0].rfind("EVAL", 0) == 0 && !readyFor(args[3]))) {
            return false;
        }
        cmds.push_back({args, std::move(cb)});
        return true;
    }
    bool subscribe(const std::string& ch) override {
        subs.push_back(ch);
        return readyFor(ch);
    }
    bool unsubscribe(const std::string& ch) override {
        unsubs.push_back(ch);
        return up;
    }
    bool sharded() const override { return shard; }

    // Removes and returns the oldest command running script `what` (its
    // SHA1) or named `what`; the others stay queued.
    Cmd take(const std::string& what) {
        for (auto it = cmds.begin(); it != cmds.end(); ++it) {
            if (is(*it, what)) {
                Cmd c = std::move(*it);
                cmds.erase(it);
                return c;
            }
        }
        ADD_FAILURE() << "no command " << what;
        return {{"none"}, [](const redisReply*) {}};
    }
    // As take(), but every older command is answered with "no reply" first
    // (for tests that only follow one kind of command).
    Cmd takeDropping(const std::string& what) {
        while (!cmds.empty() && !is(cmds.front(), what)) {
            Cmd c = std::move(cmds.front());
            cmds.pop_front();
            c.cb(nullptr);
        }
        return take(what);
    }
    size_t count(const std::string& what) const {
        size_t n = 0;
        for (const Cmd& c : cmds) {
            n += is(c, what);
        }
        return n;
    }

private:
    static bool is(const Cmd& c, const std::string& what) {
        return (c.args.size() > 1 && c.args[1] == what) || (!c.args.empty() && c.args[0] == what);
    }
};

}  // namespace pubsub_test
