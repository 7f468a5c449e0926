#include "pubsub/codec/deflate.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace pubsub::ws {

namespace {

constexpr size_t kChunk = 16384;
constexpr uint8_t kSyncTail[4] = {0x00, 0x00, 0xff, 0xff};

int clampBits(int bits, int lo) {
    return std::min(15, std::max(lo, bits));
}

}  // namespace

void reserveBounded(std::string& s, size_t need, size_t cap) {
    if (need <= s.capacity()) {
        return;
    }
    size_t newCap = std::max(need, s.capacity() * 2);
    if (cap != 0 && newCap > cap) {
        newCap = std::max(need, cap);
        // reserve() on a string that already has room may round the request
        // up to twice its old capacity (libstdc++ does), past the limit: grow
        // into a fresh string, which gets exactly what is asked.
        std::string grown;
        grown.reserve(newCap);
        grown.append(s);
        s.swap(grown);
        return;
    }
    s.reserve(newCap);
}

// ---------------------------------------------------------------- Inflater

struct Inflater::State {
    z_stream z{};
    uint8_t out[kChunk];
};

Inflater::Inflater(int windowBits, bool noContextTakeover)
    // A window larger than the peer's is always safe; 9 also covers peers
    // whose zlib silently turns 8 into 9.
    : windowBits_(clampBits(windowBits, 9)), noContextTakeover_(noContextTakeover) {}

Inflater::~Inflater() {
    if (st_) {
        inflateEnd(&st_->z);
    }
}

void Inflater::reset() {
    fedThisMessage_ = false;
    if (st_ && !broken_) {
        inflateReset(&st_->z);
    }
}

InflateStatus Inflater::run(const uint8_t* data, size_t len, std::string& out, size_t maxOut) {
    if (broken_ || len > 0x7fffffffU) {  // zlib counts in uInt; callers feed chunks
        broken_ = true;
        return InflateStatus::Corrupt;
    }
    if (!st_) {
        st_.reset(new (std::nothrow) State);
        if (!st_) {
            return InflateStatus::NoMemory;
        }
        if (inflateInit2(&st_->z, -windowBits_) != Z_OK) {
            st_.reset();
            return InflateStatus::NoMemory;
        }
    }
    z_stream& z = st_->z;
    z.next_in = const_cast<Bytef*>(data);
    z.avail_in = static_cast<uInt>(len);
    try {
        for (;;) {
            z.next_out = st_->out;
            z.avail_out = kChunk;
            uInt inBefore = z.avail_in;
            int rc = ::inflate(&z, Z_SYNC_FLUSH);
            size_t produced = kChunk - z.avail_out;
            if (produced > 0) {
                if (maxOut != 0 && out.size() + produced > maxOut) {
                    broken_ = true;
                    return InflateStatus::TooBig;
                }
                reserveBounded(out, out.size() + produced, maxOut);
                out.append(reinterpret_cast<const char*>(st_->out), produced);
            }
            if (rc == Z_STREAM_END) {
                // A block with BFINAL=1 (RFC 7692 7.2.3.4): start a new raw
                // stream, keeping the window when context is taken over.
                if (noContextTakeover_) {
                    inflateReset(&z);
                } else {
                    uint8_t dict[32768];
                    uInt dictLen = sizeof(dict);
                    if (inflateGetDictionary(&z, dict, &dictLen) != Z_OK) {
                        broken_ = true;
                        return InflateStatus::Corrupt;
                    }
                    inflateReset(&z);
                    if (dictLen > 0 && inflateSetDictionary(&z, dict, dictLen) != Z_OK) {
                        broken_ = true;
                        return InflateStatus::Corrupt;
                    }
                }
                if (z.avail_in == 0) {
                    return InflateStatus::Ok;
                }
                continue;
            }
            if (rc == Z_OK) {
                if (z.avail_in == 0 && z.avail_out != 0) {
                    return InflateStatus::Ok;
                }
                if (produced > 0 || z.avail_in != inBefore) {
                    continue;
                }
                // No progress with input left: fall through to Corrupt.
            } else if (rc == Z_BUF_ERROR && z.avail_in == 0) {
                return InflateStatus::Ok;  // nothing more to do with this input
            }
            broken_ = true;
            return rc == Z_MEM_ERROR ? InflateStatus::NoMemory : InflateStatus::Corrupt;
        }
    } catch (const std::bad_alloc&) {
        broken_ = true;
        return InflateStatus::NoMemory;
    }
}

InflateStatus Inflater::feed(const uint8_t* data, size_t len, std::string& out, size_t maxOut) {
    if (len == 0) {
        return broken_ ? InflateStatus::Corrupt : InflateStatus::Ok;
    }
    fedThisMessage_ = true;
    return run(data, len, out, maxOut);
}

