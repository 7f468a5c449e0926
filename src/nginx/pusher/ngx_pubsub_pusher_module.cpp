/*
 * ngx_pubsub Pusher: the module (ngx_pubsub_pusher_module), its
 * configuration and the apps (pubsub_pusher_app, docs/pusher.md).
 */

#include "ngx_pubsub_pusher.h"
#include "ngx_pubsub_pusher_webhook.h"
#include "ngx_pubsub_pusher_features.h"
#include "ngx_pubsub_engine.h"


static void *ngx_pubsub_pusher_create_main_conf(ngx_conf_t *cf);
static void *ngx_pubsub_pusher_create_srv_conf(ngx_conf_t *cf);
static char *ngx_pubsub_pusher_app(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_pubsub_pusher_init_process(ngx_cycle_t *cycle);
static void *ngx_pubsub_pusher_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pubsub_pusher_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void ngx_pubsub_pusher_exit_process(ngx_cycle_t *cycle);
static char *ngx_pubsub_pusher_ws(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_pubsub_pusher_commands[] = {

    { ngx_string("pubsub_pusher_app"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_2MORE,
      ngx_pubsub_pusher_app,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    /* pusher: the WebSocket endpoint */
    { ngx_string("pubsub_pusher"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_pubsub_pusher_ws,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* webhook */
    { ngx_string("pubsub_pusher_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_pubsub_pusher_webhook_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_pusher_activity_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_pusher_loc_conf_t, activity_timeout),
      NULL },

    /* pusherapi: the HTTP API (ngx_pubsub_pusher_api.cpp) */
    { ngx_string("pubsub_pusher_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_pubsub_pusher_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_pubsub_pusher_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_pubsub_pusher_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_pubsub_pusher_create_srv_conf,     /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_pubsub_pusher_create_loc_conf,     /* create location configuration */
    ngx_pubsub_pusher_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_pubsub_pusher_module = {
    NGX_MODULE_V1,
    &ngx_pubsub_pusher_module_ctx,         /* module context */
    ngx_pubsub_pusher_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_pubsub_pusher_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_pubsub_pusher_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_pubsub_pusher_init_process(ngx_cycle_t *cycle)
{
    /* pusherapi */
    if (ngx_pubsub_pusher_api_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_pubsub_pusher_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_pusher_main_conf_t));
}


static void *
ngx_pubsub_pusher_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_pusher_srv_conf_t));
}


static void *
ngx_pubsub_pusher_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pubsub_pusher_loc_conf_t  *plcf;

    plcf = static_cast<ngx_pubsub_pusher_loc_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_pusher_loc_conf_t)));
    if (plcf == NULL) {
        return NULL;
    }

    /* pusher */
    plcf->ws = NGX_CONF_UNSET;
    plcf->activity_timeout = NGX_CONF_UNSET_MSEC;

    /* webhook */
    plcf->webhook = static_cast<ngx_pubsub_pusher_webhook_conf_t *>(
                        NGX_CONF_UNSET_PTR);

    return plcf;
}


static char *
ngx_pubsub_pusher_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    auto  *prev = static_cast<ngx_pubsub_pusher_loc_conf_t *>(parent);
    auto  *conf = static_cast<ngx_pubsub_pusher_loc_conf_t *>(child);

    /* pusher: the endpoint itself is not inherited (a content handler) */
    if (conf->ws == NGX_CONF_UNSET) {
        conf->ws = 0;
    }

    ngx_conf_merge_msec_value(conf->activity_timeout, prev->activity_timeout,
                              120000);

    if (conf->activity_timeout < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_activity_timeout must be at least "
                           "1s");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (conf->ws || conf->api) {
        /* the endpoints serve from their ngx_pubsub engine (merged before
         * this module: it comes first in the module list) */
        ngx_pubsub_engine_use(static_cast<ngx_pubsub_loc_conf_t *>(
            ngx_http_conf_get_module_loc_conf(cf, ngx_pubsub_module)));
    }

    /* webhook */
    ngx_conf_merge_ptr_value(conf->webhook, prev->webhook, NULL);

    return NGX_CONF_OK;
}


static void
ngx_pubsub_pusher_exit_process(ngx_cycle_t *cycle)
{
    /* webhook */
    ngx_pubsub_pusher_webhook_exit_process(cycle);

    /* pusherfeat: subscription counts */
    ngx_pubsub_pusher_features_exit_process(cycle);
}


/* pubsub_pusher: the WebSocket endpoint .../app/<key> */
static char *
ngx_pubsub_pusher_ws(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    auto  *plcf = static_cast<ngx_pubsub_pusher_loc_conf_t *>(conf);

    (void) cmd;

    if (plcf->ws != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    plcf->ws = 1;

    /* presence- channels always have presence (Redis: refreshes) */
    static_cast<ngx_pubsub_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_pubsub_module))
        ->presence_channels = 1;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_pusher_ws_handler);
}


/* ids and keys: what fits in a URL path segment and a channel group */
static ngx_int_t
ngx_pubsub_pusher_name_ok(ngx_str_t *s)
{
    u_char  *p;

    if (s->len == 0 || s->len > 64) {
        return 0;
    }

    for (p = s->data; p < s->data + s->len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
              || *p == '.'))
        {
            return 0;
        }
    }

    return 1;
}


