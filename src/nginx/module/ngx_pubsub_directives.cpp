/*
 * ngx_pubsub: the handlers of the directives that need more than nginx's
 * slot functions - roles, channel ids, first message, long-poll multipart
 * and the raw-stream separator.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_conf.h"

#include <string>


/*
 * Makes `handler` the location's content handler.  A location has one:
 * a second one (pubsub_status, pubsub_presence_api, a role, proxy_pass...)
 * would silently replace the first, so nginx -t refuses it.
 */
char *
ngx_pubsub_conf_content_handler(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));

    if (clcf->handler != NULL && clcf->handler != handler) {
        return const_cast<char *>("cannot share a location with another "
                                  "content handler (one of pubsub_publisher, "
                                  "pubsub_subscriber, pubsub_pubsub, "
                                  "pubsub_presence_api, pubsub_status, "
                                  "proxy_pass, return...)");
    }

    clcf->handler = handler;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_pubsub_conf_compile(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv)
{
    ngx_http_compile_complex_value_t  ccv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;

    return ngx_http_compile_complex_value(&ccv);
}


ngx_http_complex_value_t *
ngx_pubsub_conf_complex(ngx_conf_t *cf, ngx_str_t value)
{
    ngx_http_complex_value_t  *cv;

    cv = static_cast<ngx_http_complex_value_t *>(
             ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t)));
    if (cv == NULL || ngx_pubsub_conf_compile(cf, &value, cv) != NGX_OK) {
        return NULL;
    }

    return cv;
}


/*
 * A pubsub location is of one kind: a role (pubsub_publisher,
 * pubsub_subscriber, pubsub_pubsub), pubsub_presence_api,
 * pubsub_group_location or pubsub_subscriber_info.  NULL when plcf is of
 * no kind but `kind`, else the error text for nginx -t.
 */
char *
ngx_pubsub_conf_other_kind(ngx_pubsub_loc_conf_t *plcf, ngx_uint_t kind)
{
    static const char *const  others[] = {
        "cannot share a location with pubsub_presence_api, "
        "pubsub_group_location or pubsub_subscriber_info",
        "cannot share a location with pubsub_publisher, pubsub_subscriber, "
        "pubsub_pubsub, pubsub_group_location or pubsub_subscriber_info",
        "cannot share a location with pubsub_publisher, pubsub_subscriber, "
        "pubsub_pubsub, pubsub_presence_api or pubsub_subscriber_info",
        "cannot share a location with pubsub_publisher, pubsub_subscriber, "
        "pubsub_pubsub, pubsub_presence_api or pubsub_group_location",
    };

    const bool  is[] = {
        plcf->roles != NGX_CONF_UNSET_UINT,
        plcf->presence_api == 1,
        plcf->group_location != 0,
        plcf->subscriber_info == 1,
    };

    for (ngx_uint_t k = 0; k < ngx_pubsub_nelts(is); k++) {
        if (k != kind && is[k]) {
            return const_cast<char *>(others[kind]);
        }
    }

    return NULL;
}


