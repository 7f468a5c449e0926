/*
 * ngx_pubsub: the module's definition, its directive table, the main and
 * location configurations and the per-process init/exit.  The directives'
 * own handlers are in ngx_pubsub_directives.cpp, the content handler in
 * ngx_pubsub_router.cpp, the helpers every handler uses in
 * ngx_pubsub_http.cpp.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_conf.h"
#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_hooks.h"
#include "ngx_pubsub_redis.h"     /* its directives */
#include "ngx_pubsub_worker.h"

#include <new>

#include <string>

#include "pubsub/channel_id.h"
#include "pubsub/codec/format.h"


static void *ngx_pubsub_create_main_conf(ngx_conf_t *cf);
static char *ngx_pubsub_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_pubsub_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pubsub_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_pubsub_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_pubsub_init_process(ngx_cycle_t *cycle);
static void ngx_pubsub_exit_process(ngx_cycle_t *cycle);


#define NGX_PUBSUB_LOC  (NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF)

ngx_connection_t      ngx_pubsub_dumb_conn;
ngx_pubsub_worker_t  *ngx_pubsub_worker;


/* roles given to ngx_pubsub_role() through cmd->post */
static ngx_uint_t  ngx_pubsub_role_publisher = 1;
static ngx_uint_t  ngx_pubsub_role_subscriber = 2;
static ngx_uint_t  ngx_pubsub_role_pubsub = 3;

/* channel id arrays given to ngx_pubsub_channel_id_set() */
static ngx_uint_t  ngx_pubsub_ids_both = 0;
static ngx_uint_t  ngx_pubsub_ids_pub = 1;
static ngx_uint_t  ngx_pubsub_ids_sub = 2;


/* the post of pubsub_group_max_messages_memory: a size, not a count */
static ngx_uint_t  ngx_pubsub_limit_size = 1;