/* "@/path": the secret is the file's content, one trailing newline off */
static char *
ngx_pubsub_pusher_read_secret(ngx_conf_t *cf, ngx_str_t *secret)
{
    ssize_t          n;
    ngx_str_t        path;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    path.len = secret->len - 1;
    path.data = secret->data + 1;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;

    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "pubsub_pusher_app: cannot open secret file "
                           "\"%V\"", &path);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_app: secret file \"%V\" is not "
                           "a readable file of at most 4096 bytes", &path);
        ngx_close_file(file.fd);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    secret->len = static_cast<size_t>(ngx_file_size(&fi));
    secret->data = static_cast<u_char *>(ngx_pnalloc(cf->pool,
                                                     secret->len + 1));
    if (secret->data == NULL) {
        ngx_close_file(file.fd);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    n = ngx_read_file(&file, secret->data, secret->len, 0);
    ngx_close_file(file.fd);

    if (n != static_cast<ssize_t>(secret->len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_app: cannot read secret file "
                           "\"%V\"", &path);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (secret->len && secret->data[secret->len - 1] == '\n') {
        secret->len--;
        if (secret->len && secret->data[secret->len - 1] == '\r') {
            secret->len--;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_pubsub_pusher_app_clash(ngx_array_t *apps, ngx_pubsub_pusher_app_t *app)
{
    ngx_uint_t                i;
    ngx_pubsub_pusher_app_t  *a;

    if (apps == NULL) {
        return 0;
    }

    a = static_cast<ngx_pubsub_pusher_app_t *>(apps->elts);

    for (i = 0; i < apps->nelts; i++) {
        if ((a[i].id.len == app->id.len
             && ngx_strncmp(a[i].id.data, app->id.data, app->id.len) == 0)
            || (a[i].key.len == app->key.len
                && ngx_strncmp(a[i].key.data, app->key.data, app->key.len)
                   == 0))
        {
            return 1;
        }
    }

    return 0;
}


/* one parameter of pubsub_pusher_app into *app */
static char *
ngx_pubsub_pusher_app_param(ngx_conf_t *cf, ngx_pubsub_pusher_app_t *app,
    ngx_str_t *p)
{
    ngx_int_t  n;
    ngx_str_t  v;

    if (ngx_strncmp(p->data, "id=", 3) == 0) {
        app->id.data = p->data + 3;
        app->id.len = p->len - 3;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(p->data, "key=", 4) == 0) {
        app->key.data = p->data + 4;
        app->key.len = p->len - 4;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(p->data, "secret=", 7) == 0) {
        app->secret.data = p->data + 7;
        app->secret.len = p->len - 7;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(p->data, "max_presence_members=", 21) == 0) {
        n = ngx_atoi(p->data + 21, p->len - 21);
        if (n < 1 || n > 100000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pubsub_pusher_app: invalid "
                               "\"%V\" (1 to 100000)", p);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        app->max_presence_members = static_cast<ngx_uint_t>(n);
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(p->data, "max_client_events=", 18) == 0) {
        v.data = p->data + 18;
        v.len = p->len - 18;
        if (v.len > 2 && ngx_strncmp(v.data + v.len - 2, "/s", 2) == 0) {
            v.len -= 2;
        }
        n = ngx_atoi(v.data, v.len);
        if (n < 0 || n > 1000000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pubsub_pusher_app: invalid \"%V\" "
                               "(N/s, 0 refuses client events)", p);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        app->max_client_events = static_cast<ngx_uint_t>(n);
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(p->data, "subscription_count=", 19) == 0) {
        v.data = p->data + 19;
        v.len = p->len - 19;

        if (v.len == 2 && ngx_strncmp(v.data, "on", 2) == 0) {
            app->subscription_count = 1;

        } else if (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
            app->subscription_count = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pubsub_pusher_app: invalid \"%V\" "
                               "(on or off)", p);
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "pubsub_pusher_app: unknown parameter \"%V\"", p);
    return static_cast<char *>(NGX_CONF_ERROR);
}


/*
 * Adds app to the apps of http{} (a directive there) or of the server;
 * an id or key that the same apps or http{}'s use is an error.
 */
static char *
ngx_pubsub_pusher_app_add(ngx_conf_t *cf, void *conf,
    ngx_pubsub_pusher_app_t *app)
{
    ngx_str_t                      *v_id;
    ngx_array_t                   **apps;
    ngx_pubsub_pusher_app_t        *slot;
    ngx_pubsub_pusher_main_conf_t  *ppmcf;
    ngx_pubsub_pusher_srv_conf_t   *ppscf;

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_conf_get_module_main_conf(cf,
                                                   ngx_pubsub_pusher_module));

    if (cf->cmd_type == NGX_HTTP_MAIN_CONF) {
        apps = &ppmcf->apps;

    } else {
        ppscf = static_cast<ngx_pubsub_pusher_srv_conf_t *>(conf);
        apps = &ppscf->apps;
    }

    if (ngx_pubsub_pusher_app_clash(ppmcf->apps, app)
        || (apps != &ppmcf->apps && ngx_pubsub_pusher_app_clash(*apps, app)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_app: id \"%V\" or key \"%V\" "
                           "is already used", &app->id, &app->key);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (*apps == NULL) {
        *apps = ngx_array_create(cf->pool, 2,
                                 sizeof(ngx_pubsub_pusher_app_t));
        if (*apps == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    slot = static_cast<ngx_pubsub_pusher_app_t *>(ngx_array_push(*apps));
    if (slot == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    *slot = *app;

    /* pusherfeat: the stores' count hook finds counting apps by id */
    if (app->subscription_count) {
        if (ppmcf->counting == NULL) {
            ppmcf->counting = ngx_array_create(cf->pool, 2,
                                               sizeof(ngx_str_t));
            if (ppmcf->counting == NULL) {
                return static_cast<char *>(NGX_CONF_ERROR);
            }
        }

        v_id = static_cast<ngx_str_t *>(ngx_array_push(ppmcf->counting));
        if (v_id == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        *v_id = app->id;
    }

    return NGX_CONF_OK;
}


/* pubsub_pusher_app id=ID key=KEY secret=SECRET [max_presence_members=N]
 *                   [max_client_events=N/s] [subscription_count=on|off] */
static char *
ngx_pubsub_pusher_app(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                     *rv;
    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_pubsub_pusher_app_t   app;

    ngx_memzero(&app, sizeof(app));
    app.max_presence_members = NGX_PUBSUB_PUSHER_MAX_PRESENCE_MEMBERS;
    app.max_client_events = NGX_PUBSUB_PUSHER_MAX_CLIENT_EVENTS;

    value = static_cast<ngx_str_t *>(cf->args->elts);

    for (i = 1; i < cf->args->nelts; i++) {
        rv = ngx_pubsub_pusher_app_param(cf, &app, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (!ngx_pubsub_pusher_name_ok(&app.id)
        || !ngx_pubsub_pusher_name_ok(&app.key))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_app: id= and key= are required, "
                           "1 to 64 characters of letters, digits, "
                           "'-', '_' and '.'");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (app.secret.len > 1 && app.secret.data[0] == '@') {
        rv = ngx_pubsub_pusher_read_secret(cf, &app.secret);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    /* Pusher and Reverb issue 20-character secrets */
    if (app.secret.len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_pusher_app: the secret of app \"%V\" is "
                           "missing or shorter than 16 bytes", &app.id);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    app.group.len = sizeof(NGX_PUBSUB_PUSHER_GROUP_PREFIX) - 1 + app.id.len;
    app.group.data = static_cast<u_char *>(ngx_pnalloc(cf->pool,
                                                       app.group.len));
    if (app.group.data == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_memcpy(ngx_cpymem(app.group.data, NGX_PUBSUB_PUSHER_GROUP_PREFIX,
                          sizeof(NGX_PUBSUB_PUSHER_GROUP_PREFIX) - 1),
               app.id.data, app.id.len);

    (void) cmd;

    return ngx_pubsub_pusher_app_add(cf, conf, &app);
}


static ngx_pubsub_pusher_app_t *
ngx_pubsub_pusher_find(ngx_array_t *apps, ngx_str_t *name, ngx_uint_t by_key)
{
    ngx_str_t                *s;
    ngx_uint_t                i;
    ngx_pubsub_pusher_app_t  *a;

    if (apps == NULL) {
        return NULL;
    }

    a = static_cast<ngx_pubsub_pusher_app_t *>(apps->elts);

    for (i = 0; i < apps->nelts; i++) {
        s = by_key ? &a[i].key : &a[i].id;

        if (s->len == name->len
            && ngx_strncmp(s->data, name->data, name->len) == 0)
        {
            return &a[i];
        }
    }

    return NULL;
}


static ngx_pubsub_pusher_app_t *
ngx_pubsub_pusher_lookup(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t by_key)
{
    ngx_pubsub_pusher_app_t        *app;
    ngx_pubsub_pusher_srv_conf_t   *ppscf;
    ngx_pubsub_pusher_main_conf_t  *ppmcf;

    ppscf = static_cast<ngx_pubsub_pusher_srv_conf_t *>(
                ngx_http_get_module_srv_conf(r, ngx_pubsub_pusher_module));
    app = ngx_pubsub_pusher_find(ppscf->apps, name, by_key);
    if (app != NULL) {
        return app;
    }

    ppmcf = static_cast<ngx_pubsub_pusher_main_conf_t *>(
                ngx_http_get_module_main_conf(r, ngx_pubsub_pusher_module));

    return ngx_pubsub_pusher_find(ppmcf->apps, name, by_key);
}


ngx_pubsub_pusher_app_t *
ngx_pubsub_pusher_app_by_key(ngx_http_request_t *r, ngx_str_t *key)
{
    return ngx_pubsub_pusher_lookup(r, key, 1);
}


ngx_pubsub_pusher_app_t *
ngx_pubsub_pusher_app_by_id(ngx_http_request_t *r, ngx_str_t *id)
{
    return ngx_pubsub_pusher_lookup(r, id, 0);
}
