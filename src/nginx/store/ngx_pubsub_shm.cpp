/*
 * ngx_pubsub: the shared-memory zone that holds channels and messages,
 * and the worker's pubsub::MemoryStore built on it (the memory engine;
 * its table is ngx_pubsub_memory_engine.cpp).
 *
 * The zone is a slab pool; the store's root hangs off shpool->data.  On
 * reload nginx hands the same mapping to the new cycle when the zone's
 * name, size and tag are unchanged, and the new configuration adopts the
 * old root: channels and messages survive.  A changed pubsub_shm_size
 * makes a new, empty zone.
 *
 * Workers: each worker holds its own subscribers (pubsub::Hub) and is known
 * to the store by its nginx process slot (ngx_process_slot), which is
 * unique among live processes - old and new workers during a reload never
 * share one - and is kept by a worker the master restarts after a crash.
 * A publish queues the channel in the shared-memory mailbox of every other
 * slot that has subscribers of it and wakes that worker through an eventfd.
 * The master makes the eventfds (one per process slot, more as reloads
 * need them) in init_module, before it forks, so every worker inherits
 * them; a worker writes only to descriptors it inherited (the table is
 * process memory, copied at fork).  A worker without a descriptor or a
 * mailbox polls instead.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_pusher_features.h"
#include "ngx_pubsub_worker.h"

#include <memory>
#include <new>
#include <string>

#include <errno.h>
#include <signal.h>
#include <sys/eventfd.h>


static ngx_int_t ngx_pubsub_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static void ngx_pubsub_sweep_handler(ngx_event_t *ev);
static void ngx_pubsub_wake_handler(ngx_event_t *ev);
static void ngx_pubsub_poll_handler(ngx_event_t *ev);


static ngx_str_t  ngx_pubsub_zone_name = ngx_string("ngx_pubsub");

/*
 * This worker's engine: the worker root's "mem" part, made in
 * init_process, gone in exit_process.
 */
struct ngx_pubsub_mem_worker_t {
    pubsub::MemoryStore  *store = nullptr;
    ngx_slab_pool_t      *shpool = nullptr;
    ngx_event_t           sweep_event;
    ngx_event_t           poll_event;
    ngx_connection_t     *wake_conn = nullptr;
    ngx_uint_t            mailbox = 0;
    ngx_uint_t            sweeps = 0;
};

/*
 * eventfds by process slot, made by the master.  This is process memory: a
 * worker sees the table as it was when it was forked, i.e. exactly the
 * descriptors it inherited.
 */
static int         ngx_pubsub_wake_fds[NGX_MAX_PROCESSES];
static ngx_uint_t  ngx_pubsub_nwake_fds;


ngx_int_t
ngx_pubsub_shm_conf(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf)
{
    pmcf->shm_zone = ngx_shared_memory_add(cf, &ngx_pubsub_zone_name,
                                           pmcf->shm_size, &ngx_pubsub_module);
    if (pmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    pmcf->shm_zone->init = ngx_pubsub_init_zone;
    pmcf->shm_zone->data = pmcf;
    pmcf->shm_zone->noreuse = 0;

    return NGX_OK;
}


static void *
ngx_pubsub_slab_alloc(void *ctx, size_t size)
{
    return ngx_slab_alloc_locked(static_cast<ngx_slab_pool_t *>(ctx), size);
}


static void
ngx_pubsub_slab_free(void *ctx, void *p)
{
    ngx_slab_free_locked(static_cast<ngx_slab_pool_t *>(ctx), p);
}


pubsub::ShmAllocator
ngx_pubsub_slab_allocator(ngx_slab_pool_t *shpool)
{
    pubsub::ShmAllocator  a;

    a.ctx = shpool;
    a.alloc = ngx_pubsub_slab_alloc;
    a.free = ngx_pubsub_slab_free;

    return a;
}


static ngx_int_t
ngx_pubsub_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t     *shpool;
    pubsub::StoreRoot   *root;

    shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);

    if (data) {
        /* reload: the zone kept its mapping, adopt its contents */
        root = static_cast<pubsub::StoreRoot *>(shpool->data);

        if (pubsub::ShmStore::compatible(root)) {
            root->generation++;
            return ngx_pubsub_presence_init_zone(shpool, root,
                                                 shm_zone->shm.log);
        }
    }

    if (shm_zone->shm.exists) {
        root = static_cast<pubsub::StoreRoot *>(shpool->data);
        if (pubsub::ShmStore::compatible(root)) {
            return ngx_pubsub_presence_init_zone(shpool, root,
                                                 shm_zone->shm.log);
        }
    }

    /* a new zone: the slab pool is initialised by nginx */

    shpool->log_nomem = 0;   /* a full zone is reported as 507, not [crit] */

    ngx_shmtx_lock(&shpool->mutex);
    /* a random hash key; channels without messages get a quarter */
    root = pubsub::ShmStore::createRoot(ngx_pubsub_slab_allocator(shpool),
                                        1024, shm_zone->shm.size);
    ngx_shmtx_unlock(&shpool->mutex);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "pubsub: pubsub_shm_size is too small");
        return NGX_ERROR;
    }

    shpool->data = root;

    return ngx_pubsub_presence_init_zone(shpool, root, shm_zone->shm.log);
}