ngx_int_t
ngx_pubsub_conf_keyword(ngx_str_t arg, const ngx_pubsub_keyword_t *words,
    ngx_uint_t n, ngx_int_t *value)
{
    std::string_view  a = ngx_pubsub_sv(arg);

    for (ngx_uint_t i = 0; i < n; i++) {
        if (a == words[i].word) {
            *value = words[i].value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


char *
ngx_pubsub_conf_not_in_presence_api(ngx_conf_t *cf,
    const ngx_pubsub_conf_used_t *d, ngx_uint_t n, const char *lacks)
{
    for (ngx_uint_t i = 0; i < n; i++) {
        if (d[i].set) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" cannot apply in a pubsub_presence_api "
                               "location (it has no %s)", d[i].name, lacks);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    return NGX_CONF_OK;
}


/* the words of the role directives: what each adds to a publisher role
 * (role & 1) and to a subscriber role (role & 2) */
static const struct {
    const char  *word;
    ngx_uint_t   pub;
    ngx_uint_t   sub;
} ngx_pubsub_role_words[] = {
    { "http", NGX_PUBSUB_PUB_HTTP, 0 },
    { "websocket", NGX_PUBSUB_PUB_WEBSOCKET, NGX_PUBSUB_SUB_WEBSOCKET },
    { "eventsource", 0, NGX_PUBSUB_SUB_EVENTSOURCE },
    { "longpoll", 0, NGX_PUBSUB_SUB_LONGPOLL },
    { "intervalpoll", 0, NGX_PUBSUB_SUB_INTERVALPOLL },
    { "chunked", 0, NGX_PUBSUB_SUB_CHUNKED },
    { "multipart", 0, NGX_PUBSUB_SUB_MULTIPART },
    { "multipart-mixed", 0, NGX_PUBSUB_SUB_MULTIPART },
    { "rawstream", 0, NGX_PUBSUB_SUB_RAWSTREAM },
    { "http-raw-stream", 0, NGX_PUBSUB_SUB_RAWSTREAM },
};


/* adds word `a` to *pub and *sub; NGX_ERROR when it means nothing here */
static ngx_int_t
ngx_pubsub_role_word(std::string_view a, ngx_uint_t role, ngx_uint_t *pub,
    ngx_uint_t *sub)
{
    for (const auto &w : ngx_pubsub_role_words) {
        ngx_uint_t  p = (role & 1) ? w.pub : 0;
        ngx_uint_t  s = (role & 2) ? w.sub : 0;

        if (a == w.word && (p | s)) {
            *pub |= p;
            *sub |= s;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}



char *
ngx_pubsub_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t     *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    char                      *rv;
    ngx_str_t                 *value;
    ngx_uint_t                 i, role, roles, pub, sub;

    role = *static_cast<ngx_uint_t *>(cmd->post);

    if (plcf->roles != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("is duplicate: a location has one of "
                                  "pubsub_publisher, pubsub_subscriber, "
                                  "pubsub_pubsub");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);
    pub = 0;
    sub = 0;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_pubsub_role_word(ngx_pubsub_sv(value[i]), role, &pub, &sub)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\"",
                               &value[i], &cmd->name);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    if ((role & 1) && pub == 0) {
        pub = (role == 3 && sub) ? 0 : NGX_PUBSUB_PUB_ALL;
        if (role == 3 && sub) {
            /* "pubsub_pubsub eventsource" publishes over http only */
            pub = NGX_PUBSUB_PUB_HTTP;
            if (sub & NGX_PUBSUB_SUB_WEBSOCKET) {
                pub |= NGX_PUBSUB_PUB_WEBSOCKET;
            }
        }
    }

    if ((role & 2) && sub == 0) {
        sub = NGX_PUBSUB_SUB_DEFAULT;
    }

    rv = ngx_pubsub_conf_other_kind(plcf, NGX_PUBSUB_LOC_ROLE);
    if (rv != NULL) {
        return rv;
    }

    roles = pub | sub;
    plcf->roles = roles;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_handler);
}


char *
ngx_pubsub_presence_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t     *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    char                      *rv;

    if (plcf->presence_api != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    rv = ngx_pubsub_conf_other_kind(plcf, NGX_PUBSUB_LOC_PRESENCE_API);
    if (rv != NULL) {
        return rv;
    }

    plcf->presence_api = 1;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_handler);
}


/* pubsub_channel_id and friends: arrays of complex values */
char *
ngx_pubsub_channel_id_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t      *plcf;
    ngx_array_t               **slot;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_complex_value_t   *cv;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);

    if (cmd->post == NULL) {
        slot = reinterpret_cast<ngx_array_t **>(
                   reinterpret_cast<char *>(conf) + cmd->offset);

    } else {
        switch (*static_cast<ngx_uint_t *>(cmd->post)) {
        case 1:
            slot = &plcf->pub_channel_id;
            break;
        case 2:
            slot = &plcf->sub_channel_id;
            break;
        default:
            slot = &plcf->channel_id;
        }
    }

    if (*slot != NGX_CONF_UNSET_PTR) {
        return const_cast<char *>("is duplicate");
    }

    if (cf->args->nelts - 1 > NGX_PUBSUB_MAX_CHANNELS) {
        return const_cast<char *>("takes at most 255 values");
    }

    *slot = ngx_array_create(cf->pool, cf->args->nelts - 1,
                             sizeof(ngx_http_complex_value_t));
    if (*slot == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    for (i = 1; i < cf->args->nelts; i++) {
        cv = static_cast<ngx_http_complex_value_t *>(ngx_array_push(*slot));
        if (cv == NULL
            || ngx_pubsub_conf_compile(cf, &value[i], cv) != NGX_OK)
        {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_pubsub_first_message(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    static const ngx_pubsub_keyword_t  kinds[] = {
        { "oldest", pubsub::StartSpec::kOldest },
        { "newest", pubsub::StartSpec::kNewest },
    };

    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_str_t              *value;
    ngx_int_t               n;
    ngx_uint_t              neg;

    if (plcf->first_message_kind != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (ngx_pubsub_conf_keyword(value[1], kinds, ngx_pubsub_nelts(kinds),
                                &plcf->first_message_kind)
        == NGX_OK)
    {
        plcf->first_message_n = 0;
        return NGX_CONF_OK;
    }

    neg = (value[1].len > 1 && value[1].data[0] == '-');
    n = ngx_atoi(value[1].data + neg, value[1].len - neg);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": expected oldest, newest, "
                           "N or -N", &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (n == 0) {
        plcf->first_message_kind = pubsub::StartSpec::kNewest;

    } else {
        plcf->first_message_kind = neg ? pubsub::StartSpec::kFromNewest
                                       : pubsub::StartSpec::kFromOldest;
    }

    plcf->first_message_n = n;

    return NGX_CONF_OK;
}


char *
ngx_pubsub_longpoll_multipart(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    static const ngx_pubsub_keyword_t  modes[] = {
        { "off", NGX_PUBSUB_LP_MULTIPART_OFF },
        { "on", NGX_PUBSUB_LP_MULTIPART_ON },
        { "raw", NGX_PUBSUB_LP_MULTIPART_RAW },
    };

    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_str_t              *value;
    ngx_int_t               mode;

    if (plcf->longpoll_multipart != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (ngx_pubsub_conf_keyword(value[1], modes, ngx_pubsub_nelts(modes),
                                &mode)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": expected off, on or raw",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    plcf->longpoll_multipart = mode;

    return NGX_CONF_OK;
}


/* the raw-stream separator: "\n" is appended unless the value is empty */
char *
ngx_pubsub_separator(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_str_t              *value;

    if (plcf->raw_separator.data != NULL) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 0) {
        plcf->raw_separator.data = value[1].data;
        plcf->raw_separator.len = 0;
        return NGX_CONF_OK;
    }

    plcf->raw_separator.data = static_cast<u_char *>(
                                   ngx_pnalloc(cf->pool, value[1].len + 1));
    if (plcf->raw_separator.data == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_memcpy(plcf->raw_separator.data, value[1].data, value[1].len);
    plcf->raw_separator.data[value[1].len] = '\n';
    plcf->raw_separator.len = value[1].len + 1;

    return NGX_CONF_OK;
}
