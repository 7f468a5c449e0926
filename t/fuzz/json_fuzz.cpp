// The JSON parser (JWT claims, presence info): parse() with fuzzed limits.
// A parsed document is written back out and must parse to the same tree;
// raw() spans must lie in the text; appendJsonString() must always produce
// a JSON string that decodes to the input (when the input is UTF-8).
#include <cmath>
#include <cstdio>
#include <string>

#include "fuzz_util.h"
#include "pubsub/codec/json.h"
#include "pubsub/codec/utf8.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

bool write(const json::Value& v, std::string& out) {
    switch (v.type()) {
    case json::Type::Null:
        out += "null";
        return true;
    case json::Type::Bool:
        out += v.asBool() ? "true" : "false";
        return true;
    case json::Type::Number: {
        char buf[64];
        check(std::isfinite(v.asNumber()), "non-finite number");
        std::snprintf(buf, sizeof buf, "%.17g", v.asNumber());
        out += buf;
        return true;
    }
    case json::Type::String:
        return appendJsonString(out, v.asString());
    case json::Type::Array:
        out += '[';
        for (size_t i = 0; i < v.items().size(); i++) {
            if (i > 0) {
                out += ',';
            }
            if (!write(v.items()[i], out)) {
                return false;
            }
        }
        out += ']';
        return true;
    case json::Type::Object:
        out += '{';
        for (size_t i = 0; i < v.members().size(); i++) {
            if (i > 0) {
                out += ',';
            }
            if (!appendJsonString(out, v.members()[i].key)) {
                return false;
            }
            out += ':';
            if (!write(v.members()[i].value, out)) {
                return false;
            }
        }
        out += '}';
        return true;
    }
    return false;
}

bool same(const json::Value& a, const json::Value& b) {
    if (a.type() != b.type()) {
        return false;
    }
    switch (a.type()) {
    case json::Type::Null:
        return true;
    case json::Type::Bool:
        return a.asBool() == b.asBool();
    case json::Type::Number:
        return a.asNumber() == b.asNumber();
    case json::Type::String:
        return a.asString() == b.asString();
    case json::Type::Array:
        if (a.items().size() != b.items().size()) {
            return false;
        }
        for (size_t i = 0; i < a.items().size(); i++) {
            if (!same(a.items()[i], b.items()[i])) {
                return false;
            }
        }
        return true;
    case json::Type::Object:
        if (a.members().size() != b.members().size()) {
            return false;
        }
        for (size_t i = 0; i < a.members().size(); i++) {
            if (a.members()[i].key != b.members()[i].key ||
                !same(a.members()[i].value, b.members()[i].value)) {
                return false;
            }
        }
        return true;
    }
    return false;
}

void checkSpans(const json::Document& doc, const json::Value& v) {
    check(v.rawOffset() + v.rawLength() <= doc.text().size(), "raw span outside the text");
    check(v.rawLength() > 0, "empty raw span");
    if (v.isString()) {
        check(isValidUtf8(v.asString()), "string is not UTF-8");
    }
    for (const auto& item : v.items()) {
        checkSpans(doc, item);
    }
    for (const auto& m : v.members()) {
        check(isValidUtf8(m.key), "key is not UTF-8");
        checkSpans(doc, m.value);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input in(data, size);
    uint8_t opt = in.byte();
    std::string_view text = in.rest();

    json::ParseOptions options;
    options.maxDepth = 1 + (opt & 63);
    options.allowDuplicateKeys = (opt & 64) != 0;
    json::ParseResult r = json::parse(text, options);
    if (r) {
        const json::Document& doc = *r.document;
        checkSpans(doc, doc.root());
        check(doc.raw(doc.root()).size() <= text.size(), "root span");
        std::string again;
        check(write(doc.root(), again), "write");
        json::ParseResult r2 = json::parse(again, options);
        check(static_cast<bool>(r2), "written document does not parse");
        check(same(doc.root(), r2.document->root()), "written document differs");
    } else {
        check(!r.error.message.empty(), "no error message");
        check(r.error.offset <= text.size(), "error offset");
    }

    std::string quoted;
    check(appendJsonString(quoted, text), "appendJsonString");
    json::ParseResult s = json::parse(quoted);
    check(s && s.document->root().isString(), "escaped string does not parse");
    if (isValidUtf8(text)) {
        check(s.document->root().asString() == text, "escaped string round trip");
    }
    return 0;
}
