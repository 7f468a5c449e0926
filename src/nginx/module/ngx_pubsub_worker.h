/*
 * ngx_pubsub: the worker's root object.
 *
 * What one worker process keeps between requests - the memory engine's
 * handle and wake-ups, the presence timers, queued channel events, the
 * WebSocket flush list and caches - hangs off this one object: made in init_process (ngx_pubsub_module.cpp) before any
 * request, destroyed in exit_process after every subsystem has stopped, in
 * the reverse order.  It is NULL in the master process, during
 * configuration and after exit, so late callbacks can tell.  No object
 * with a destructor lives at namespace scope (it would run in the master
 * and in every exiting process): each subsystem keeps its state in a
 * struct of its own, allocated by its init and freed by its exit.
 */

#ifndef _NGX_PUBSUB_WORKER_H_INCLUDED_
#define _NGX_PUBSUB_WORKER_H_INCLUDED_

#include "ngx_pubsub.h"


struct ngx_pubsub_chev_worker_t;     /* events/ngx_pubsub_chevents.cpp */
struct ngx_pubsub_ws_worker_t;       /* transport/ngx_pubsub_ws.h */


struct ngx_pubsub_worker_t {
    ngx_pubsub_chev_worker_t    *chev;
    ngx_pubsub_ws_worker_t      *ws;
};


extern ngx_pubsub_worker_t  *ngx_pubsub_worker;


/* each subsystem's state: NULL outside a running worker */
#define ngx_pubsub_worker_part(part)                                          \
    (ngx_pubsub_worker ? ngx_pubsub_worker->part : NULL)


#endif /* _NGX_PUBSUB_WORKER_H_INCLUDED_ */
