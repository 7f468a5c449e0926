// Unit tests for the strict JSON parser and the JSON string escaper.
#include "pubsub/codec/json.h"

#include <gtest/gtest.h>

#include <string>

namespace pubsub {
namespace json {
namespace {

Document parseOk(std::string_view text, const ParseOptions& options = {}) {
    ParseResult r = parse(text, options);
    EXPECT_TRUE(r) << "input: " << text << " error: " << r.error.message << " at "
                   << r.error.offset;
    if (!r) {
        return parse("null").document.value();
    }
    return std::move(*r.document);
}

ParseError parseErr(std::string_view text, const ParseOptions& options = {}) {
    ParseResult r = parse(text, options);
    EXPECT_FALSE(r) << "input unexpectedly parsed: " << text;
    EXPECT_FALSE(r.error.message.empty());
    return r.error;
}

TEST(JsonParse, Scalars) {
    EXPECT_TRUE(parseOk("null").root().isNull());
    EXPECT_TRUE(parseOk("true").root().asBool());
    EXPECT_TRUE(parseOk("false").root().isBool());
    EXPECT_FALSE(parseOk("false").root().asBool());
    EXPECT_EQ(parseOk("42").root().asNumber(), 42.0);
    EXPECT_EQ(parseOk("-0").root().asNumber(), 0.0);
    EXPECT_EQ(parseOk("1.5e3").root().asNumber(), 1500.0);
    EXPECT_EQ(parseOk("-2.5E-2").root().asNumber(), -0.025);
    EXPECT_EQ(parseOk("1E+2").root().asNumber(), 100.0);
    EXPECT_EQ(parseOk("4102444800").root().asNumber(), 4102444800.0);
    EXPECT_EQ(parseOk("\"hi\"").root().asString(), "hi");
    EXPECT_EQ(parseOk(" \t\r\n 7 \n").root().asNumber(), 7.0);
}

TEST(JsonParse, WrongTypeAccessorsAreNeutral) {
    Document d = parseOk("\"x\"");
    EXPECT_EQ(d.root().asNumber(), 0.0);
    EXPECT_FALSE(d.root().asBool());
    EXPECT_TRUE(d.root().items().empty());
    EXPECT_EQ(d.root().find("x"), nullptr);
    EXPECT_TRUE(parseOk("5").root().asString().empty());
}

TEST(JsonParse, ObjectsArraysAndRawSpans) {
    const std::string text = R"( {"a": [1, 2 ,{"b":null}], "c" : {"d": "e f"}, "g":true} )";
    Document d = parseOk(text);
    const Value& root = d.root();
    ASSERT_TRUE(root.isObject());
    ASSERT_EQ(root.members().size(), 3u);
    EXPECT_EQ(root.members()[0].key, "a");
    const Value* a = root.find("a");
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->isArray());
    ASSERT_EQ(a->items().size(), 3u);
    EXPECT_EQ(a->items()[1].asNumber(), 2.0);
    EXPECT_TRUE(a->items()[2].find("b")->isNull());
    EXPECT_EQ(d.raw(*a), R"([1, 2 ,{"b":null}])");
    EXPECT_EQ(d.raw(*root.find("c")), R"({"d": "e f"})");
    EXPECT_EQ(d.raw(*root.find("c")->find("d")), R"("e f")");
    EXPECT_EQ(d.raw(root), R"({"a": [1, 2 ,{"b":null}], "c" : {"d": "e f"}, "g":true})");
    EXPECT_EQ(root.find("missing"), nullptr);
    EXPECT_TRUE(parseOk("{}").root().members().empty());
    EXPECT_TRUE(parseOk("[ ]").root().items().empty());
}

TEST(JsonParse, RawSpanSurvivesDocumentMove) {
    ParseResult r = parse(R"({"k":"v"})");
    ASSERT_TRUE(r);
    Document moved = std::move(*r.document);
    EXPECT_EQ(moved.raw(*moved.root().find("k")), "\"v\"");
}

TEST(JsonParse, StringEscapes) {
    EXPECT_EQ(parseOk(R"("a\"b\\c\/d\b\f\n\r\t")").root().asString(), "a\"b\\c/d\b\f\n\r\t");
    EXPECT_EQ(parseOk(R"("\u0041\u00e9\u20AC")").root().asString(), "A\xC3\xA9\xE2\x82\xAC");
    EXPECT_EQ(parseOk(R"("\u0000")").root().asString(), std::string(1, '\0'));
    // Surrogate pair -> U+1F600.
    EXPECT_EQ(parseOk(R"("\ud83d\ude00")").root().asString(), "\xF0\x9F\x98\x80");
    EXPECT_EQ(parseOk(R"("\uDBFF\uDFFF")").root().asString(), "\xF4\x8F\xBF\xBF");
}

TEST(JsonParse, BadEscapes) {
    EXPECT_EQ(parseErr(R"("\x")").message, "invalid escape in string");
    EXPECT_EQ(parseErr(R"("\u12")").message, "truncated \\u escape");
    EXPECT_EQ(parseErr(R"("\u12G4")").message, "invalid \\u escape");
    EXPECT_EQ(parseErr(R"("\ud83d")").message, "lone high surrogate in \\u escape");
    EXPECT_EQ(parseErr(R"("\ud83dx")").message, "lone high surrogate in \\u escape");
    EXPECT_EQ(parseErr(R"("\ud83d\u0041")").message, "lone high surrogate in \\u escape");
    EXPECT_EQ(parseErr(R"("\ude00")").message, "lone low surrogate in \\u escape");
    EXPECT_EQ(parseErr("\"abc\\").message, "unterminated string");
    EXPECT_EQ(parseErr("\"abc").message, "unterminated string");
}

TEST(JsonParse, Utf8Validation) {
    EXPECT_EQ(parseOk("\"Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x98\x80\"").root().asString(),
              "Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x98\x80");
    const char* bad[] = {
        "\"\xC0\x80\"",          // overlong NUL
        "\"\xC1\xBF\"",          // overlong
        "\"\xE0\x80\x80\"",      // overlong 3-byte
        "\"\xF0\x80\x80\x80\"",  // overlong 4-byte
        "\"\xED\xA0\x80\"",      // encoded surrogate U+D800
        "\"\xF4\x90\x80\x80\"",  // above U+10FFFF
        "\"\xF5\x80\x80\x80\"",  // invalid lead byte
        "\"\x80\"",              // lone continuation byte
        "\"\xC3\"",              // truncated sequence
        "\"\xE2\x82\"",          // truncated sequence
        "\"\xFF\"",
    };
    for (const char* text : bad) {
        ParseError e = parseErr(text);
        EXPECT_EQ(e.message, "invalid UTF-8 in string") << text;
        EXPECT_EQ(e.offset, 1u);
    }
}

TEST(JsonParse, ControlCharactersInStrings) {
    EXPECT_EQ(parseErr("\"a\nb\"").message, "control character in string");
    EXPECT_EQ(parseErr(std::string("\"a\0b\"", 5)).message, "control character in string");
    EXPECT_EQ(parseErr("\"a\tb\"").offset, 2u);
}

TEST(JsonParse, Numbers) {
    EXPECT_EQ(parseErr("01").message, "invalid number: leading zero");
    EXPECT_EQ(parseErr("-01").message, "invalid number: leading zero");
    EXPECT_EQ(parseErr("1.").message, "invalid number: expected a digit after '.'");
    EXPECT_EQ(parseErr("1.e5").message, "invalid number: expected a digit after '.'");
    EXPECT_EQ(parseErr("1e").message, "invalid number: expected a digit in exponent");
    EXPECT_EQ(parseErr("1e+").message, "invalid number: expected a digit in exponent");
    EXPECT_EQ(parseErr("-").message, "invalid number: expected a digit");
    EXPECT_EQ(parseErr("-a").message, "invalid number: expected a digit");
    parseErr(".5");
    parseErr("+1");
    parseErr("0x10");
    parseErr("NaN");
    parseErr("Infinity");
    parseErr("-Infinity");
    EXPECT_EQ(parseErr("1e400").message, "number out of range");
    EXPECT_EQ(parseErr("-1e400").message, "number out of range");
    EXPECT_EQ(parseErr(std::string(400, '9')).message, "number out of range");
    EXPECT_EQ(parseOk("1e-400").root().asNumber(), 0.0);
    EXPECT_EQ(parseOk("0.000000000000000000001e-400").root().asNumber(), 0.0);
    EXPECT_EQ(parseOk("123456789012345678901234567890").root().asNumber(), 1.2345678901234568e29);
    EXPECT_EQ(parseErr("1e99999999999999999999").message, "number out of range");
    EXPECT_EQ(parseOk("1e-99999999999999999999").root().asNumber(), 0.0);
}

TEST(JsonParse, Structure) {
    EXPECT_EQ(parseErr("").message, "unexpected end of input, expected a value");
    EXPECT_EQ(parseErr("   ").message, "unexpected end of input, expected a value");
    EXPECT_EQ(parseErr("[1,]").message, "unexpected character, expected a value");
    EXPECT_EQ(parseErr("{\"a\":1,}").message, "expected a string as member name");
    EXPECT_EQ(parseErr("{a:1}").message, "expected a string as member name");
    EXPECT_EQ(parseErr("{\"a\" 1}").message, "expected ':' after member name");
    EXPECT_EQ(parseErr("{\"a\":1 \"b\":2}").message, "expected ',' or '}' in object");
    EXPECT_EQ(parseErr("[1 2]").message, "expected ',' or ']' in array");
    EXPECT_EQ(parseErr("[1,2").message, "unexpected end of input in array");
    EXPECT_EQ(parseErr("{\"a\":1").message, "unexpected end of input in object");
    EXPECT_EQ(parseErr("tru").message, "invalid literal");
    EXPECT_EQ(parseErr("nul").message, "invalid literal");
    EXPECT_EQ(parseErr("truex").message, "unexpected data after the JSON value");
    EXPECT_EQ(parseErr("{} {}").message, "unexpected data after the JSON value");
    EXPECT_EQ(parseErr("1 2").offset, 2u);
    EXPECT_EQ(parseErr("\xEF\xBB\xBF{}").offset, 0u);  // BOM
    EXPECT_EQ(parseErr("// c\n{}").offset, 0u);        // comment
    EXPECT_EQ(parseErr("{\"a\":'x'}").offset, 5u);
    EXPECT_EQ(parseErr("[1,\v2]").offset, 3u);  // \v is not JSON whitespace
}

TEST(JsonParse, DepthLimit) {
    ParseOptions options;
    options.maxDepth = 5;
    EXPECT_TRUE(parse("[[[[[1]]]]]", options));
    EXPECT_EQ(parseErr("[[[[[[1]]]]]]", options).message, "nesting too deep");
    EXPECT_EQ(parseErr("[{\"a\":[{\"b\":[{}]}]}]", options).message, "nesting too deep");
    // Default limit: deep input fails cleanly, without exhausting the stack.
    const std::string deep(100000, '[');
    EXPECT_EQ(parseErr(deep).message, "nesting too deep");
    EXPECT_EQ(parseErr(deep).offset, 64u);
}

TEST(JsonParse, SizeLimit) {
    ParseOptions options;
    options.maxSize = 8;
    EXPECT_TRUE(parse("[1,2,3]", options));
    EXPECT_EQ(parseErr("[1,2,3,4]", options).message, "JSON text too large");
}

TEST(JsonParse, DuplicateKeys) {
    ParseError e = parseErr(R"({"a":1,"b":2,"a":3})");
    EXPECT_EQ(e.message, "duplicate member name");
    EXPECT_EQ(e.offset, 13u);
    // Escapes are compared decoded.
    EXPECT_EQ(parseErr(R"({"a":1,"\u0061":2})").message, "duplicate member name");
    // Large objects take the sorting path.
    std::string big = "{";
    for (int i = 0; i < 40; ++i) {
        big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    }
    const std::string bigOk = big + "\"last\":0}";
    EXPECT_TRUE(parse(bigOk));
    const std::string bigDup = big + "\"k7\":0}";
    e = parseErr(bigDup);
    EXPECT_EQ(e.message, "duplicate member name");
    EXPECT_EQ(e.offset, bigDup.rfind("\"k7\""));
    // Nested objects are separate scopes.
    EXPECT_TRUE(parse(R"({"a":{"a":1},"b":{"a":2}})"));

    ParseOptions lax;
    lax.allowDuplicateKeys = true;
    Document d = parseOk(R"({"a":1,"a":2})", lax);
    EXPECT_EQ(d.root().find("a")->asNumber(), 1.0);
}

std::string escaped(std::string_view s) {
    std::string out;
    EXPECT_TRUE(appendJsonString(out, s));
    return out;
}

TEST(JsonEscape, Basics) {
    EXPECT_EQ(escaped(""), "\"\"");
    EXPECT_EQ(escaped("plain text"), "\"plain text\"");
    EXPECT_EQ(escaped("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
    EXPECT_EQ(escaped("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
    EXPECT_EQ(escaped(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\x7f\"");
    EXPECT_EQ(escaped("Zo\xC3\xAB \xF0\x9F\x98\x80"), "\"Zo\xC3\xAB \xF0\x9F\x98\x80\"");
    EXPECT_EQ(escaped("\xE2\x80\xA8\xE2\x80\xA9"), "\"\\u2028\\u2029\"");
}

TEST(JsonEscape, AppendsToExistingText) {
    std::string out = "{\"k\":";
    ASSERT_TRUE(appendJsonString(out, "v"));
    out += "}";
    EXPECT_EQ(out, "{\"k\":\"v\"}");
    // The pubsub:: alias works too.
    std::string other;
    ASSERT_TRUE(pubsub::appendJsonString(other, "x"));
    EXPECT_EQ(other, "\"x\"");
}

TEST(JsonEscape, InvalidUtf8BecomesReplacementCharacter) {
    EXPECT_EQ(escaped("a\xFF"
                      "b"),
              "\"a\xEF\xBF\xBD"
              "b\"");
    EXPECT_EQ(escaped("\xC3"), "\"\xEF\xBF\xBD\"");  // truncated
    EXPECT_EQ(escaped("\xED\xA0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    EXPECT_EQ(escaped("\xC0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");  // overlong
}

TEST(JsonEscape, OutputAlwaysParsesBack) {
    std::string all;
    for (int i = 0; i < 256; ++i) {
        all.push_back(static_cast<char>(i));
    }
    all += "\xF0\x9F\x98\x80\xE2\x80\xA8 end";
    const std::string out = escaped(all);
    ParseResult r = parse(out);
    ASSERT_TRUE(r) << r.error.message << " at " << r.error.offset;
    const std::string& back = r.document->root().asString();
    // ASCII survives exactly; the 128 bytes 0x80..0xFF each became U+FFFD.
    EXPECT_EQ(back.substr(0, 128), all.substr(0, 128));
    EXPECT_EQ(back.size(), 128 + 128 * 3 + 4 + 3 + 4);
    EXPECT_EQ(back.substr(back.size() - 11), "\xF0\x9F\x98\x80\xE2\x80\xA8 end");
}

}  // namespace
}  // namespace json
}  // namespace pubsub
