/*
 * ngx_pubsub: presence in Redis locations, this instance's side (the
 * registry in ngx_pubsub_presence.cpp decides, this sends): the deltas of
 * an event loop turn go out together at its end, one script per channel;
 * the periodic refresh sends this instance's whole part of every channel
 * (redis.md#presence).  The presence API's queries are in
 * ngx_pubsub_redis_engine.cpp.
 */

#include "ngx_pubsub_redis_link.h"

#include <string>
#include <vector>


/* presence deltas of an event loop turn go out together, at its end */
static ngx_event_t  ngx_pubsub_redis_flush_ev;


/* an instance's part of a channel is valid for half the ttl: refreshed
 * every quarter, a dead instance's members leave within the ttl */
static uint64_t
ngx_pubsub_redis_valid_ms(uint32_t ttl)
{
    return ttl >= 2000 ? ttl / 2 : 1000;
}


static void
ngx_pubsub_redis_presence_flush(ngx_event_t *ev)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->store == NULL) {
            continue;
        }

        try {
            (void) ups[i]->store->presenceFlush();

        } catch (...) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "pubsub: redis presence update failed");
        }
    }
}


void
ngx_pubsub_redis_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance)
{
    ngx_pubsub_redis_upstream_t  *up;
    ngx_uint_t                    queued = 0;

    for (const pubsub::PresenceDelta &d : deltas) {
        up = ngx_pubsub_redis_upstream_at(d.redis - 1);
        if (up == NULL || up->store == NULL) {
            continue;
        }
        up->store->presenceDelta(instance, d,
            ngx_pubsub_redis_valid_ms(static_cast<uint32_t>(up->presence_ttl)));
        queued = 1;
    }

    if (queued && !ngx_pubsub_redis_flush_ev.posted) {
        ngx_pubsub_redis_flush_ev.handler =
            ngx_pubsub_redis_presence_flush;
        ngx_pubsub_redis_flush_ev.log = ngx_cycle->log;
        ngx_post_event(&ngx_pubsub_redis_flush_ev, &ngx_posted_events);
    }
}


/* how often this instance refreshes its presence parts (0: no presence
 * in any Redis location, or none of them connected in this worker) */
ngx_msec_t
ngx_pubsub_redis_presence_interval(void)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;
    ngx_msec_t                     ttl = 0;
    ngx_uint_t                     ready = 0;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->presence && (ttl == 0 || ups[i]->presence_ttl < ttl)) {
            ttl = ups[i]->presence_ttl;
        }
        if (ups[i]->presence && ups[i]->link && ups[i]->link->ready()) {
            ready = 1;
        }
    }

    /* a worker without Redis leaves the refresh to one that has it */
    return ttl && ready ? ngx_max(ttl / 4, 250) : 0;
}


void
ngx_pubsub_redis_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (ups[i]->store == NULL || !ups[i]->presence) {
            continue;
        }

        std::vector<pubsub::PresenceChannelSnapshot>  mine;

        for (const pubsub::PresenceChannelSnapshot &s : snaps) {
            if (s.redis == i + 1) {
                mine.push_back(s);
            }
        }

        ngx_msec_t ttl = ups[i]->presence_ttl;
        uint64_t valid = ngx_pubsub_redis_valid_ms(static_cast<uint32_t>(ttl));

        ups[i]->store->presenceRefresh(instance, mine, valid, ttl / 4);
    }
}


/* the worker exits: nothing more to send */
void
ngx_pubsub_redis_presence_exit(void)
{
    if (ngx_pubsub_redis_flush_ev.posted) {
        ngx_delete_posted_event(&ngx_pubsub_redis_flush_ev);
    }
}