static void
ngx_pubsub_lock(void *ctx)
{
    ngx_shmtx_lock(&static_cast<ngx_slab_pool_t *>(ctx)->mutex);
}


static void
ngx_pubsub_unlock(void *ctx)
{
    ngx_shmtx_unlock(&static_cast<ngx_slab_pool_t *>(ctx)->mutex);
}


static int64_t
ngx_pubsub_now(void *ctx)
{
    return ngx_time();
}


static void
ngx_pubsub_wake(void *ctx, uint32_t slot)
{
    ngx_pubsub_shm_wake(slot);
}


void
ngx_pubsub_shm_wake(uint32_t slot)
{
    uint64_t  one = 1;

    if (slot >= ngx_pubsub_nwake_fds) {
        return;   /* a worker newer than this one: it polls for us */
    }

    /* EAGAIN (counter full) still leaves the descriptor readable */
    if (write(ngx_pubsub_wake_fds[slot], &one, sizeof(one)) < 0
        && errno != EAGAIN)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "pubsub: cannot wake the worker in slot %uD", slot);
    }
}


/*
 * init_module: runs in the master (or the single process) for every
 * configuration, before workers are forked.  Makes sure there is an eventfd
 * for every process slot the coming workers can get.
 */
ngx_int_t
ngx_pubsub_shm_init_module(ngx_cycle_t *cycle)
{
    ngx_pubsub_main_conf_t  *pmcf;
    ngx_core_conf_t         *ccf;
    ngx_uint_t               need;
    ngx_int_t                last;
    int                      fd;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(cycle, ngx_pubsub_module));
    if (pmcf == NULL || pmcf->shm_zone == NULL || ngx_test_config) {
        return NGX_OK;
    }

    ccf = reinterpret_cast<ngx_core_conf_t *>(
              ngx_get_conf(cycle->conf_ctx, ngx_core_module));

    /*
     * New workers take the lowest free process slots; old workers of
     * earlier configurations may still hold some, and the cache manager
     * and loader take one each.
     */
    last = ngx_last_process > 0 ? ngx_last_process : 0;
    need = last + 2 * (ccf->worker_processes > 0 ? ccf->worker_processes : 1)
           + 8;
    if (need > NGX_MAX_PROCESSES) {
        need = NGX_MAX_PROCESSES;
    }

    while (ngx_pubsub_nwake_fds < need) {
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd == -1) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "pubsub: eventfd() failed, workers from slot %ui "
                          "on poll for messages", ngx_pubsub_nwake_fds);
            break;
        }

        ngx_pubsub_wake_fds[ngx_pubsub_nwake_fds++] = fd;
    }

    return NGX_OK;
}


static bool
ngx_pubsub_pid_alive(int64_t pid)
{
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}


/* this worker's engine part (NULL outside a running worker) */
static ngx_pubsub_mem_worker_t *
ngx_pubsub_mem(void)
{
    return ngx_pubsub_worker_part(mem);
}


/*
 * How this worker learns that other workers changed its channels: its
 * mailbox in the zone and its eventfd (then a slow poll as a safety net),
 * else a fast poll.
 */
static void
ngx_pubsub_shm_wakeups(ngx_cycle_t *cycle, ngx_pubsub_mem_worker_t *mw,
    uint32_t slot)
{
    ngx_connection_t  *c;

    mw->mailbox = 0;
    mw->wake_conn = NULL;

    if (ngx_pubsub_guard(cycle->log, [mw] {
            return mw->store->claimSlot(ngx_pid) ? NGX_OK : NGX_DECLINED;
        }) == NGX_OK)
    {
        mw->mailbox = 1;
    }

    if (mw->mailbox && slot < ngx_pubsub_nwake_fds) {
        c = ngx_get_connection(ngx_pubsub_wake_fds[slot], cycle->log);

        if (c != NULL) {
            c->read->handler = ngx_pubsub_wake_handler;
            c->read->log = cycle->log;
            c->data = NULL;

            if (ngx_add_event(c->read, NGX_READ_EVENT, 0) == NGX_OK) {
                mw->wake_conn = c;

            } else {
                ngx_free_connection(c);
            }
        }
    }

    ngx_memzero(&mw->poll_event, sizeof(ngx_event_t));
    mw->poll_event.handler = ngx_pubsub_poll_handler;
    mw->poll_event.data = &ngx_pubsub_dumb_conn;
    mw->poll_event.log = cycle->log;
    mw->poll_event.cancelable = 1;

    if (mw->wake_conn == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "pubsub: no wake-up descriptor or mailbox for process "
                      "slot %uD, polling for messages every 50ms", slot);
        ngx_add_timer(&mw->poll_event, 50);

    } else {
        /* a safety net: wake-ups from workers older than this one */
        ngx_add_timer(&mw->poll_event, 1000);
    }
}


