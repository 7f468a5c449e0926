// Hand-built hiredis reply trees for the Redis engine's unit tests: a Tree
// owns every node, string and element array it hands out.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

namespace pubsub_test {

class Tree {
public:
    redisReply* str(const std::string& s, int type = REDIS_REPLY_STRING) {
        redisReply* r = node(type);
        texts_.push_back(std::make_unique<std::string>(s));
        r->str = texts_.back()->data();
        r->len = texts_.back()->size();
        return r;
    }
    redisReply* integer(long long v) {
        redisReply* r = node(REDIS_REPLY_INTEGER);
        r->integer = v;
        return r;
    }
    redisReply* error(const std::string& s) { return str(s, REDIS_REPLY_ERROR); }
    redisReply* nil() { return node(REDIS_REPLY_NIL); }
    redisReply* array(std::vector<redisReply*> items) {
        redisReply* r = node(REDIS_REPLY_ARRAY);
        arrays_.push_back(std::make_unique<std::vector<redisReply*>>(std::move(items)));
        r->element = arrays_.back()->data();
        r->elements = arrays_.back()->size();
        return r;
    }
    // A fetch-script reply: found, last id, published, skipped, then per
    // message {id, prev, data[, origin]} (content type text/plain, no event
    // name).
    redisReply* snapshot(const std::string& last, std::vector<std::vector<std::string>> msgs) {
        std::vector<redisReply*> items = {integer(1), str(last), integer(100), integer(0)};
        for (auto& m : msgs) {
            items.push_back(str(m[0]));
            items.push_back(str(m[1]));
            items.push_back(str("text/plain"));
            items.push_back(str(""));
            items.push_back(str(m[2]));
            items.push_back(str(m.size() > 3 ? m[3] : ""));
        }
        return array(items);
    }
    // One CLUSTER SLOTS range: [lo, hi, [host, port, id], [replica...]].
    redisReply* range(long long lo, long long hi, const std::string& host, long long port) {
        return array({integer(lo), integer(hi),
                      array({str(host), integer(port), str("0123abcd")}),
                      array({str(host), integer(port + 100), str("replica")})});
    }

private:
    redisReply* node(int type) {
        nodes_.push_back(std::make_unique<redisReply>());
        redisReply* r = nodes_.back().get();
        *r = redisReply();
        r->type = type;
        return r;
    }
    std::vector<std::unique_ptr<redisReply>> nodes_;
    std::vector<std::unique_ptr<std::string>> texts_;
    std::vector<std::unique_ptr<std::vector<redisReply*>>> arrays_;
};

}  // namespace pubsub_test
