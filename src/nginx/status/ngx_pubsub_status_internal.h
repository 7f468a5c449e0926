/*
 * ngx_pubsub: what the status files share - the snapshot that
 * pubsub_status reads (ngx_pubsub_status.cpp) and its Prometheus text
 * exposition (ngx_pubsub_status_prom.cpp).
 */

#ifndef _NGX_PUBSUB_STATUS_INTERNAL_H_INCLUDED_
#define _NGX_PUBSUB_STATUS_INTERNAL_H_INCLUDED_

#include "ngx_pubsub.h"
#include "ngx_pubsub_hooks.h"

#include <string>


#define NGX_PUBSUB_STATS_MAGIC    0x50535354   /* "PSST" */
#define NGX_PUBSUB_STATS_VERSION  4
#define NGX_PUBSUB_TRANSPORTS     7
#define NGX_PUBSUB_HOOKS          6
#define NGX_PUBSUB_REDIS_COUNTERS  9

/* label and counter names, in the order of the snapshot's arrays */
extern const char  *ngx_pubsub_transport_names[NGX_PUBSUB_TRANSPORTS];
extern const char  *ngx_pubsub_hook_labels[NGX_PUBSUB_HOOKS];
extern const char  *ngx_pubsub_redis_counter_names[NGX_PUBSUB_REDIS_COUNTERS];
extern const char  *ngx_pubsub_redis_counter_help[NGX_PUBSUB_REDIS_COUNTERS];


typedef struct {
    uint64_t  channels;
    uint64_t  subscriptions;
    uint64_t  messages;
    uint64_t  message_bytes;
    uint64_t  published;
    uint64_t  shm_size;
    uint64_t  shm_used;
    uint64_t  shm_free;
    uint64_t  pages_total;
    uint64_t  pages_free;
    uint64_t  workers;
    uint64_t  subscribers[NGX_PUBSUB_TRANSPORTS];
    uint64_t  subscribers_total;
    uint64_t  redis_links;
    uint64_t  redis_ready;
    uint64_t  redis_rtt_x8;          /* sum over workers of 8 x smoothed ms */
    uint64_t  redis_measured;        /* workers that measured a round trip */
    uint64_t  delivered;
    uint64_t  chev_published;
    uint64_t  chev_failed;
    uint64_t  redis_engine[NGX_PUBSUB_REDIS_COUNTERS];
    uint64_t  reloads;
    uint64_t  uptime;
    uint64_t  presence_members;
    uint64_t  presence_connections;
    uint64_t  generation;
    uint64_t  fresh_channels;        /* channels nobody published to */
    uint64_t  fresh_bytes;
    uint64_t  fresh_limit;
    uint64_t  fresh_refused;
    uint64_t  reclaimed;
    uint64_t  hook_calls[NGX_PUBSUB_HOOKS];
    uint64_t  hook_failures[NGX_PUBSUB_HOOKS];
    uint64_t  hook_refused;
    uint64_t  token_refused;
    uint64_t  hook_in_flight;
    ngx_pubsub_hook_queue_stats_t  hook_queue;
    /* the same, flat for the Prometheus table */
    uint64_t  hookq_pending;
    uint64_t  hookq_delivered;
    uint64_t  hookq_retried;
    uint64_t  hookq_given_up;
    uint64_t  hookq_dropped;
} ngx_pubsub_snapshot_t;


/* printf to the end of out (at most 255 bytes) */
void ngx_pubsub_append(std::string &out, const char *fmt, ...);

/* the Prometheus text exposition of a snapshot */
void ngx_pubsub_status_prometheus(std::string &o,
    const ngx_pubsub_snapshot_t *s);

#endif /* _NGX_PUBSUB_STATUS_INTERNAL_H_INCLUDED_ */
