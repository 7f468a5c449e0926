/*
 * ngx_pubsub: the Redis engine's configuration - `pubsub_redis_server`
 * (an upstream{} block's Redis servers, redis:// URLs), `pubsub_redis_pass`
 * (which picks the Redis engine for a location, see ngx_pubsub_engine.h),
 * the checks once the http{} block is read, and this worker's list of
 * Redis upstreams.
 */

#include "ngx_pubsub_redis.h"


static ngx_pubsub_redis_upstream_t *
ngx_pubsub_redis_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_pubsub_main_conf_t        *pmcf;
    ngx_pubsub_redis_upstream_t  **ups, *up;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_pubsub_module));

    if (pmcf->redis_upstreams == NULL) {
        pmcf->redis_upstreams = ngx_array_create(cf->pool, 2, sizeof(void *));
        if (pmcf->redis_upstreams == NULL) {
            return NULL;
        }
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        if (ups[i]->uscf == uscf) {
            return ups[i];
        }
    }

    up = static_cast<ngx_pubsub_redis_upstream_t *>(
             ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_redis_upstream_t)));
    if (up == NULL) {
        return NULL;
    }

    if (ngx_array_init(&up->servers, cf->pool, 1,
                       sizeof(ngx_pubsub_redis_server_t))
        != NGX_OK)
    {
        return NULL;
    }

    up->uscf = uscf;
    up->name = uscf->host;
    up->index = pmcf->redis_upstreams->nelts;

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              ngx_array_push(pmcf->redis_upstreams));
    if (ups == NULL) {
        return NULL;
    }

    *ups = up;

    return up;
}


static ngx_int_t
ngx_pubsub_redis_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    /* the upstream holds Redis servers, not HTTP peers: nothing to set up */
    return NGX_OK;
}


/* a null-terminated copy in the configuration's pool */
static ngx_int_t
ngx_pubsub_redis_strz(ngx_conf_t *cf, u_char *p, size_t len, ngx_str_t *out)
{
    out->data = static_cast<u_char *>(ngx_pnalloc(cf->pool, len + 1));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, p, len);
    out->data[len] = '\0';
    out->len = len;

    return NGX_OK;
}


/* redis://[:password@]host:port[/db] */
static const char *
ngx_pubsub_redis_parse_url(ngx_conf_t *cf, ngx_str_t url,
    ngx_pubsub_redis_server_t *s)
{
    u_char     *p, *last, *at, *colon, *slash;
    ngx_int_t   port;

    ngx_memzero(s, sizeof(ngx_pubsub_redis_server_t));
    s->url = url;

    p = url.data;
    last = url.data + url.len;

    if (url.len < 8 || ngx_strncmp(p, "redis://", 8) != 0) {
        return "must start with \"redis://\"";
    }

    p += 8;

    at = NULL;
    for (u_char *q = p; q < last; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at) {
        if (*p != ':') {
            return "has a user name; only \":password@\" is supported";
        }
        if (ngx_pubsub_redis_strz(cf, p + 1, at - p - 1, &s->password)
            != NGX_OK)
        {
            return "cannot be stored (out of memory)";
        }
        p = at + 1;
    }

    slash = static_cast<u_char *>(ngx_strlchr(p, last, '/'));
    if (slash == NULL) {
        slash = last;
    }

    colon = NULL;
    for (u_char *q = p; q < slash; q++) {
        if (*q == ':') {
            colon = q;
        }
    }

    if (colon == NULL) {
        colon = slash;
        port = 6379;

    } else {
        port = ngx_atoi(colon + 1, slash - colon - 1);
        if (port < 1 || port > 65535) {
            return "has an invalid port";
        }
    }

    if (colon == p) {
        return "has no host";
    }

    s->port = static_cast<in_port_t>(port);
    if (ngx_pubsub_redis_strz(cf, p, colon - p, &s->host) != NGX_OK) {
        return "cannot be stored (out of memory)";
    }

    s->db = 0;
    if (slash < last && slash + 1 < last) {
        s->db = ngx_atoi(slash + 1, last - slash - 1);
        if (s->db < 0) {
            return "has an invalid database number";
        }
    }

    return NULL;
}


