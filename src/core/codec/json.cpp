// Strict JSON parser and string escaper; see include/pubsub/json.h.
#include "pubsub/codec/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <new>
#include <system_error>
#include <utility>

#include "pubsub/codec/hex.h"

namespace pubsub {
namespace json {

namespace {

// Length of the well-formed UTF-8 sequence starting at p[0] (RFC 3629 table 3.9),
// or 0 when the bytes there are not one. `avail` >= 1.
std::size_t utf8SequenceLength(const unsigned char* p, std::size_t avail) {
    const unsigned char c = p[0];
    if (c < 0x80) {
        return 1;
    }
    auto cont = [&](std::size_t i, unsigned char lo, unsigned char hi) {
        return i < avail && p[i] >= lo && p[i] <= hi;
    };
    if (c >= 0xC2 && c <= 0xDF) {
        return cont(1, 0x80, 0xBF) ? 2 : 0;
    }
    if (c == 0xE0) {
        return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    }
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    }
    if (c == 0xED) {  // excludes UTF-16 surrogates U+D800..U+DFFF
        return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
    }
    if (c == 0xF0) {
        return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (c >= 0xF1 && c <= 0xF3) {
        return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (c == 0xF4) {
        return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    return 0;
}

void appendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

bool isDigit(char c) {
    return c >= '0' && c <= '9';
}

}  // namespace

const Value* Value::find(std::string_view key) const {
    if (type_ != Type::Object) {
        return nullptr;
    }
    for (const Member& m : members_) {
        if (m.key == key) {
            return &m.value;
        }
    }
    return nullptr;
}

// Recursive-descent parser. Recursion depth is bounded by options.maxDepth.
class Parser {
public:
    Parser(std::string_view text, const ParseOptions& options) : s_(text), opts_(options) {}

    bool parseDocument(Value& root) {
        skipWhitespace();
        if (!parseValue(root, 0)) {
            return false;
        }
        skipWhitespace();
        if (pos_ != s_.size()) {
            return fail("unexpected data after the JSON value");
        }
        return true;
    }

    const ParseError& error() const { return error_; }

private:
    bool fail(const char* message) { return failAt(pos_, message); }

    bool failAt(std::size_t offset, const char* message) {
        error_.offset = offset;
        error_.message = message;
        return false;
    }

    void skipWhitespace() {
        while (pos_ < s_.size()) {
            const char c = s_[pos_];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                break;
            }
            ++pos_;
        }
    }

    bool consumeLiteral(std::string_view word) {
        if (s_.substr(pos_, word.size()) != word) {
            return fail("invalid literal");
        }
        pos_ += word.size();
        return true;
    }

    bool parseValue(Value& v, std::size_t depth) {
        if (pos_ >= s_.size()) {
            return fail("unexpected end of input, expected a value");
        }
        const std::size_t start = pos_;
        bool ok = false;
        switch (s_[pos_]) {
            case '{':
                ok = parseObject(v, depth + 1);
                break;
            case '[':
                ok = parseArray(v, depth + 1);
                break;
            case '"':
                v.type_ = Type::String;
                ok = parseString(v.string_);
                break;
            case 't':
                v.type_ = Type::Bool;
                v.bool_ = true;
                ok = consumeLiteral("true");
                break;
            case 'f':
                v.type_ = Type::Bool;
                v.bool_ = false;
                ok = consumeLiteral("false");
                break;
            case 'n':
                v.type_ = Type::Null;
                ok = consumeLiteral("null");
                break;
            default:
                if (s_[pos_] == '-' || isDigit(s_[pos_])) {
                    v.type_ = Type::Number;
                    ok = parseNumber(v.number_);
                } else {
                    ok = fail("unexpected character, expected a value");
                }
                break;
        }
        if (ok) {
            v.rawOffset_ = start;
            v.rawLength_ = pos_ - start;
        }
        return ok;
    }

    bool parseObject(Value& v, std::size_t depth) {
        if (depth > opts_.maxDepth) {
            return fail("nesting too deep");
        }
        v.type_ = Type::Object;
        std::vector<std::size_t> keyOffsets;
        ++pos_;  // '{'
        skipWhitespace();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            if (pos_ >= s_.size() || s_[pos_] != '"') {
                return fail("expected a string as member name");
            }
            keyOffsets.push_back(pos_);
            v.members_.emplace_back();
            Member& m = v.members_.back();
            if (!parseString(m.key)) {
                return false;
            }
            skipWhitespace();
            if (pos_ >= s_.size() || s_[pos_] != ':') {
                return fail("expected ':' after member name");
            }
            ++pos_;
            skipWhitespace();
            if (!parseValue(m.value, depth)) {
                return false;
            }
            skipWhitespace();
            if (pos_ >= s_.size()) {
                return fail("unexpected end of input in object");
            }
            if (s_[pos_] == '}') {
                ++pos_;
                return opts_.allowDuplicateKeys || checkDuplicates(v.members_, keyOffsets);
            }
            if (s_[pos_] != ',') {
                return fail("expected ',' or '}' in object");
            }
            ++pos_;
            skipWhitespace();
        }
    }

