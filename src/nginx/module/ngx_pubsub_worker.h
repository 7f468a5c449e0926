/*
 * ngx_pubsub: the worker's root object.
 *
 * What one worker process keeps between requests hangs off this one
 * object, a part per subsystem:
 *
 *   mem       the memory engine: this worker's MemoryStore, the zone, its
 *             sweep and poll timers, the wake-up descriptor
 *             (store/ngx_pubsub_shm.cpp)
 *   presence  the presence registry's worker side: the zone, tick and ring
 *             events, the ring position (presence/ngx_pubsub_presence.cpp)
 *   stats     the pubsub_status zone and this worker's slot in it
 *             (status/ngx_pubsub_status.cpp)
 *   chev      queued channel events (events/ngx_pubsub_chevents.cpp)
 *   ws        the WebSocket flush list and buffer caches
 *             (transport/ngx_pubsub_ws_conn.cpp)
 *   hooks     the parked long-poll hook sessions
 *             (hooks/ngx_pubsub_hooks_session.cpp)
 *
 * The root is made in ngx_pubsub_module's init_process before any request;
 * each subsystem's init allocates its part, and ngx_pubsub_module's
 * exit_process ends every part (the hooks' parked sessions too, although
 * they belong to ngx_pubsub_hooks_module, whose exit_process runs later:
 * by then the root is gone) and deletes the root.  A part is
 * NULL until its init made it and after its exit (or when the subsystem is
 * off), and the root is NULL in the master process, during configuration
 * and after exit, so late callbacks can tell.  No object with a destructor
 * lives at namespace scope (it would run in the master and in every
 * exiting process).
 */

#ifndef _NGX_PUBSUB_WORKER_H_INCLUDED_
#define _NGX_PUBSUB_WORKER_H_INCLUDED_

#include "ngx_pubsub.h"


struct ngx_pubsub_mem_worker_t;      /* store/ngx_pubsub_shm.cpp */
struct ngx_pubsub_presence_worker_t; /* presence/ngx_pubsub_presence.cpp */
struct ngx_pubsub_stats_worker_t;    /* status/ngx_pubsub_status.cpp */
struct ngx_pubsub_chev_worker_t;     /* events/ngx_pubsub_chevents.cpp */
struct ngx_pubsub_ws_worker_t;       /* transport/ngx_pubsub_ws.h */
struct ngx_pubsub_hook_worker_t;     /* hooks/ngx_pubsub_hooks_session.cpp */


struct ngx_pubsub_worker_t {
    ngx_pubsub_mem_worker_t       *mem;
    ngx_pubsub_presence_worker_t  *presence;
    ngx_pubsub_stats_worker_t     *stats;
    ngx_pubsub_chev_worker_t      *chev;
    ngx_pubsub_ws_worker_t        *ws;
    ngx_pubsub_hook_worker_t      *hooks;
};


extern ngx_pubsub_worker_t  *ngx_pubsub_worker;


/* each subsystem's state: NULL outside a running worker */
#define ngx_pubsub_worker_part(part)                                          \
    (ngx_pubsub_worker ? ngx_pubsub_worker->part : NULL)


#endif /* _NGX_PUBSUB_WORKER_H_INCLUDED_ */