char *
ngx_pubsub_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                     *value = static_cast<ngx_str_t *>(
                                               cf->args->elts);
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_pubsub_redis_upstream_t   *up;
    ngx_pubsub_redis_server_t     *s;
    const char                    *err;

    uscf = static_cast<ngx_http_upstream_srv_conf_t *>(
               ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module));

    up = ngx_pubsub_redis_upstream(cf, uscf);
    if (up == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    s = static_cast<ngx_pubsub_redis_server_t *>(ngx_array_push(&up->servers));
    if (s == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    err = ngx_pubsub_redis_parse_url(cf, value[1], s);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_redis_server \"%V\" %s", &value[1], err);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    uscf->peer.init_upstream = ngx_pubsub_redis_init_upstream;

    /*
     * nginx refuses an upstream block without servers: list the Redis
     * server there too (never used as an HTTP peer, see init_upstream)
     */
    if (uscf->servers) {
        ngx_http_upstream_server_t  *us;

        us = static_cast<ngx_http_upstream_server_t *>(
                 ngx_array_push(uscf->servers));
        if (us == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->name = value[1];
        us->weight = 1;
    }

    return NGX_CONF_OK;
}


char *
ngx_pubsub_redis_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t         *plcf = static_cast<ngx_pubsub_loc_conf_t *>(
                                              conf);
    ngx_str_t                     *value = static_cast<ngx_str_t *>(
                                               cf->args->elts);
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_url_t                      u;

    if (plcf->engine != NULL) {
        return const_cast<char *>("is duplicate");
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        plcf->engine = &ngx_pubsub_memory_engine;
        plcf->engine_conf = NULL;
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    uscf = ngx_http_upstream_add(cf, &u, 0);
    if (uscf == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    plcf->engine_conf = ngx_pubsub_redis_upstream(cf, uscf);
    if (plcf->engine_conf == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    /*
     * a name with no upstream{} block (a typo) would otherwise reach the
     * round-robin set-up as an implicit "host" upstream and fail with an
     * unrelated "no port in upstream"; ngx_pubsub_redis_check_conf()
     * reports it by its name instead
     */
    if (uscf->peer.init_upstream == NULL) {
        uscf->peer.init_upstream = ngx_pubsub_redis_init_upstream;
    }

    plcf->engine = &ngx_pubsub_redis_engine;

    return NGX_CONF_OK;
}


char *
ngx_pubsub_redis_check_conf(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf)
{
    ngx_pubsub_redis_upstream_t  **ups;

    if (pmcf->redis_upstreams == NULL) {
        return NGX_CONF_OK;
    }

    ups = static_cast<ngx_pubsub_redis_upstream_t **>(
              pmcf->redis_upstreams->elts);

    for (ngx_uint_t i = 0; i < pmcf->redis_upstreams->nelts; i++) {
        if (ups[i]->servers.nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                "pubsub_redis_pass \"%V\": no upstream with that name has "
                "a pubsub_redis_server", &ups[i]->name);
            return static_cast<char *>(NGX_CONF_ERROR);
        }

    }

    return NGX_CONF_OK;
}


/* a location using the engine: presence refreshes follow its ttl */
char *
ngx_pubsub_redis_merge_loc_conf(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *plcf)
{
    auto  *up = static_cast<ngx_pubsub_redis_upstream_t *>(plcf->engine_conf);

    if ((plcf->presence || plcf->presence_channels) && up != NULL) {
        /* the upstream refreshes presence at the pace of its least ttl */
        if (!up->presence || plcf->presence_ttl < up->presence_ttl) {
            up->presence_ttl = plcf->presence_ttl;
        }
        up->presence = 1;
    }

    return NGX_CONF_OK;
}


/* this worker's Redis upstreams (their number in *n) */
ngx_pubsub_redis_upstream_t **
ngx_pubsub_redis_all(ngx_uint_t *n)
{
    ngx_pubsub_main_conf_t  *pmcf;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_pubsub_module));
    if (pmcf == NULL || pmcf->redis_upstreams == NULL) {
        *n = 0;
        return NULL;
    }

    *n = pmcf->redis_upstreams->nelts;

    return static_cast<ngx_pubsub_redis_upstream_t **>(
               pmcf->redis_upstreams->elts);
}


ngx_pubsub_redis_upstream_t *
ngx_pubsub_redis_upstream_at(ngx_uint_t index)
{
    ngx_pubsub_redis_upstream_t  **ups;
    ngx_uint_t                     n;

    ups = ngx_pubsub_redis_all(&n);

    return index < n ? ups[index] : NULL;
}
