/*
 * ngx_pubsub hooks: the module (ngx_pubsub_hooks_module), its directives
 * and configuration (docs/directives.md), its variables ($pubsub_channel_id
 * and the others, docs/hooks.md), and the small helpers every hook file
 * uses.  The hooks themselves: see ngx_pubsub_hooks_internal.h for which
 * file holds what.
 */

#include "ngx_pubsub_hooks_internal.h"
#include "ngx_pubsub_hooks_queue.h"
#include "ngx_pubsub_chevents.h"

#include <string>


const char * const  ngx_pubsub_hook_names[] = {
    "authorize", "subscribe", "unsubscribe", "publisher upstream", "presence",
    "pusher webhook"
};

ngx_http_complex_value_t  ngx_pubsub_hook_off;


static ngx_int_t ngx_pubsub_hooks_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_pubsub_hooks_postconfiguration(ngx_conf_t *cf);
static void *ngx_pubsub_hooks_create_main_conf(ngx_conf_t *cf);
static char *ngx_pubsub_presence_request_set(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_pubsub_hooks_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pubsub_hooks_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_pubsub_hook_uri_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_token_key_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_pubsub_hooks_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_pubsub_hooks_init_process(ngx_cycle_t *cycle);
static char *ngx_pubsub_hooks_init_main_conf(ngx_conf_t *cf, void *conf);


#define NGX_PUBSUB_LOC  (NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF)

static ngx_command_t  ngx_pubsub_hooks_commands[] = {

    { ngx_string("pubsub_authorize_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, authorize),
      NULL },

    { ngx_string("pubsub_subscribe_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, subscribe),
      NULL },

    { ngx_string("pubsub_unsubscribe_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, unsubscribe),
      NULL },

    { ngx_string("pubsub_publisher_upstream_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_hook_uri_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, upstream),
      NULL },

    { ngx_string("pubsub_presence_request"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_presence_request_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_token"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, token),
      NULL },

    { ngx_string("pubsub_token_key"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_token_key_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_hook_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_main_conf_t, queue_size),
      NULL },

    { ngx_string("pubsub_longpoll_session_grace"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_hooks_loc_conf_t, poll_grace),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_pubsub_hooks_module_ctx = {
    ngx_pubsub_hooks_preconfiguration,     /* preconfiguration */
    ngx_pubsub_hooks_postconfiguration,    /* postconfiguration */

    ngx_pubsub_hooks_create_main_conf,     /* create main configuration */
    ngx_pubsub_hooks_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_pubsub_hooks_create_loc_conf,      /* create location configuration */
    ngx_pubsub_hooks_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_pubsub_hooks_module = {
    NGX_MODULE_V1,
    &ngx_pubsub_hooks_module_ctx,          /* module context */
    ngx_pubsub_hooks_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_pubsub_hooks_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_pubsub_hooks_exit_process,         /* exit process (the queue; the
                                              parked sessions end with
                                              ngx_pubsub_module's) */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* small helpers */

ngx_int_t
ngx_pubsub_hook_dup(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t src)
{
    dst->len = src.len;

    if (src.len == 0) {
        dst->data = NULL;
        return NGX_OK;
    }

    dst->data = static_cast<u_char *>(ngx_pnalloc(pool, src.len));
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src.data, src.len);

    return NGX_OK;
}


ngx_str_t
ngx_pubsub_hook_cstr(const char *s)
{
    ngx_str_t  v;

    v.data = reinterpret_cast<u_char *>(const_cast<char *>(s));
    v.len = ngx_strlen(s);

    return v;
}


ngx_uint_t
ngx_pubsub_hook_active(ngx_http_complex_value_t *cv)
{
    return cv != NULL && cv != &ngx_pubsub_hook_off;
}


ngx_pubsub_hooks_loc_conf_t *
ngx_pubsub_hooks_conf(ngx_http_request_t *r)
{
    return static_cast<ngx_pubsub_hooks_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_hooks_module));
}


/* whether the header name `key` is one of `names` (lowercase) */
ngx_uint_t
ngx_pubsub_hook_header_is(ngx_str_t key, const char * const *names,
    ngx_uint_t n)
{
    size_t  len;

    for (ngx_uint_t i = 0; i < n; i++) {
        len = ngx_strlen(names[i]);

        if (key.len == len
            && ngx_strncasecmp(key.data, reinterpret_cast<u_char *>(
                                   const_cast<char *>(names[i])), len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* variables */

enum {
    NGX_PUBSUB_VAR_CHANNEL_ID = 0,
    NGX_PUBSUB_VAR_SUB_TYPE,
    NGX_PUBSUB_VAR_PUB_TYPE,
    NGX_PUBSUB_VAR_MSG_ID,
    NGX_PUBSUB_VAR_PREV_ID,
    NGX_PUBSUB_VAR_PRESENCE_ID
};


/* v is s, evaluated again for each use */
static ngx_int_t
ngx_pubsub_hook_var_found(ngx_http_variable_value_t *v, ngx_str_t s)
{
    v->len = s.len;
    v->data = s.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_hook_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    return ngx_pubsub_guard(r->connection->log,
                            [r, v, data]() -> ngx_int_t {
        ngx_pubsub_hook_ctx_t  *ctx;
        ngx_str_t               s;

        /* in a channel event's string: the event's channel */
        if (data == NGX_PUBSUB_VAR_CHANNEL_ID
            && ngx_pubsub_chev_channel_id(&s))
        {
            return ngx_pubsub_hook_var_found(v, s);
        }

        ctx = ngx_pubsub_hook_get_ctx(r);
        if (ctx == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        s.len = 0;
        s.data = NULL;

        ngx_pubsub_hook_ids_text(r->main->pool, ctx);

        switch (data) {
        case NGX_PUBSUB_VAR_CHANNEL_ID:
            if (ctx->nids) {
                s = ctx->ids[0];
            }
            break;
        case NGX_PUBSUB_VAR_SUB_TYPE:
            s = ctx->sub_type;
            break;
        case NGX_PUBSUB_VAR_PUB_TYPE:
            s = ctx->pub_type;
            break;
        case NGX_PUBSUB_VAR_MSG_ID:
            s = ctx->msg_id;
            break;
        case NGX_PUBSUB_VAR_PREV_ID:
            s = ctx->prev_id;
            break;
        case NGX_PUBSUB_VAR_PRESENCE_ID:
            s = ctx->ident.presence_id;
            break;
        }

        if (s.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        return ngx_pubsub_hook_var_found(v, s);
    });
}


/* $pubsub_channel_id_N: the N-th id (1-based) */
static ngx_int_t
ngx_pubsub_hook_channel_n_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    return ngx_pubsub_guard(r->connection->log,
                            [r, v, data]() -> ngx_int_t {
        ngx_str_t              *name = reinterpret_cast<ngx_str_t *>(data);
        ngx_pubsub_hook_ctx_t  *ctx;
        ngx_int_t               n;
        size_t                  prefix = sizeof("pubsub_channel_id_") - 1;

        v->not_found = 1;

        if (name->len <= prefix) {
            return NGX_OK;
        }

        n = ngx_atoi(name->data + prefix, name->len - prefix);

        ctx = ngx_pubsub_hook_get_ctx(r);
        if (ctx == NULL || n < 1 || (ngx_uint_t) n > ctx->nids) {
            return NGX_OK;
        }

        return ngx_pubsub_hook_var_found(v, ctx->ids[n - 1]);
    });
}


static ngx_int_t
ngx_pubsub_hooks_preconfiguration(ngx_conf_t *cf)
{
    static const struct {
        const char  *name;
        uintptr_t    data;
    } vars[] = {
        { "pubsub_channel_id", NGX_PUBSUB_VAR_CHANNEL_ID },
        { "pubsub_subscriber_type", NGX_PUBSUB_VAR_SUB_TYPE },
        { "pubsub_publisher_type", NGX_PUBSUB_VAR_PUB_TYPE },
        { "pubsub_message_id", NGX_PUBSUB_VAR_MSG_ID },
        { "pubsub_prev_message_id", NGX_PUBSUB_VAR_PREV_ID },
        { "pubsub_presence_id", NGX_PUBSUB_VAR_PRESENCE_ID },
    };

    ngx_http_variable_t  *var;
    ngx_str_t             name;

    for (const auto &d : vars) {
        name = ngx_pubsub_hook_cstr(d.name);

        var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_pubsub_hook_variable;
        var->data = d.data;
    }

    name = ngx_pubsub_hook_cstr("pubsub_channel_id_");

    var = ngx_http_add_variable(cf, &name,
                                NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_pubsub_hook_channel_n_variable;
    var->data = 0;

    return NGX_OK;
}


/* configuration */

static void *
ngx_pubsub_hooks_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pubsub_hooks_loc_conf_t  *conf;

    conf = static_cast<ngx_pubsub_hooks_loc_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_hooks_loc_conf_t)));
    if (conf == NULL) {
        return NULL;
    }

    conf->poll_grace = NGX_CONF_UNSET_MSEC;
    conf->presence = NGX_CONF_UNSET_UINT;

    return conf;
}


static void *
ngx_pubsub_hooks_create_main_conf(ngx_conf_t *cf)
{
    ngx_pubsub_hooks_main_conf_t  *hmcf;

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_hooks_main_conf_t)));
    if (hmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&hmcf->presence, cf->pool, 4,
                       sizeof(ngx_pubsub_presence_target_t)) != NGX_OK)
    {
        return NULL;
    }

    hmcf->queue_size = NGX_CONF_UNSET_SIZE;

    return hmcf;
}


/* the zone of the at-least-once queue (ngx_pubsub_hooks_queue.cpp) */
static char *
ngx_pubsub_hooks_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_pubsub_hooks_main_conf_t  *hmcf =
        static_cast<ngx_pubsub_hooks_main_conf_t *>(conf);

    ngx_conf_init_size_value(hmcf->queue_size, 4 * 1024 * 1024);

    if (hmcf->queue_size < 64 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_hook_queue_size must be at least 64k");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_pubsub_hookq_conf(cf, hmcf->queue_size) != NGX_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


/* pubsub_presence_request URI | off: a plain URI (no variables) */
static char *
ngx_pubsub_presence_request_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_pubsub_hooks_loc_conf_t   *hlcf;
    ngx_pubsub_hooks_main_conf_t  *hmcf;
    ngx_pubsub_presence_target_t  *t;
    ngx_str_t                     *value;
    u_char                        *q;

    hlcf = static_cast<ngx_pubsub_hooks_loc_conf_t *>(conf);

    if (hlcf->presence != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        hlcf->presence = 0;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_request \"%V\" must be a URI "
                           "starting with \"/\"", &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '$')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_request \"%V\" must not use "
                           "variables: events outlive the request",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_pubsub_hooks_module));

    t = static_cast<ngx_pubsub_presence_target_t *>(
            ngx_array_push(&hmcf->presence));
    if (t == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    t->ctx = static_cast<ngx_http_conf_ctx_t *>(cf->ctx);
    q = ngx_strlchr(value[1].data, value[1].data + value[1].len, '?');
    t->uri.data = value[1].data;
    t->uri.len = q ? (size_t) (q - value[1].data) : value[1].len;
    t->args.data = q ? q + 1 : NULL;
    t->args.len = q ? (size_t) (value[1].data + value[1].len - q - 1) : 0;

    hlcf->presence = hmcf->presence.nelts;

    return NGX_CONF_OK;
}


/*
 * A presence API location (written here: the role is not inherited)
 * runs the token and authorize checks; the other hooks cannot apply
 * there, and nginx -t says so (SPEC section 11) rather than ignore them.
 */
static char *
ngx_pubsub_hooks_presence_api_check(ngx_conf_t *cf,
    ngx_pubsub_hooks_loc_conf_t *conf)
{
    ngx_pubsub_loc_conf_t  *plcf;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_conf_get_module_loc_conf(cf, ngx_pubsub_module));

    if (plcf->presence_api != 1) {
        return NGX_CONF_OK;
    }

    const ngx_pubsub_conf_used_t  hooks[] = {
        { "pubsub_subscribe_request",
          ngx_pubsub_hook_active(conf->subscribe) },
        { "pubsub_unsubscribe_request",
          ngx_pubsub_hook_active(conf->unsubscribe) },
        { "pubsub_publisher_upstream_request",
          ngx_pubsub_hook_active(conf->upstream) },
        { "pubsub_presence_request",
          conf->presence != NGX_CONF_UNSET_UINT && conf->presence != 0 },
        { "pubsub_longpoll_session_grace",
          conf->poll_grace != NGX_CONF_UNSET_MSEC },
    };

    return ngx_pubsub_conf_not_in_presence_api(cf, hooks,
               ngx_pubsub_nelts(hooks), "subscribers or publishers");
}


static char *
ngx_pubsub_hooks_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pubsub_hooks_loc_conf_t  *prev =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(parent);
    ngx_pubsub_hooks_loc_conf_t  *conf =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(child);

    if (ngx_pubsub_hooks_presence_api_check(cf, conf) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (conf->authorize == NULL) {
        conf->authorize = prev->authorize;
    }
    if (conf->subscribe == NULL) {
        conf->subscribe = prev->subscribe;
    }
    if (conf->unsubscribe == NULL) {
        conf->unsubscribe = prev->unsubscribe;
    }
    if (conf->upstream == NULL) {
        conf->upstream = prev->upstream;
    }
    if (conf->token == NULL) {
        conf->token = prev->token;
    }
    ngx_conf_merge_uint_value(conf->presence, prev->presence, 0);
    if (conf->token_key == NULL && !conf->token_key_off) {
        conf->token_key = prev->token_key;
    }

    /* a token key without pubsub_token: the Authorization header */
    if (conf->token_key && conf->token == NULL) {
        conf->token = ngx_pubsub_conf_complex(cf,
                          ngx_pubsub_hook_cstr("$http_authorization"));
        if (conf->token == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    ngx_conf_merge_msec_value(conf->poll_grace, prev->poll_grace, 5000);

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_hook_uri_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                       *p = static_cast<char *>(conf);
    ngx_http_complex_value_t  **field;
    ngx_str_t                  *value;

    field = reinterpret_cast<ngx_http_complex_value_t **>(p + cmd->offset);

    if (*field != NULL) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *field = &ngx_pubsub_hook_off;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || (value[1].data[0] != '/'
                              && value[1].data[0] != '$'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": the hook URI \"%V\" must be a local URI "
                           "starting with \"/\" (a location that "
                           "proxy_passes to the application)",
                           &cmd->name, &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    *field = ngx_pubsub_conf_complex(cf, value[1]);
    if (*field == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


static void
ngx_pubsub_token_key_cleanup(void *data)
{
    delete static_cast<pubsub::TokenKey *>(data);
}


static char *
ngx_pubsub_token_key_parse(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf =
        static_cast<ngx_pubsub_hooks_loc_conf_t *>(conf);
    ngx_str_t                    *value, path;
    ngx_pool_cleanup_t           *cln;
    std::string                   spec, error;
    size_t                        colon;

    (void) cmd;

    if (hlcf->token_key || hlcf->token_key_off) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        hlcf->token_key_off = 1;
        return NGX_CONF_OK;
    }

    std::string_view arg = ngx_pubsub_sv(value[1]);
    colon = arg.find(':');

    if (colon == std::string_view::npos) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_token_key: expected hs256:SECRET, "
                           "rs256:/path/pub.pem or es256:/path/pub.pem, "
                           "got \"%V\"", &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    spec.assign(arg);

    std::string_view alg = arg.substr(0, colon);
    bool is_file = alg.size() == 5
                   && (ngx_strncasecmp((u_char *) alg.data(),
                                       (u_char *) "rs256", 5) == 0
                       || ngx_strncasecmp((u_char *) alg.data(),
                                          (u_char *) "es256", 5) == 0);

    if (is_file && colon + 1 < arg.size()) {
        path.data = value[1].data + colon + 1;
        path.len = value[1].len - colon - 1;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        spec.assign(alg);
        spec.push_back(':');
        spec.append(ngx_pubsub_sv(path));
    }

    std::unique_ptr<pubsub::TokenKey> key = pubsub::TokenKey::load(spec, error);

    if (!key) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "pubsub_token_key: %s",
                           error.c_str());
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    hlcf->token_key = key.release();
    cln->handler = ngx_pubsub_token_key_cleanup;
    cln->data = hlcf->token_key;

    return NGX_CONF_OK;
}


/* the directive's handler: nothing may throw into nginx (std::bad_alloc) */
static char *
ngx_pubsub_token_key_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    try {
        return ngx_pubsub_token_key_parse(cf, cmd, conf);

    } catch (...) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_token_key: out of memory");
    }

    return static_cast<char *>(NGX_CONF_ERROR);
}


static ngx_int_t
ngx_pubsub_hooks_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = static_cast<ngx_http_core_main_conf_t *>(
               ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));

    h = static_cast<ngx_http_handler_pt *>(
            ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_pubsub_hooks_access;

    /* the capture of hook answers (ngx_pubsub_hooks_answer.cpp) */
    ngx_pubsub_hooks_init_filters();

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_hooks_init_process(ngx_cycle_t *cycle)
{
    return ngx_pubsub_hookq_init_process(cycle);
}


static void
ngx_pubsub_hooks_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_hookq_exit_process(cycle);
}