ngx_int_t
ngx_pubsub_shm_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_main_conf_t   *pmcf;
    ngx_pubsub_mem_worker_t  *mw;
    pubsub::MemoryStoreEnv    env;
    uint32_t                  slot;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(cycle, ngx_pubsub_module));
    if (pmcf == NULL || pmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    mw = new (std::nothrow) ngx_pubsub_mem_worker_t();
    if (mw == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pubsub: cannot allocate the worker's engine");
        return NGX_ERROR;
    }

    ngx_pubsub_worker->mem = mw;

    mw->shpool = reinterpret_cast<ngx_slab_pool_t *>(
                     pmcf->shm_zone->shm.addr);

    env.alloc = ngx_pubsub_slab_allocator(mw->shpool);
    env.root = static_cast<pubsub::StoreRoot *>(mw->shpool->data);
    env.ctx = mw->shpool;
    env.lock = ngx_pubsub_lock;
    env.unlock = ngx_pubsub_unlock;
    env.now = ngx_pubsub_now;
    env.notify = NULL;

    slot = (ngx_process == NGX_PROCESS_WORKER)
           ? static_cast<uint32_t>(ngx_process_slot) : 0;
    env.slot = slot;
    env.wake = ngx_pubsub_wake;

    mw->store = new (std::nothrow) pubsub::MemoryStore(env);
    if (mw->store == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pubsub: cannot allocate the worker's engine");
        return NGX_ERROR;
    }

    /* channel_occupied/vacated, subscription_count of Pusher channels
     * (webhook and pushed) */
    if (ngx_pubsub_pusher_count_hook_wanted()) {
        mw->store->setCountHook(ngx_pubsub_pusher_count_hook(mw->store));
    }

    ngx_pubsub_shm_wakeups(cycle, mw, slot);

    ngx_memzero(&mw->sweep_event, sizeof(ngx_event_t));
    mw->sweep_event.handler = ngx_pubsub_sweep_handler;
    mw->sweep_event.data = cycle;
    mw->sweep_event.log = cycle->log;
    mw->sweep_event.cancelable = 1;

    ngx_add_timer(&mw->sweep_event, 1000);

    return ngx_pubsub_presence_init_process(cycle, mw->shpool);
}


/* the presence part goes first: its exit still uses the zone */
void
ngx_pubsub_shm_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();

    if (mw == NULL) {
        return;
    }

    if (mw->sweep_event.timer_set) {
        ngx_del_timer(&mw->sweep_event);
    }

    ngx_pubsub_presence_exit_process(cycle);

    if (mw->poll_event.timer_set) {
        ngx_del_timer(&mw->poll_event);
    }

    if (mw->wake_conn != NULL) {
        /* the master keeps its copy of the descriptor for the next worker */
        ngx_close_connection(mw->wake_conn);
        mw->wake_conn = NULL;
    }

    if (mw->store != NULL) {
        (void) ngx_pubsub_guard(cycle->log, [mw] {
            mw->store->releaseSlot();
            return NGX_OK;
        });
    }

    ngx_pubsub_worker->mem = NULL;
    delete mw->store;
    delete mw;
}


static void
ngx_pubsub_wake_handler(ngx_event_t *ev)
{
    ngx_connection_t         *c = static_cast<ngx_connection_t *>(ev->data);
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();
    uint64_t                  n;

    /* one read resets the counter; the mailbox says what changed (EAGAIN:
     * it was already reset, nothing is lost) */
    if (read(c->fd, &n, sizeof(n)) == -1) {
        n = 0;
    }

    if (mw == NULL || mw->store == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [mw] {
        mw->store->processNotifications();
        return NGX_OK;
    });

    /* or a join/leave for this worker's subscribers */
    ngx_pubsub_presence_wake();
}


static void
ngx_pubsub_poll_handler(ngx_event_t *ev)
{
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();

    if (mw == NULL || mw->store == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [mw] {
        /* without a mailbox nothing tells us what changed: pull it all */
        mw->store->processNotifications(!mw->mailbox);
        return NGX_OK;
    });

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, mw->wake_conn ? 1000 : 50);
    }
}


pubsub::Store *
ngx_pubsub_store(void)
{
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();

    return mw ? mw->store : NULL;
}


pubsub::Hub *
ngx_pubsub_local_hub(void)
{
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();

    return (mw && mw->store) ? &mw->store->hub() : NULL;
}


static void
ngx_pubsub_sweep_handler(ngx_event_t *ev)
{
    ngx_pubsub_mem_worker_t  *mw = ngx_pubsub_mem();

    if (mw == NULL || mw->store == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [mw] {
        /* idle empty channels linger 30s so that counters stay meaningful */
        mw->store->sweep(256, 30);

        /* slots of workers that died without a successor */
        if (++mw->sweeps % 5 == 0) {
            mw->store->reapSlots(ngx_pubsub_pid_alive);
        }

        return NGX_OK;
    });

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, 1000);
    }
}