    // Reports the first repeated member name (by position) as an error.
    bool checkDuplicates(const std::vector<Member>& members,
                         const std::vector<std::size_t>& keyOffsets) {
        const std::size_t n = members.size();
        if (n <= 16) {
            for (std::size_t j = 1; j < n; ++j) {
                for (std::size_t i = 0; i < j; ++i) {
                    if (members[i].key == members[j].key) {
                        return failAt(keyOffsets[j], "duplicate member name");
                    }
                }
            }
            return true;
        }
        std::vector<std::size_t> order(n);
        for (std::size_t i = 0; i < n; ++i) {
            order[i] = i;
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return members[a].key < members[b].key || (members[a].key == members[b].key && a < b);
        });
        std::size_t firstDup = n;
        for (std::size_t k = 1; k < n; ++k) {
            if (members[order[k - 1]].key == members[order[k]].key) {
                firstDup = std::min(firstDup, order[k]);
            }
        }
        if (firstDup != n) {
            return failAt(keyOffsets[firstDup], "duplicate member name");
        }
        return true;
    }

    bool parseArray(Value& v, std::size_t depth) {
        if (depth > opts_.maxDepth) {
            return fail("nesting too deep");
        }
        v.type_ = Type::Array;
        ++pos_;  // '['
        skipWhitespace();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            v.items_.emplace_back();
            if (!parseValue(v.items_.back(), depth)) {
                return false;
            }
            skipWhitespace();
            if (pos_ >= s_.size()) {
                return fail("unexpected end of input in array");
            }
            if (s_[pos_] == ']') {
                ++pos_;
                return true;
            }
            if (s_[pos_] != ',') {
                return fail("expected ',' or ']' in array");
            }
            ++pos_;
            skipWhitespace();
        }
    }

    bool parseHex4(std::uint32_t& out) {
        if (s_.size() - pos_ < 4) {
            return fail("truncated \\u escape");
        }
        std::uint32_t cp = 0;
        for (std::size_t i = 0; i < 4; ++i) {
            const int d = hexValue(s_[pos_ + i]);
            if (d < 0) {
                return fail("invalid \\u escape");
            }
            cp = (cp << 4) | static_cast<std::uint32_t>(d);
        }
        pos_ += 4;
        out = cp;
        return true;
    }

