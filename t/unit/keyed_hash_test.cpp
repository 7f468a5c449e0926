#include "pubsub/keyed_hash.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "fnv_collide.h"

namespace {

using pubsub::HashKey;
using pubsub::keyedHash;
using pubsub::sipHash24;
using pubsub::SipHasher;

// The key 00 01 .. 0f of the SipHash paper's test vectors.
HashKey paperKey() {
    return HashKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
}

std::string bytes(size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++) {
        s.push_back(static_cast<char>(i));
    }
    return s;
}

// OpenSSL's SipHash-2-4 with an 8-byte output, as a second opinion.
uint64_t opensslSipHash(const HashKey& k, const std::string& data) {
    unsigned char key[16];
    for (int i = 0; i < 8; i++) {
        key[i] = static_cast<unsigned char>(k.k0 >> (8 * i));
        key[8 + i] = static_cast<unsigned char>(k.k1 >> (8 * i));
    }
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
    EXPECT_NE(mac, nullptr);
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    unsigned int size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    unsigned char out[8] = {};
    size_t outLen = 0;
    EXPECT_EQ(EVP_MAC_init(ctx, key, sizeof(key), params), 1);
    EXPECT_EQ(EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()),
              1);
    EXPECT_EQ(EVP_MAC_final(ctx, out, &outLen, sizeof(out)), 1);
    EXPECT_EQ(outLen, 8u);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | out[i];
    }
    return v;
}

TEST(KeyedHashTest, PaperTestVectors) {
    EXPECT_EQ(sipHash24(paperKey(), "", 0), 0x726fdb47dd0e0e31ULL);
    std::string fifteen = bytes(15);
    EXPECT_EQ(sipHash24(paperKey(), fifteen.data(), fifteen.size()), 0xa129ca6149be45e5ULL);
}

TEST(KeyedHashTest, SameAsOpenSsl) {
    std::mt19937_64 rng(7);
    for (size_t len = 0; len < 80; len++) {
        HashKey k{rng(), rng()};
        std::string s;
        for (size_t i = 0; i < len; i++) {
            s.push_back(static_cast<char>(rng()));
        }
        EXPECT_EQ(keyedHash(k, s), opensslSipHash(k, s)) << "length " << len;
    }
}

TEST(KeyedHashTest, PiecesHashLikeTheWhole) {
    std::string s = bytes(40);
    for (size_t a = 0; a <= s.size(); a++) {
        for (size_t b = a; b <= s.size(); b += 3) {
            SipHasher h(paperKey());
            h.update(std::string_view(s).substr(0, a));
            h.update(std::string_view(s).substr(a, b - a));
            h.update(std::string_view(s).substr(b));
            EXPECT_EQ(h.finish(), sipHash24(paperKey(), s.data(), s.size())) << a << "," << b;
        }
    }
    SipHasher empty(paperKey());
    EXPECT_EQ(empty.finish(), 0x726fdb47dd0e0e31ULL);
}

TEST(KeyedHashTest, TheKeyChangesEveryHash) {
    HashKey a = pubsub::randomHashKey();
    HashKey b = pubsub::randomHashKey();
    EXPECT_FALSE(a.k0 == b.k0 && a.k1 == b.k1);
    int same = 0;
    for (int i = 0; i < 100; i++) {
        std::string id = "channel-" + std::to_string(i);
        same += keyedHash(a, id) == keyedHash(b, id);
    }
    EXPECT_EQ(same, 0);
    // One key per process, always the same.
    const HashKey& p = pubsub::processHashKey();
    EXPECT_EQ(&p, &pubsub::processHashKey());
    EXPECT_EQ(pubsub::KeyedStringHash()("x"), keyedHash(p, "x"));
}

TEST(KeyedHashTest, FnvCollidingIdsSpreadOut) {
    std::vector<std::string> ids = pubsub_test::fnvCollidingIds(4096);
    ASSERT_EQ(ids.size(), 4096u);
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
    // All in one bucket of FNV-1a (the low 32 bits agree)...
    for (const std::string& id : ids) {
        ASSERT_EQ(pubsub_test::fnv1a(id) & 0xffffffffULL,
                  pubsub_test::fnv1a(ids[0]) & 0xffffffffULL);
    }
    // ... but not with a keyed hash: 4096 ids in 4096 buckets.
    HashKey k = pubsub::randomHashKey();
    std::unordered_map<uint64_t, int> load;
    int longest = 0;
    for (const std::string& id : ids) {
        int n = ++load[keyedHash(k, id) % 4096];
        longest = n > longest ? n : longest;
    }
    EXPECT_LT(longest, 12);
}

}  // namespace
