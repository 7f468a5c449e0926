#include "pubsub/keyed_hash.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace pubsub {

namespace {

inline uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

inline uint64_t load64le(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

struct SipState {
    uint64_t v0, v1, v2, v3;

    explicit SipState(const HashKey& k)
        : v0(k.k0 ^ 0x736f6d6570736575ULL),
          v1(k.k1 ^ 0x646f72616e646f6dULL),
          v2(k.k0 ^ 0x6c7967656e657261ULL),
          v3(k.k1 ^ 0x7465646279746573ULL) {}

    void round() {
        v0 += v1;
        v1 = rotl(v1, 13);
        v1 ^= v0;
        v0 = rotl(v0, 32);
        v2 += v3;
        v3 = rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = rotl(v1, 17);
        v1 ^= v2;
        v2 = rotl(v2, 32);
    }

    void word(uint64_t m) {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }

    uint64_t finish(uint64_t last) {
        word(last);
        v2 ^= 0xff;
        round();
        round();
        round();
        round();
        return v0 ^ v1 ^ v2 ^ v3;
    }
};

}  // namespace

uint64_t sipHash24(const HashKey& key, const void* data, size_t len) {
    SipState s(key);
    const auto* p = static_cast<const unsigned char*>(data);
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++, p += 8) {
        s.word(load64le(p));
    }
    uint64_t last = static_cast<uint64_t>(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++) {
        last |= static_cast<uint64_t>(p[i]) << (8 * i);
    }
    return s.finish(last);
}

SipHasher::SipHasher(const HashKey& key) {
    SipState s(key);
    v0_ = s.v0;
    v1_ = s.v1;
    v2_ = s.v2;
    v3_ = s.v3;
}

void SipHasher::update(const void* data, size_t len) {
    if (len == 0) {
        return;
    }
    SipState s(HashKey{});
    s.v0 = v0_;
    s.v1 = v1_;
    s.v2 = v2_;
    s.v3 = v3_;
    const auto* p = static_cast<const unsigned char*>(data);
    total_ += len;
    while (len > 0 && tailLen_ != 0) {
        tail_ |= static_cast<uint64_t>(*p++) << (8 * tailLen_);
        len--;
        if (++tailLen_ == 8) {
            s.word(tail_);
            tail_ = 0;
            tailLen_ = 0;
        }
    }
    for (; len >= 8; len -= 8, p += 8) {
        s.word(load64le(p));
    }
    for (; len > 0; len--) {
        tail_ |= static_cast<uint64_t>(*p++) << (8 * tailLen_++);
    }
    v0_ = s.v0;
    v1_ = s.v1;
    v2_ = s.v2;
    v3_ = s.v3;
}

uint64_t SipHasher::finish() const {
    SipState s(HashKey{});
    s.v0 = v0_;
    s.v1 = v1_;
    s.v2 = v2_;
    s.v3 = v3_;
    return s.finish(tail_ | (static_cast<uint64_t>(total_ & 0xff) << 56));
}

HashKey randomHashKey() {
    unsigned char buf[16] = {};
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t n = getrandom(buf + got, sizeof(buf) - got, GRND_NONBLOCK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<size_t>(n);
    }
    if (got < sizeof(buf)) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            while (got < sizeof(buf)) {
                ssize_t n = read(fd, buf + got, sizeof(buf) - got);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    break;
                }
                got += static_cast<size_t>(n);
            }
            close(fd);
        }
    }
    HashKey k;
    k.k0 = load64le(buf);
    k.k1 = load64le(buf + 8);
    if (got < sizeof(buf)) {
        // No kernel generator: not secret, but not the same in every
        // process either.
        uint64_t t = static_cast<uint64_t>(
            std::chrono::high_resolution_clock::now().time_since_epoch().count());
        HashKey mix{t, static_cast<uint64_t>(getpid())};
        uint64_t addr = reinterpret_cast<uintptr_t>(&k);
        k.k0 ^= sipHash24(mix, &addr, sizeof(addr));
        k.k1 ^= sipHash24(mix, &t, sizeof(t));
    }
    return k;
}

const HashKey& processHashKey() {
    static const HashKey key = randomHashKey();
    return key;
}

}  // namespace pubsub