InflateStatus Inflater::finish(std::string& out, size_t maxOut) {
    if (!fedThisMessage_) {
        // An empty compressed payload: an empty message. Feeding 00 00 ff ff
        // alone would leave zlib inside an unfinished stored-block header.
        return broken_ ? InflateStatus::Corrupt : InflateStatus::Ok;
    }
    fedThisMessage_ = false;
    InflateStatus s = run(kSyncTail, sizeof(kSyncTail), out, maxOut);
    if (s == InflateStatus::Ok && noContextTakeover_) {
        inflateReset(&st_->z);
    }
    return s;
}

InflateStatus Inflater::inflateMessage(std::string_view in, std::string& out, size_t maxOut) {
    InflateStatus s = feed(reinterpret_cast<const uint8_t*>(in.data()), in.size(), out, maxOut);
    if (s != InflateStatus::Ok) {
        return s;
    }
    return finish(out, maxOut);
}

// ---------------------------------------------------------------- Deflater

struct Deflater::State {
    z_stream z{};
    uint8_t out[kChunk];
};

Deflater::Deflater(const DeflateOptions& opts, bool noContextTakeover)
    : opts_(opts), noContextTakeover_(noContextTakeover) {
    opts_.windowBits = clampBits(opts_.windowBits, 9);
    opts_.level = std::min(9, std::max(0, opts_.level));
    opts_.memLevel = std::min(9, std::max(1, opts_.memLevel));
    if (opts_.strategy < 0 || opts_.strategy > Z_FIXED) {
        opts_.strategy = Z_DEFAULT_STRATEGY;
    }
}

Deflater::~Deflater() {
    if (st_) {
        deflateEnd(&st_->z);
    }
}

void Deflater::resetContext() {
    if (st_ && !broken_) {
        deflateReset(&st_->z);
    }
}

bool Deflater::deflateMessage(std::string_view in, std::string& out) {
    return deflateMessage(&in, 1, out);
}

bool Deflater::deflateMessage(const std::string_view* parts, size_t count, std::string& out) {
    if (broken_) {
        return false;
    }
    size_t start = out.size();
    size_t total = 0;
    for (size_t i = 0; i < count; ++i) {
        if (parts[i].size() > 0x7fffffffU) {
            return false;  // zlib counts in uInt
        }
        total += parts[i].size();
    }
    try {
        if (total == 0) {
            // RFC 7692 7.2.3.6: an empty message is the single byte 0x00 (an
            // empty stored block once the receiver appends 00 00 ff ff).
            out.push_back('\0');
            return true;
        }
        if (!st_) {
            st_.reset(new (std::nothrow) State);
            if (!st_) {
                return false;
            }
            if (deflateInit2(&st_->z, opts_.level, Z_DEFLATED, -opts_.windowBits, opts_.memLevel,
                             opts_.strategy) != Z_OK) {
                st_.reset();
                return false;
            }
        }
        z_stream& z = st_->z;
        size_t last = count;
        while (last > 0 && parts[last - 1].empty()) {
            --last;
        }
        for (size_t i = 0; i < last; ++i) {
            z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(parts[i].data()));
            z.avail_in = static_cast<uInt>(parts[i].size());
            int flush = (i + 1 == last) ? Z_SYNC_FLUSH : Z_NO_FLUSH;
            for (;;) {
                z.next_out = st_->out;
                z.avail_out = kChunk;
                int rc = ::deflate(&z, flush);
                if (rc != Z_OK && rc != Z_BUF_ERROR) {
                    broken_ = true;
                    out.resize(start);
                    return false;
                }
                out.append(reinterpret_cast<const char*>(st_->out), kChunk - z.avail_out);
                if (z.avail_out != 0 && z.avail_in == 0) {
                    break;
                }
                if (rc == Z_BUF_ERROR && z.avail_out == kChunk) {
                    broken_ = true;  // no progress possible
                    out.resize(start);
                    return false;
                }
            }
        }
        size_t produced = out.size() - start;
        if (produced < 4 || std::memcmp(out.data() + out.size() - 4, kSyncTail, 4) != 0) {
            broken_ = true;
            out.resize(start);
            return false;
        }
        out.resize(out.size() - 4);
        if (noContextTakeover_) {
            deflateReset(&z);
        }
        return true;
    } catch (const std::bad_alloc&) {
        broken_ = true;
        out.resize(std::min(out.size(), start));
        return false;
    }
}

bool deflateNoContext(std::string_view in, std::string& out, const DeflateOptions& opts,
                      bool keepSyncTail) {
    Deflater d(opts, true);
    if (!d.deflateMessage(in, out)) {
        return false;
    }
    if (keepSyncTail) {
        try {
            out.append(reinterpret_cast<const char*>(kSyncTail), sizeof(kSyncTail));
        } catch (const std::bad_alloc&) {
            return false;
        }
    }
    return true;
}

}  // namespace pubsub::ws
