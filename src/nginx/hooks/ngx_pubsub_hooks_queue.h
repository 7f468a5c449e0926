/*
 * ngx_pubsub hooks: at-least-once delivery (ngx_pubsub_hooks_queue.cpp,
 * docs/hooks.md "Delivery: at least once").
 */

#ifndef _NGX_PUBSUB_HOOKS_QUEUE_H_INCLUDED_
#define _NGX_PUBSUB_HOOKS_QUEUE_H_INCLUDED_

#include "ngx_pubsub_hooks_internal.h"

#include <string_view>


/* configuration: the zone "ngx_pubsub_hooks" of `size` bytes */
ngx_int_t ngx_pubsub_hookq_conf(ngx_conf_t *cf, size_t size);

ngx_int_t ngx_pubsub_hookq_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_hookq_exit_process(ngx_cycle_t *cycle);

/*
 * Queues the hook `kind` described by `q` (its uri, args, headers, ...;
 * its server by q->conf; a POST when `ct` is not empty) for
 * at-least-once delivery, sent at once when possible.  Hooks of the same
 * kind, URI and non-empty `order` reach the backend in the order queued.
 * Nothing of `q` is kept.  A full queue sends the hook once (logged).
 */
ngx_int_t ngx_pubsub_hookq_push(ngx_uint_t kind,
    const ngx_pubsub_hook_req_t *q, ngx_str_t body, ngx_str_t ct,
    std::string_view order);

#endif /* _NGX_PUBSUB_HOOKS_QUEUE_H_INCLUDED_ */
