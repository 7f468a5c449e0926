/*
 * ngx_pubsub: the store seam (ngx_pubsub_engine.h) - the engines this
 * module has, the choice of a location's engine at configuration time, and
 * what runs over every engine: configuration checks, worker start and exit,
 * instance-wide presence.
 *
 * Adding an engine: write its table (as ngx_pubsub_memory_engine.cpp or
 * src/redis/ngx_pubsub_redis_engine.cpp do), list it below, and give it a
 * directive that sets plcf->engine (and plcf->engine_conf) for a location.
 */

#include "ngx_pubsub_engine.h"


/* init_process in this order, exit_process in reverse */
static const ngx_pubsub_engine_t  *ngx_pubsub_engines[] = {
    &ngx_pubsub_memory_engine,
    &ngx_pubsub_redis_engine,
};

#define NGX_PUBSUB_NENGINES                                                   \
    (sizeof(ngx_pubsub_engines) / sizeof(ngx_pubsub_engines[0]))


pubsub::Store *
ngx_pubsub_store_for(ngx_pubsub_loc_conf_t *plcf)
{
    return plcf->engine->store(plcf);
}


char *
ngx_pubsub_engine_check_conf(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf)
{
    for (const ngx_pubsub_engine_t *e : ngx_pubsub_engines) {
        if (e->check_conf && e->check_conf(cf, pmcf) != NGX_CONF_OK) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    return NGX_CONF_OK;
}


/* a location without its own engine directive takes its parent's */
void
ngx_pubsub_engine_inherit(ngx_pubsub_loc_conf_t *conf,
    ngx_pubsub_loc_conf_t *prev)
{
    if (conf->engine == NULL) {
        conf->engine = prev->engine;
        conf->engine_conf = prev->engine_conf;
    }

    if (conf->engine == NULL) {
        conf->engine = &ngx_pubsub_memory_engine;
        conf->engine_conf = NULL;
    }
}


void
ngx_pubsub_engine_use(ngx_pubsub_loc_conf_t *conf)
{
    if (conf->engine->use != NULL) {
        conf->engine->use(conf);
    }
}


char *
ngx_pubsub_engine_merge(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *conf)
{
    if (conf->roles || conf->presence_api == 1) {
        ngx_pubsub_engine_use(conf);
    }

    if (conf->engine->merge_loc_conf == NULL) {
        return NGX_CONF_OK;
    }

    return conf->engine->merge_loc_conf(cf, conf);
}


ngx_int_t
ngx_pubsub_engines_init_process(ngx_cycle_t *cycle)
{
    for (const ngx_pubsub_engine_t *e : ngx_pubsub_engines) {
        if (e->init_process(cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_pubsub_engines_exit_process(ngx_cycle_t *cycle)
{
    for (size_t i = NGX_PUBSUB_NENGINES; i > 0; i--) {
        ngx_pubsub_engines[i - 1]->exit_process(cycle);
    }
}


void
ngx_pubsub_engines_presence_deltas(const pubsub::PresenceDeltas &deltas,
    const std::string &instance)
{
    for (const ngx_pubsub_engine_t *e : ngx_pubsub_engines) {
        if (e->presence_deltas) {
            e->presence_deltas(deltas, instance);
        }
    }
}


/* the shortest refresh interval of the engines that refresh (0: none) */
ngx_msec_t
ngx_pubsub_engines_presence_interval(void)
{
    ngx_msec_t  least = 0, ms;

    for (const ngx_pubsub_engine_t *e : ngx_pubsub_engines) {
        if (e->presence_interval == NULL) {
            continue;
        }

        ms = e->presence_interval();
        if (ms && (least == 0 || ms < least)) {
            least = ms;
        }
    }

    return least;
}


void
ngx_pubsub_engines_presence_refresh(
    const std::vector<pubsub::PresenceChannelSnapshot> &snaps,
    const std::string &instance)
{
    for (const ngx_pubsub_engine_t *e : ngx_pubsub_engines) {
        if (e->presence_refresh) {
            e->presence_refresh(snaps, instance);
        }
    }
}