    // At '"'; decodes into `out` and leaves pos_ after the closing quote.
    bool parseString(std::string& out) {
        ++pos_;
        const auto* bytes = reinterpret_cast<const unsigned char*>(s_.data());
        for (;;) {
            // Copy a run of plain characters at once.
            std::size_t run = pos_;
            while (run < s_.size() && bytes[run] >= 0x20 && bytes[run] < 0x80 &&
                   bytes[run] != '"' && bytes[run] != '\\') {
                ++run;
            }
            out.append(s_.data() + pos_, run - pos_);
            pos_ = run;
            if (pos_ >= s_.size()) {
                return fail("unterminated string");
            }
            const unsigned char c = bytes[pos_];
            if (c == '"') {
                ++pos_;
                return true;
            }
            if (c < 0x20) {
                return fail("control character in string");
            }
            if (c >= 0x80) {
                const std::size_t n = utf8SequenceLength(bytes + pos_, s_.size() - pos_);
                if (n == 0) {
                    return fail("invalid UTF-8 in string");
                }
                out.append(s_.data() + pos_, n);
                pos_ += n;
                continue;
            }
            // Backslash escape.
            const std::size_t escOffset = pos_;
            ++pos_;
            if (pos_ >= s_.size()) {
                return fail("unterminated string");
            }
            const char e = s_[pos_++];
            switch (e) {
                case '"':
                case '\\':
                case '/':
                    out.push_back(e);
                    break;
                case 'b':
                    out.push_back('\b');
                    break;
                case 'f':
                    out.push_back('\f');
                    break;
                case 'n':
                    out.push_back('\n');
                    break;
                case 'r':
                    out.push_back('\r');
                    break;
                case 't':
                    out.push_back('\t');
                    break;
                case 'u': {
                    std::uint32_t cp = 0;
                    if (!parseHex4(cp)) {
                        return false;
                    }
                    if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        return failAt(escOffset, "lone low surrogate in \\u escape");
                    }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (s_.size() - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
                            return failAt(escOffset, "lone high surrogate in \\u escape");
                        }
                        pos_ += 2;
                        std::uint32_t low = 0;
                        if (!parseHex4(low)) {
                            return false;
                        }
                        if (low < 0xDC00 || low > 0xDFFF) {
                            return failAt(escOffset, "lone high surrogate in \\u escape");
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    appendUtf8(out, cp);
                    break;
                }
                default:
                    return failAt(escOffset, "invalid escape in string");
            }
        }
    }

    bool parseNumber(double& out) {
        const std::size_t start = pos_;
        if (s_[pos_] == '-') {
            ++pos_;
        }
        // Integer part: "0" or [1-9][0-9]*.
        if (pos_ >= s_.size() || !isDigit(s_[pos_])) {
            return fail("invalid number: expected a digit");
        }
        const std::size_t intStart = pos_;
        if (s_[pos_] == '0') {
            ++pos_;
            if (pos_ < s_.size() && isDigit(s_[pos_])) {
                return fail("invalid number: leading zero");
            }
        } else {
            while (pos_ < s_.size() && isDigit(s_[pos_])) {
                ++pos_;
            }
        }
        const std::size_t intEnd = pos_;
        std::size_t fracStart = pos_;
        std::size_t fracEnd = pos_;
        if (pos_ < s_.size() && s_[pos_] == '.') {
            ++pos_;
            fracStart = pos_;
            if (pos_ >= s_.size() || !isDigit(s_[pos_])) {
                return fail("invalid number: expected a digit after '.'");
            }
            while (pos_ < s_.size() && isDigit(s_[pos_])) {
                ++pos_;
            }
            fracEnd = pos_;
        }
        long long exponent = 0;
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            bool negative = false;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
                negative = s_[pos_] == '-';
                ++pos_;
            }
            if (pos_ >= s_.size() || !isDigit(s_[pos_])) {
                return fail("invalid number: expected a digit in exponent");
            }
            while (pos_ < s_.size() && isDigit(s_[pos_])) {
                if (exponent < 1000000000) {
                    exponent = exponent * 10 + (s_[pos_] - '0');
                }
                ++pos_;
            }
            if (negative) {
                exponent = -exponent;
            }
        }
        const char* first = s_.data() + start;
        const char* last = s_.data() + pos_;
        double value = 0.0;
        const auto res = std::from_chars(first, last, value);
        if (res.ec == std::errc() && res.ptr == last && std::isfinite(value)) {
            out = value;
            return true;
        }
        if (res.ec != std::errc::result_out_of_range && res.ec != std::errc()) {
            return failAt(start, "invalid number");
        }
        // Out of range: decide between overflow (an error) and underflow (zero)
        // from the decimal magnitude of the literal.
        long long magnitude = 0;
        std::size_t i = intStart;
        while (i < intEnd && s_[i] == '0') {
            ++i;
        }
        if (i < intEnd) {
            magnitude = static_cast<long long>(intEnd - i);
        } else {
            std::size_t j = fracStart;
            while (j < fracEnd && s_[j] == '0') {
                ++j;
            }
            magnitude = -static_cast<long long>(j - fracStart);
        }
        if (magnitude + exponent > 0) {
            return failAt(start, "number out of range");
        }
        out = s_[start] == '-' ? -0.0 : 0.0;
        return true;
    }

    std::string_view s_;
    const ParseOptions& opts_;
    std::size_t pos_ = 0;
    ParseError error_;
};

