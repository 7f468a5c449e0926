// A small, strict JSON (RFC 8259) parser producing a lightweight DOM, and a
// JSON string escaper for building JSON output.
//
// Parser rules (strict on purpose: the input is untrusted, e.g. JWT claims):
// - exactly one value, surrounded only by JSON whitespace (space, tab, LF, CR);
//   no BOM, no comments, no trailing commas, no NaN/Infinity, no leading zeros;
// - strings must be valid UTF-8 (no overlong forms, no encoded surrogates, nothing
//   above U+10FFFF) without raw control characters; \u escapes are decoded, a
//   surrogate pair gives one code point, a lone surrogate is an error;
// - numbers must fit in a double (an overflowing literal such as 1e400 is an
//   error; underflow to zero is not);
// - duplicate member names in one object are an error by default (RFC 7515
//   asks JWT consumers to reject them or take the last one; we reject);
// - nesting depth and input size are limited (ParseOptions).
//
// Nothing here throws: parse() and appendJsonString() catch std::bad_alloc and
// report it as an error. Each Value remembers the byte span of its own source
// text, so a sub-value can be re-emitted verbatim (Document::raw()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pubsub {
namespace json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Member;

class Value {
public:
    Type type() const { return type_; }
    bool isNull() const { return type_ == Type::Null; }
    bool isBool() const { return type_ == Type::Bool; }
    bool isNumber() const { return type_ == Type::Number; }
    bool isString() const { return type_ == Type::String; }
    bool isArray() const { return type_ == Type::Array; }
    bool isObject() const { return type_ == Type::Object; }

    // Accessors return a neutral value (false, 0, empty) for the wrong type.
    bool asBool() const { return type_ == Type::Bool && bool_; }
    double asNumber() const { return type_ == Type::Number ? number_ : 0.0; }
    // The decoded string (escapes resolved, UTF-8).
    const std::string& asString() const { return string_; }
    const std::vector<Value>& items() const { return items_; }
    const std::vector<Member>& members() const { return members_; }

    // The member named `key` of an object, or nullptr (also for non-objects).
    const Value* find(std::string_view key) const;

    // Byte span of this value in the parsed text (see Document::raw()).
    std::size_t rawOffset() const { return rawOffset_; }
    std::size_t rawLength() const { return rawLength_; }

private:
    friend class Parser;

    Type type_ = Type::Null;
    bool bool_ = false;
    double number_ = 0.0;
    std::string string_;
    std::vector<Value> items_;
    std::vector<Member> members_;
    std::size_t rawOffset_ = 0;
    std::size_t rawLength_ = 0;
};

struct Member {
    std::string key;  // decoded
    Value value;
};

struct ParseOptions {
    std::size_t maxDepth = 64;          // arrays/objects nested deeper: error
    std::size_t maxSize = 1024 * 1024;  // longer input text: error
    bool allowDuplicateKeys = false;    // when true, find() returns the first
};

struct ParseResult;

struct ParseError {
    std::size_t offset = 0;  // byte offset in the input where the problem is
    std::string message;     // short, e.g. "invalid escape in string"
};

// A parsed document: owns a copy of the text and the root value.
class Document {
public:
    const Value& root() const { return root_; }
    std::string_view text() const { return text_; }
    // The exact source text of `value` (which must belong to this document).
    std::string_view raw(const Value& value) const {
        return std::string_view(text_).substr(value.rawOffset(), value.rawLength());
    }

private:
    friend ParseResult parse(std::string_view, const ParseOptions&) noexcept;
    std::string text_;
    Value root_;
};

struct ParseResult {
    std::optional<Document> document;  // set on success
    ParseError error;                  // set on failure
    explicit operator bool() const { return document.has_value(); }
};

// Parses `text`. Never throws.
ParseResult parse(std::string_view text, const ParseOptions& options = {}) noexcept;

// Appends `text` to `out` as a quoted JSON string: `"` and `\` escaped, control
// characters as \b \f \n \r \t or \u00XX, U+2028/U+2029 as \u2028/\u2029 (safe
// inside JavaScript too); invalid UTF-8 bytes become U+FFFD, so the output is
// always valid JSON. Returns false (and leaves `out` as it was) only when memory
// runs out. Never throws.
bool appendJsonString(std::string& out, std::string_view text) noexcept;

}  // namespace json

// Convenience alias so callers can write pubsub::appendJsonString(...).
using json::appendJsonString;

}  // namespace pubsub