static ngx_command_t  ngx_pubsub_commands[] = {

    { ngx_string("pubsub_publisher"),
      NGX_PUBSUB_LOC|NGX_CONF_NOARGS|NGX_CONF_TAKE12,
      ngx_pubsub_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_role_publisher },

    { ngx_string("pubsub_subscriber"),
      NGX_PUBSUB_LOC|NGX_CONF_ANY,
      ngx_pubsub_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_role_subscriber },

    { ngx_string("pubsub_pubsub"),
      NGX_PUBSUB_LOC|NGX_CONF_ANY,
      ngx_pubsub_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_role_pubsub },

    { ngx_string("pubsub_channel_id"),
      NGX_PUBSUB_LOC|NGX_CONF_1MORE,
      ngx_pubsub_channel_id_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_ids_both },

    { ngx_string("pubsub_publisher_channel_id"),
      NGX_PUBSUB_LOC|NGX_CONF_1MORE,
      ngx_pubsub_channel_id_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_ids_pub },

    { ngx_string("pubsub_subscriber_channel_id"),
      NGX_PUBSUB_LOC|NGX_CONF_1MORE,
      ngx_pubsub_channel_id_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_pubsub_ids_sub },

    { ngx_string("pubsub_channel_id_split_delimiter"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, split_delimiter),
      NULL },

    { ngx_string("pubsub_channel_group"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, channel_group),
      NULL },

    { ngx_string("pubsub_max_channel_id_length"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, max_channel_id_length),
      NULL },

    { ngx_string("pubsub_message_buffer_length"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, buffer_length),
      NULL },

    { ngx_string("pubsub_message_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, message_timeout),
      NULL },

    { ngx_string("pubsub_subscribe_existing_channels_only"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, existing_only),
      NULL },

    { ngx_string("pubsub_channel_events_channel_id"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_chev_id_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_channel_event_string"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, chevent_string),
      NULL },

    { ngx_string("pubsub_subscriber_first_message"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_first_message,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_subscriber_last_message_id"),
      NGX_PUBSUB_LOC|NGX_CONF_1MORE,
      ngx_pubsub_channel_id_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, last_message_id),
      NULL },

    { ngx_string("pubsub_subscriber_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, subscriber_timeout),
      NULL },

    { ngx_string("pubsub_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, ping_interval),
      NULL },

    { ngx_string("pubsub_eventsource_event"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, eventsource_event),
      NULL },

    { ngx_string("pubsub_eventsource_ping_event"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, es_ping_event),
      NULL },

    { ngx_string("pubsub_eventsource_ping_data"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, es_ping_data),
      NULL },

    { ngx_string("pubsub_eventsource_ping_comment"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, es_ping_comment),
      NULL },

    { ngx_string("pubsub_longpoll_multipart_response"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_longpoll_multipart,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_subscriber_http_raw_stream_separator"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_separator,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, raw_separator),
      NULL },

    { ngx_string("pubsub_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, allowed_origins),
      NULL },

    { ngx_string("pubsub_access_control_allow_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, allow_credentials),
      NULL },

    { ngx_string("pubsub_websocket_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, ws_max_message_size),
      NULL },

    { ngx_string("pubsub_deflate_message_for_websocket"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, deflate_for_websocket),
      NULL },

    { ngx_string("pubsub_subscriber_max_pending"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, max_pending),
      NULL },

    { ngx_string("pubsub_redis_server"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_pubsub_redis_server,
      0,
      0,
      NULL },

    { ngx_string("pubsub_redis_pass"),
      NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_redis_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_group_max_channels"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_conf_set_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_channels),
      NULL },

    { ngx_string("pubsub_group_max_subscribers"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_conf_set_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_subscribers),
      NULL },

    { ngx_string("pubsub_group_max_messages_memory"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_pubsub_conf_set_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_memory),
      &ngx_pubsub_limit_size },

    { ngx_string("pubsub_group_location"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE123,
      ngx_pubsub_group_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_subscriber_info"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_pubsub_subscriber_info,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_subscriber_info_string"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, subscriber_info_string),
      NULL },

    { ngx_string("pubsub_status"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_pubsub_status_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_presence"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, presence),
      NULL },

    { ngx_string("pubsub_presence_id"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, presence_id),
      NULL },

    { ngx_string("pubsub_presence_events"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, presence_events),
      NULL },

    { ngx_string("pubsub_presence_leave_delay"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, presence_leave_delay),
      NULL },

    { ngx_string("pubsub_presence_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, presence_ttl),
      NULL },

    { ngx_string("pubsub_presence_api"),
      NGX_PUBSUB_LOC|NGX_CONF_NOARGS,
      ngx_pubsub_presence_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pubsub_shm_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_pubsub_main_conf_t, shm_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_pubsub_module_ctx = {
    ngx_pubsub_chev_add_variables,         /* preconfiguration */
    ngx_pubsub_router_init,                /* postconfiguration */

    ngx_pubsub_create_main_conf,           /* create main configuration */
    ngx_pubsub_init_main_conf,             /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_pubsub_create_loc_conf,            /* create location configuration */
    ngx_pubsub_merge_loc_conf              /* merge location configuration */
};


ngx_module_t  ngx_pubsub_module = {
    NGX_MODULE_V1,
    &ngx_pubsub_module_ctx,                /* module context */
    ngx_pubsub_commands,                   /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_pubsub_init_module,                /* init module */
    ngx_pubsub_init_process,               /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_pubsub_exit_process,               /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_pubsub_create_main_conf(ngx_conf_t *cf)
{
    ngx_pubsub_main_conf_t  *pmcf;

    pmcf = static_cast<ngx_pubsub_main_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_main_conf_t)));
    if (pmcf == NULL) {
        return NULL;
    }

    pmcf->shm_size = NGX_CONF_UNSET_SIZE;

    return pmcf;
}


static char *
ngx_pubsub_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_pubsub_main_conf_t  *pmcf = static_cast<ngx_pubsub_main_conf_t *>(conf);

    ngx_conf_init_size_value(pmcf->shm_size, 128 * 1024 * 1024);

    if (pmcf->shm_size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_shm_size %uz is too small", pmcf->shm_size);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_pubsub_shm_conf(cf, pmcf) != NGX_OK
        || ngx_pubsub_stats_conf(cf) != NGX_OK)
    {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_pubsub_engine_check_conf(cf, pmcf) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


static void *
ngx_pubsub_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pubsub_loc_conf_t  *plcf;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_pcalloc(cf->pool, sizeof(ngx_pubsub_loc_conf_t)));
    if (plcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *     plcf->roles = 0;
     *     plcf->channel_id = NULL;  and the other pointers
     *     plcf->split_delimiter = { 0, NULL };  and the other strings
     *     plcf->engine = NULL;  until a directive or the merge picks one
     */

    plcf->roles = NGX_CONF_UNSET_UINT;
    plcf->channel_id = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    plcf->pub_channel_id = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    plcf->sub_channel_id = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    plcf->last_message_id = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    plcf->max_channel_id_length = NGX_CONF_UNSET_UINT;
    plcf->existing_only = NGX_CONF_UNSET;
    plcf->chevents_id = static_cast<ngx_http_complex_value_t *>(
                            NGX_CONF_UNSET_PTR);
    plcf->first_message_kind = NGX_CONF_UNSET;
    plcf->first_message_n = NGX_CONF_UNSET;
    plcf->subscriber_timeout = NGX_CONF_UNSET_MSEC;
    plcf->ping_interval = NGX_CONF_UNSET_MSEC;
    plcf->longpoll_multipart = NGX_CONF_UNSET_UINT;
    plcf->allow_credentials = NGX_CONF_UNSET;
    plcf->ws_max_message_size = NGX_CONF_UNSET_SIZE;
    plcf->deflate_for_websocket = NGX_CONF_UNSET;
    plcf->max_pending = NGX_CONF_UNSET_SIZE;
    plcf->group_max_channels.set = NGX_CONF_UNSET;
    plcf->group_max_subscribers.set = NGX_CONF_UNSET;
    plcf->group_max_memory.set = NGX_CONF_UNSET;
    plcf->subscriber_info = NGX_CONF_UNSET;
    plcf->presence = NGX_CONF_UNSET;
    plcf->presence_events = NGX_CONF_UNSET;
    plcf->presence_leave_delay = NGX_CONF_UNSET_MSEC;
    plcf->presence_ttl = NGX_CONF_UNSET_MSEC;
    plcf->presence_api = NGX_CONF_UNSET;

    return plcf;
}


static ngx_int_t
ngx_pubsub_complex_default(ngx_conf_t *cf, ngx_http_complex_value_t **cv,
    const char *value)
{
    ngx_str_t  v;

    v.data = reinterpret_cast<u_char *>(const_cast<char *>(value));
    v.len = ngx_strlen(value);

    *cv = ngx_pubsub_conf_complex(cf, v);

    return *cv ? NGX_OK : NGX_ERROR;
}


/*
 * A presence API location answers queries: it has no subscribers, no
 * publishers and no members of its own, so what only they use cannot apply
 * there.  Written in it (before the merge, a field set in this location
 * is not unset), nginx -t refuses it (SPEC section 11) instead of ignoring
 * it.  What applies: the channel (id, subscriber id, split delimiter,
 * group, maximum length), origins and credentials, the Redis upstream.
 */
static char *
ngx_pubsub_presence_api_check(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *conf)
{
    const ngx_pubsub_conf_used_t  d[] = {
        { "pubsub_publisher_channel_id",
          conf->pub_channel_id != NGX_CONF_UNSET_PTR },
        { "pubsub_message_buffer_length", conf->buffer_length != NULL },
        { "pubsub_message_timeout", conf->message_timeout != NULL },
        { "pubsub_subscribe_existing_channels_only",
          conf->existing_only != NGX_CONF_UNSET },
        { "pubsub_channel_events_channel_id",
          conf->chevents_id != NGX_CONF_UNSET_PTR },
        { "pubsub_channel_event_string", conf->chevent_string != NULL },
        { "pubsub_subscriber_first_message",
          conf->first_message_kind != NGX_CONF_UNSET },
        { "pubsub_subscriber_last_message_id",
          conf->last_message_id != NGX_CONF_UNSET_PTR },
        { "pubsub_subscriber_timeout",
          conf->subscriber_timeout != NGX_CONF_UNSET_MSEC },
        { "pubsub_ping_interval", conf->ping_interval != NGX_CONF_UNSET_MSEC },
        { "pubsub_eventsource_event", conf->eventsource_event != NULL },
        { "pubsub_eventsource_ping_event", conf->es_ping_event.data != NULL },
        { "pubsub_eventsource_ping_data", conf->es_ping_data.data != NULL },
        { "pubsub_eventsource_ping_comment",
          conf->es_ping_comment.data != NULL },
        { "pubsub_longpoll_multipart_response",
          conf->longpoll_multipart != NGX_CONF_UNSET_UINT },
        { "pubsub_subscriber_http_raw_stream_separator",
          conf->raw_separator.data != NULL },
        { "pubsub_websocket_max_message_size",
          conf->ws_max_message_size != NGX_CONF_UNSET_SIZE },
        { "pubsub_deflate_message_for_websocket",
          conf->deflate_for_websocket != NGX_CONF_UNSET },
        { "pubsub_subscriber_max_pending",
          conf->max_pending != NGX_CONF_UNSET_SIZE },
        { "pubsub_group_max_channels",
          conf->group_max_channels.set != NGX_CONF_UNSET },
        { "pubsub_group_max_subscribers",
          conf->group_max_subscribers.set != NGX_CONF_UNSET },
        { "pubsub_group_max_messages_memory",
          conf->group_max_memory.set != NGX_CONF_UNSET },
        { "pubsub_presence", conf->presence != NGX_CONF_UNSET },
        { "pubsub_presence_id", conf->presence_id != NULL },
        { "pubsub_presence_events", conf->presence_events != NGX_CONF_UNSET },
        { "pubsub_presence_leave_delay",
          conf->presence_leave_delay != NGX_CONF_UNSET_MSEC },
        { "pubsub_presence_ttl", conf->presence_ttl != NGX_CONF_UNSET_MSEC },
    };

    return ngx_pubsub_conf_not_in_presence_api(cf, d, ngx_pubsub_nelts(d),
               "subscribers, publishers or members");
}


/* a role or the presence API owns the location's content handler */
static char *
ngx_pubsub_merge_handler(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    /*
     * a role or the presence API written in this location, whose content
     * handler a later directive (proxy_pass, return...) replaced
     */
    if (conf->roles != NGX_CONF_UNSET_UINT || conf->presence_api == 1) {
        ngx_http_core_loc_conf_t *clcf = static_cast<ngx_http_core_loc_conf_t *>(
            ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));

        if (clcf->handler != ngx_pubsub_handler) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pubsub_publisher, pubsub_subscriber, "
                               "pubsub_pubsub and pubsub_presence_api "
                               "cannot share a location with another "
                               "content handler");
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    if (conf->presence_api == 1
        && ngx_pubsub_presence_api_check(cf, conf) != NGX_CONF_OK)
    {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


/* channel ids, groups, buffers, channel events */
static char *
ngx_pubsub_merge_channels(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    ngx_conf_merge_uint_value(conf->roles, prev->roles, 0);
    ngx_conf_merge_ptr_value(conf->channel_id, prev->channel_id, NULL);
    ngx_conf_merge_ptr_value(conf->pub_channel_id, prev->pub_channel_id, NULL);
    ngx_conf_merge_ptr_value(conf->sub_channel_id, prev->sub_channel_id, NULL);
    ngx_conf_merge_str_value(conf->split_delimiter, prev->split_delimiter, "");

    if (conf->channel_group == NULL) {
        conf->channel_group = prev->channel_group;
    }

    ngx_conf_merge_uint_value(conf->max_channel_id_length,
                              prev->max_channel_id_length, 1024);

    if (conf->buffer_length == NULL) {
        conf->buffer_length = prev->buffer_length;
    }
    if (conf->buffer_length == NULL
        && ngx_pubsub_complex_default(cf, &conf->buffer_length, "10")
           != NGX_OK)
    {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (conf->message_timeout == NULL) {
        conf->message_timeout = prev->message_timeout;
    }
    if (conf->message_timeout == NULL
        && ngx_pubsub_complex_default(cf, &conf->message_timeout, "1h")
           != NGX_OK)
    {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_conf_merge_value(conf->existing_only, prev->existing_only, 0);

    if (ngx_pubsub_chev_merge(cf, prev, conf) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


/* where a new subscriber starts: first message, last message id */
static char *
ngx_pubsub_merge_start(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    if (conf->first_message_kind == NGX_CONF_UNSET) {
        conf->first_message_kind = prev->first_message_kind;
        conf->first_message_n = prev->first_message_n;
    }
    if (conf->first_message_kind == NGX_CONF_UNSET) {
        conf->first_message_kind = pubsub::StartSpec::kOldest;
        conf->first_message_n = 0;
    }

    ngx_conf_merge_ptr_value(conf->last_message_id, prev->last_message_id,
                             NULL);
    if (conf->last_message_id == NULL) {
        conf->last_message_id = ngx_array_create(cf->pool, 2,
                                            sizeof(ngx_http_complex_value_t));
        if (conf->last_message_id == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        static const char *defaults[] = { "$http_last_event_id",
                                          "$arg_last_event_id" };

        for (const char *d : defaults) {
            ngx_http_complex_value_t *cv, *slot;

            if (ngx_pubsub_complex_default(cf, &cv, d) != NGX_OK) {
                return static_cast<char *>(NGX_CONF_ERROR);
            }

            slot = static_cast<ngx_http_complex_value_t *>(
                       ngx_array_push(conf->last_message_id));
            if (slot == NULL) {
                return static_cast<char *>(NGX_CONF_ERROR);
            }
            *slot = *cv;
        }
    }

    return NGX_CONF_OK;
}


/* the transports: timeouts, pings, framing, origins, WebSocket */
static char *
ngx_pubsub_merge_transports(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    ngx_conf_merge_msec_value(conf->subscriber_timeout,
                              prev->subscriber_timeout, 0);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval, 30000);

    if (conf->eventsource_event == NULL) {
        conf->eventsource_event = prev->eventsource_event;
    }

    ngx_conf_merge_str_value(conf->es_ping_event, prev->es_ping_event, "");
    ngx_conf_merge_str_value(conf->es_ping_data, prev->es_ping_data, "");
    ngx_conf_merge_str_value(conf->es_ping_comment, prev->es_ping_comment, "");
    ngx_conf_merge_uint_value(conf->longpoll_multipart,
                              prev->longpoll_multipart,
                              NGX_PUBSUB_LP_MULTIPART_OFF);
    ngx_conf_merge_str_value(conf->raw_separator, prev->raw_separator, "\n");

    if (conf->allowed_origins == NULL) {
        conf->allowed_origins = prev->allowed_origins;
    }

    ngx_conf_merge_value(conf->allow_credentials, prev->allow_credentials, 1);
    ngx_conf_merge_size_value(conf->ws_max_message_size,
                              prev->ws_max_message_size, 64 * 1024);
    ngx_conf_merge_value(conf->deflate_for_websocket,
                         prev->deflate_for_websocket, 0);
    ngx_conf_merge_size_value(conf->max_pending, prev->max_pending,
                              1024 * 1024);
    ngx_pubsub_engine_inherit(conf, prev);

    return NGX_CONF_OK;
}


/* group limits and presence */
static char *
ngx_pubsub_merge_presence(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    ngx_pubsub_merge_limit(&conf->group_max_channels,
                           &prev->group_max_channels);
    ngx_pubsub_merge_limit(&conf->group_max_subscribers,
                           &prev->group_max_subscribers);
    ngx_pubsub_merge_limit(&conf->group_max_memory, &prev->group_max_memory);
    ngx_conf_merge_value(conf->subscriber_info, prev->subscriber_info, 0);
    if (conf->subscriber_info_string == NULL) {
        conf->subscriber_info_string = prev->subscriber_info_string;
    }
    ngx_conf_merge_value(conf->presence, prev->presence, 0);
    if (conf->presence_id == NULL) {
        conf->presence_id = prev->presence_id;
    }
    ngx_conf_merge_value(conf->presence_events, prev->presence_events, 0);
    ngx_conf_merge_msec_value(conf->presence_leave_delay,
                              prev->presence_leave_delay, 5000);
    ngx_conf_merge_msec_value(conf->presence_ttl, prev->presence_ttl, 30000);
    /* a location's own role: not inherited */
    if (conf->presence_api == NGX_CONF_UNSET) {
        conf->presence_api = 0;
    }

    if (conf->presence_leave_delay > 24 * 3600 * 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_leave_delay is longer than 24h");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (conf->presence_ttl < 1000 || conf->presence_ttl > 24 * 3600 * 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pubsub_presence_ttl must be from 1s to 24h");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pubsub_loc_conf_t  *prev = static_cast<ngx_pubsub_loc_conf_t *>(parent);
    ngx_pubsub_loc_conf_t  *conf = static_cast<ngx_pubsub_loc_conf_t *>(child);

    if (ngx_pubsub_merge_handler(cf, prev, conf) != NGX_CONF_OK
        || ngx_pubsub_merge_channels(cf, prev, conf) != NGX_CONF_OK
        || ngx_pubsub_merge_start(cf, prev, conf) != NGX_CONF_OK
        || ngx_pubsub_merge_transports(cf, prev, conf) != NGX_CONF_OK
        || ngx_pubsub_merge_presence(cf, prev, conf) != NGX_CONF_OK)
    {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (ngx_pubsub_engine_merge(cf, conf) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (conf->roles) {
        conf->pub_roles = conf->roles & NGX_PUBSUB_PUB_ALL;
        conf->sub_roles = conf->roles & NGX_PUBSUB_SUB_ALL;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_pubsub_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_dumb_conn.fd = (ngx_socket_t) -1;

    /* the worker's root: every subsystem's state hangs off it */
    ngx_pubsub_worker = new (std::nothrow) ngx_pubsub_worker_t();
    if (ngx_pubsub_worker == NULL) {
        return NGX_ERROR;
    }

    if (ngx_pubsub_ws_init_process(cycle) != NGX_OK
        || ngx_pubsub_chev_init_process(cycle) != NGX_OK
        || ngx_pubsub_stats_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pubsub_engines_init_process(cycle);
}


/*
 * Every part of the worker root ends here, then the root goes: channel
 * events first (nothing is queued any more), the engines, status, the
 * WebSocket lists, and the hooks' parked long-poll sessions too (this runs
 * before ngx_pubsub_hooks_module's exit_process, when the root still is).
 */
static void
ngx_pubsub_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_chev_exit_process(cycle);
    ngx_pubsub_engines_exit_process(cycle);
    ngx_pubsub_stats_exit_process(cycle);
    ngx_pubsub_ws_exit_process(cycle);
    ngx_pubsub_hook_poll_forget();

    delete ngx_pubsub_worker;
    ngx_pubsub_worker = NULL;
}




static ngx_int_t
ngx_pubsub_init_module(ngx_cycle_t *cycle)
{
    return ngx_pubsub_guard(cycle->log, [cycle] {
        return ngx_pubsub_shm_init_module(cycle);
    });
}