ParseResult parse(std::string_view text, const ParseOptions& options) noexcept {
    ParseResult result;
    try {
        if (text.size() > options.maxSize) {
            result.error.offset = options.maxSize;
            result.error.message = "JSON text too large";
            return result;
        }
        Document doc;
        doc.text_.assign(text.data(), text.size());
        Parser parser(doc.text_, options);
        if (!parser.parseDocument(doc.root_)) {
            result.error = parser.error();
            return result;
        }
        result.document.emplace(std::move(doc));
    } catch (...) {  // only std::bad_alloc can get here
        result.document.reset();
        result.error.offset = 0;
        try {
            result.error.message = "out of memory";  // fits the small-string buffer
        } catch (...) {
        }
    }
    return result;
}

bool appendJsonString(std::string& out, std::string_view text) noexcept {
    static const char kHex[] = "0123456789abcdef";
    const std::size_t oldSize = out.size();
    try {
        out.reserve(out.size() + text.size() + 2);
        out.push_back('"');
        const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
        std::size_t i = 0;
        while (i < text.size()) {
            std::size_t run = i;
            while (run < text.size() && bytes[run] >= 0x20 && bytes[run] < 0x80 &&
                   bytes[run] != '"' && bytes[run] != '\\') {
                ++run;
            }
            out.append(text.data() + i, run - i);
            i = run;
            if (i >= text.size()) {
                break;
            }
            const unsigned char c = bytes[i];
            if (c >= 0x80) {
                const std::size_t n = utf8SequenceLength(bytes + i, text.size() - i);
                if (n == 0) {
                    out.append("\xEF\xBF\xBD");  // U+FFFD for one invalid byte
                    ++i;
                } else if (n == 3 && c == 0xE2 && bytes[i + 1] == 0x80 &&
                           (bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9)) {
                    out.append(bytes[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
                    i += 3;
                } else {
                    out.append(text.data() + i, n);
                    i += n;
                }
                continue;
            }
            ++i;
            switch (c) {
                case '"':
                    out.append("\\\"");
                    break;
                case '\\':
                    out.append("\\\\");
                    break;
                case '\b':
                    out.append("\\b");
                    break;
                case '\f':
                    out.append("\\f");
                    break;
                case '\n':
                    out.append("\\n");
                    break;
                case '\r':
                    out.append("\\r");
                    break;
                case '\t':
                    out.append("\\t");
                    break;
                default: {
                    const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
                    out.append(esc, sizeof esc);
                    break;
                }
            }
        }
        out.push_back('"');
        return true;
    } catch (...) {
        out.resize(oldSize);  // shrinking never allocates
        return false;
    }
}

}  // namespace json
}  // namespace pubsub
