/*
 * ngx_pubsub: the shared-memory zone that holds channels and messages,
 * and the worker's engine (pubsub::MemoryStore) built on it.
 *
 * The zone is a slab pool; the store's root hangs off shpool->data.  On
 * reload nginx hands the same mapping to the new cycle when the zone's
 * name, size and tag are unchanged, and the new configuration adopts the
 * old root: channels and messages survive.  A changed pubsub_shm_size
 * makes a new, empty zone.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_presence.h"

#include <memory>
#include <new>


static ngx_int_t ngx_pubsub_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static void ngx_pubsub_sweep_handler(ngx_event_t *ev);


static ngx_str_t  ngx_pubsub_zone_name = ngx_string("ngx_pubsub");

/* this worker's engine; made in init_process, gone in exit_process */
static pubsub::MemoryStore  *ngx_pubsub_engine;
static ngx_slab_pool_t      *ngx_pubsub_shpool;
static ngx_event_t           ngx_pubsub_sweep_event;


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


static pubsub::ShmAllocator
ngx_pubsub_allocator(ngx_slab_pool_t *shpool)
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
    root = pubsub::ShmStore::createRoot(ngx_pubsub_allocator(shpool), 1024);
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


ngx_int_t
ngx_pubsub_shm_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_main_conf_t  *pmcf;
    pubsub::MemoryStoreEnv   env;

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

    ngx_pubsub_shpool = reinterpret_cast<ngx_slab_pool_t *>(
                            pmcf->shm_zone->shm.addr);

    env.alloc = ngx_pubsub_allocator(ngx_pubsub_shpool);
    env.root = static_cast<pubsub::StoreRoot *>(ngx_pubsub_shpool->data);
    env.ctx = ngx_pubsub_shpool;
    env.lock = ngx_pubsub_lock;
    env.unlock = ngx_pubsub_unlock;
    env.now = ngx_pubsub_now;
    env.notify = NULL;

    ngx_pubsub_engine = new (std::nothrow) pubsub::MemoryStore(env);
    if (ngx_pubsub_engine == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pubsub: cannot allocate the worker's engine");
        return NGX_ERROR;
    }

    ngx_memzero(&ngx_pubsub_sweep_event, sizeof(ngx_event_t));
    ngx_pubsub_sweep_event.handler = ngx_pubsub_sweep_handler;
    ngx_pubsub_sweep_event.log = cycle->log;
    ngx_pubsub_sweep_event.data = cycle;
    ngx_pubsub_sweep_event.cancelable = 1;

    ngx_add_timer(&ngx_pubsub_sweep_event, 1000);

    return ngx_pubsub_presence_init_process(cycle, ngx_pubsub_shpool);
}


void
ngx_pubsub_shm_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_pubsub_sweep_event.timer_set) {
        ngx_del_timer(&ngx_pubsub_sweep_event);
    }

    ngx_pubsub_presence_exit_process(cycle);

    delete ngx_pubsub_engine;
    ngx_pubsub_engine = NULL;
}


pubsub::Store *
ngx_pubsub_store(void)
{
    return ngx_pubsub_engine;
}


pubsub::Hub *
ngx_pubsub_local_hub(void)
{
    return ngx_pubsub_engine ? &ngx_pubsub_engine->hub() : NULL;
}


static void
ngx_pubsub_sweep_handler(ngx_event_t *ev)
{
    if (ngx_pubsub_engine == NULL) {
        return;
    }

    (void) ngx_pubsub_guard(ev->log, [] {
        /* idle empty channels linger 30s so that counters stay meaningful */
        ngx_pubsub_engine->sweep(256, 30);
        return NGX_OK;
    });

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, 1000);
    }
}
