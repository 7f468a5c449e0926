/*
 * ngx_pubsub: module definition, directives, configuration and the
 * content handler that routes a request to its role and transport.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_redis.h"

#include <string>

#include "pubsub/channel_id.h"
#include "pubsub/codec/format.h"


static void *ngx_pubsub_create_main_conf(ngx_conf_t *cf);
static char *ngx_pubsub_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_pubsub_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pubsub_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_pubsub_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_pubsub_presence_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_channel_id_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_first_message(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_longpoll_multipart(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_pubsub_separator(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_pubsub_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_pubsub_init_process(ngx_cycle_t *cycle);
static void ngx_pubsub_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_pubsub_handler(ngx_http_request_t *r);


#define NGX_PUBSUB_LOC  (NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF)

/* roles given to ngx_pubsub_role() through cmd->post */
static ngx_uint_t  ngx_pubsub_role_publisher = 1;
static ngx_uint_t  ngx_pubsub_role_subscriber = 2;
static ngx_uint_t  ngx_pubsub_role_pubsub = 3;

/* channel id arrays given to ngx_pubsub_channel_id_set() */
static ngx_uint_t  ngx_pubsub_ids_both = 0;
static ngx_uint_t  ngx_pubsub_ids_pub = 1;
static ngx_uint_t  ngx_pubsub_ids_sub = 2;


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
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_channels),
      NULL },

    { ngx_string("pubsub_group_max_subscribers"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_subscribers),
      NULL },

    { ngx_string("pubsub_group_max_messages_memory"),
      NGX_HTTP_MAIN_CONF|NGX_PUBSUB_LOC|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_pubsub_loc_conf_t, group_max_memory),
      NULL },

    { ngx_string("pubsub_status"),
      NGX_PUBSUB_LOC|NGX_CONF_NOARGS,
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
    NULL,                                  /* postconfiguration */

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

    if (ngx_pubsub_redis_check_conf(cf, pmcf) != NGX_CONF_OK) {
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
    plcf->redis = NGX_CONF_UNSET_PTR;
    plcf->group_max_channels = NGX_CONF_UNSET_UINT;
    plcf->group_max_subscribers = NGX_CONF_UNSET_UINT;
    plcf->group_max_memory = NGX_CONF_UNSET_SIZE;
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
    ngx_http_compile_complex_value_t   ccv;

    *cv = static_cast<ngx_http_complex_value_t *>(
              ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t)));
    if (*cv == NULL) {
        return NGX_ERROR;
    }

    ngx_str_t v;
    v.data = reinterpret_cast<u_char *>(const_cast<char *>(value));
    v.len = ngx_strlen(value);

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &v;
    ccv.complex_value = *cv;

    return ngx_http_compile_complex_value(&ccv);
}


static char *
ngx_pubsub_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pubsub_loc_conf_t  *prev = static_cast<ngx_pubsub_loc_conf_t *>(parent);
    ngx_pubsub_loc_conf_t  *conf = static_cast<ngx_pubsub_loc_conf_t *>(child);

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
    ngx_conf_merge_ptr_value(conf->redis, prev->redis, NULL);

    ngx_conf_merge_uint_value(conf->group_max_channels,
                              prev->group_max_channels, 0);
    ngx_conf_merge_uint_value(conf->group_max_subscribers,
                              prev->group_max_subscribers, 0);
    ngx_conf_merge_size_value(conf->group_max_memory,
                              prev->group_max_memory, 0);
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

    if (conf->presence && conf->redis) {
        /* the upstream refreshes presence at the pace of its least ttl */
        auto *up = static_cast<ngx_pubsub_redis_upstream_t *>(conf->redis);
        if (!up->presence || conf->presence_ttl < up->presence_ttl) {
            up->presence_ttl = conf->presence_ttl;
        }
        up->presence = 1;
    }

    if (conf->roles) {
        conf->pub_roles = conf->roles & NGX_PUBSUB_PUB_ALL;
        conf->sub_roles = conf->roles & NGX_PUBSUB_SUB_ALL;
    }

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t     *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_http_core_loc_conf_t  *clcf;
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
        std::string_view a = ngx_pubsub_sv(value[i]);

        if (a == "http" && (role & 1)) {
            pub |= NGX_PUBSUB_PUB_HTTP;

        } else if (a == "websocket") {
            if (role & 1) {
                pub |= NGX_PUBSUB_PUB_WEBSOCKET;
            }
            if (role & 2) {
                sub |= NGX_PUBSUB_SUB_WEBSOCKET;
            }

        } else if (a == "eventsource" && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_EVENTSOURCE;

        } else if (a == "longpoll" && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_LONGPOLL;

        } else if (a == "intervalpoll" && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_INTERVALPOLL;

        } else if (a == "chunked" && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_CHUNKED;

        } else if ((a == "multipart" || a == "multipart-mixed") && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_MULTIPART;

        } else if ((a == "rawstream" || a == "http-raw-stream") && (role & 2)) {
            sub |= NGX_PUBSUB_SUB_RAWSTREAM;

        } else {
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

    roles = pub | sub;
    plcf->roles = roles;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = ngx_pubsub_handler;

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_presence_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t     *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->presence_api != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    if (plcf->roles != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("cannot share a location with "
                                  "pubsub_publisher, pubsub_subscriber or "
                                  "pubsub_pubsub");
    }

    plcf->presence_api = 1;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = ngx_pubsub_handler;

    return NGX_CONF_OK;
}


/* pubsub_channel_id and friends: arrays of complex values */
static char *
ngx_pubsub_channel_id_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t             *plcf;
    ngx_array_t                      **slot;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

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
        if (cv == NULL) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &value[i];
        ccv.complex_value = cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_pubsub_first_message(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_str_t              *value;
    ngx_int_t               n;
    ngx_uint_t              neg;

    if (plcf->first_message_kind != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);
    std::string_view a = ngx_pubsub_sv(value[1]);

    if (a == "oldest") {
        plcf->first_message_kind = pubsub::StartSpec::kOldest;
        plcf->first_message_n = 0;
        return NGX_CONF_OK;
    }

    if (a == "newest") {
        plcf->first_message_kind = pubsub::StartSpec::kNewest;
        plcf->first_message_n = 0;
        return NGX_CONF_OK;
    }

    neg = (a.size() > 1 && a[0] == '-');
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


static char *
ngx_pubsub_longpoll_multipart(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    ngx_str_t              *value;

    if (plcf->longpoll_multipart != NGX_CONF_UNSET_UINT) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);
    std::string_view a = ngx_pubsub_sv(value[1]);

    if (a == "off") {
        plcf->longpoll_multipart = NGX_PUBSUB_LP_MULTIPART_OFF;

    } else if (a == "on") {
        plcf->longpoll_multipart = NGX_PUBSUB_LP_MULTIPART_ON;

    } else if (a == "raw") {
        plcf->longpoll_multipart = NGX_PUBSUB_LP_MULTIPART_RAW;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": expected off, on or raw",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


/* the raw-stream separator: "\n" is appended unless the value is empty */
static char *
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


static ngx_int_t
ngx_pubsub_init_process(ngx_cycle_t *cycle)
{
    if (ngx_pubsub_ws_init_process(cycle) != NGX_OK
        || ngx_pubsub_stats_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pubsub_shm_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pubsub_redis_init_process(cycle);
}


static void
ngx_pubsub_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_chev_exit_process(cycle);
    ngx_pubsub_redis_exit_process(cycle);
    ngx_pubsub_shm_exit_process(cycle);
    ngx_pubsub_stats_exit_process(cycle);
    ngx_pubsub_ws_exit_process(cycle);
}


/* helpers shared by the transports */

ngx_str_t
ngx_pubsub_pstr(ngx_pool_t *pool, std::string_view s)
{
    ngx_str_t  r;

    r.len = s.size();
    r.data = static_cast<u_char *>(ngx_pnalloc(pool, s.size() ? s.size() : 1));
    if (r.data == NULL) {
        r.len = 0;
        return r;
    }

    ngx_memcpy(r.data, s.data(), s.size());

    return r;
}


ngx_int_t
ngx_pubsub_set_header(ngx_http_request_t *r, std::string_view name,
    std::string_view value)
{
    ngx_table_elt_t  *h;

    h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = ngx_pubsub_pstr(r->pool, name);
    h->value = ngx_pubsub_pstr(r->pool, value);

    if (h->key.data == NULL || h->value.data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The next request header called `name` after `prev` (NULL: the first);
 * nginx 1.22 does not chain repeated headers.
 */
ngx_table_elt_t *
ngx_pubsub_next_header(ngx_http_request_t *r, std::string_view name,
    ngx_table_elt_t *prev)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i, seen;

    part = &r->headers_in.headers.part;
    h = static_cast<ngx_table_elt_t *>(part->elts);
    seen = (prev == NULL);

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = static_cast<ngx_table_elt_t *>(part->elts);
            i = 0;
        }

        if (!seen) {
            seen = (&h[i] == prev);
            continue;
        }

        if (h[i].key.len == name.size()
            && ngx_strncasecmp(h[i].key.data,
                   reinterpret_cast<u_char *>(const_cast<char *>(name.data())),
                   name.size()) == 0)
        {
            return &h[i];
        }
    }

    return NULL;
}


ngx_table_elt_t *
ngx_pubsub_find_header(ngx_http_request_t *r, std::string_view name)
{
    return ngx_pubsub_next_header(r, name, NULL);
}


ngx_int_t
ngx_pubsub_respond_text(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view content_type, std::string_view body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body.size();

    if (!content_type.empty()) {
        r->headers_out.content_type = ngx_pubsub_pstr(r->pool, content_type);
        r->headers_out.content_type_len = content_type.size();
        r->headers_out.content_type_lowcase = NULL;
    }

    if (body.empty() || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_create_temp_buf(r->pool, body.size());
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->pos, body.data(), body.size());
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_pubsub_status_of(pubsub::StoreResult rc)
{
    switch (rc) {
    case pubsub::StoreResult::kOk:
        return NGX_HTTP_OK;
    case pubsub::StoreResult::kNoMemory:
        return 507;
    case pubsub::StoreResult::kNotFound:
        return NGX_HTTP_NOT_FOUND;
    case pubsub::StoreResult::kForbidden:
        return NGX_HTTP_FORBIDDEN;
    case pubsub::StoreResult::kUnavailable:
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    case pubsub::StoreResult::kError:
        break;
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * Whether the request's Origin is among pubsub_allowed_origins (a
 * space-separated list, "*" for any; default: any).  NGX_OK (also when
 * there is no Origin), NGX_DECLINED when refused, NGX_ERROR.  *allow gets
 * the Access-Control-Allow-Origin value (empty without an Origin).
 */
static ngx_int_t
ngx_pubsub_origin_check(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    std::string_view *allow)
{
    ngx_table_elt_t  *origin;
    ngx_str_t         allowed;

    *allow = std::string_view();

    origin = ngx_pubsub_find_header(r, "Origin");
    if (origin == NULL) {
        return NGX_OK;
    }

    std::string_view o = ngx_pubsub_sv(origin->value);
    *allow = o;

    if (plcf->allowed_origins == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, plcf->allowed_origins, &allowed) != NGX_OK) {
        return NGX_ERROR;
    }

    std::string_view list = ngx_pubsub_sv(allowed);
    size_t pos = 0;

    while (pos < list.size()) {
        size_t sp = list.find(' ', pos);
        std::string_view item = list.substr(pos, sp == std::string_view::npos
                                                 ? std::string_view::npos
                                                 : sp - pos);
        if (item == "*") {
            *allow = plcf->allow_credentials ? o : "*";
            return NGX_OK;
        }
        if (!item.empty() && item == o) {
            return NGX_OK;
        }
        if (sp == std::string_view::npos) {
            break;
        }
        pos = sp + 1;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_pubsub_origin_allowed(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    std::string_view  allow;

    return ngx_pubsub_origin_check(r, plcf, &allow);
}


/*
 * CORS: checks the Origin (ngx_pubsub_origin_check) and adds the response
 * headers; returns NGX_DECLINED when the origin is refused.
 */
ngx_int_t
ngx_pubsub_cors(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t subscriber)
{
    ngx_int_t         rc;
    std::string_view  allow_value;

    rc = ngx_pubsub_origin_check(r, plcf, &allow_value);
    if (rc != NGX_OK || allow_value.empty()) {
        return rc;
    }

    if (ngx_pubsub_set_header(r, "Access-Control-Allow-Origin", allow_value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (plcf->allow_credentials
        && ngx_pubsub_set_header(r, "Access-Control-Allow-Credentials", "true")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (subscriber
        && ngx_pubsub_set_header(r, "Access-Control-Expose-Headers",
                                 "Last-Modified, Etag, Content-Type, "
                                 "X-Pubsub-Gap") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Evaluates the channel ids of a request without answering it: NGX_OK,
 * NGX_DECLINED with *err set (a bad id), or NGX_ERROR.
 */
ngx_int_t
ngx_pubsub_channels_eval(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t publisher, ngx_pubsub_channels_t *ch, const char **err_out)
{
    ngx_array_t               *ids;
    ngx_http_complex_value_t  *cv;
    ngx_str_t                  value, group;
    ngx_uint_t                 i;
    const char                *err;

    ids = publisher ? plcf->pub_channel_id : plcf->sub_channel_id;
    if (ids == NULL) {
        ids = plcf->channel_id;
    }

    group.len = 0;
    group.data = NULL;

    ch->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    ch->n = 0;
    ch->cap = 4;
    ch->id = ch->id_inline;
    ch->key = ch->key_inline;
    *err_out = NULL;

    if (plcf->channel_group != NULL
        && ngx_http_complex_value(r, plcf->channel_group, &group) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (group.len == 0) {
        ngx_str_set(&group, "default");
    }

    if (pubsub::checkChannelGroup(ngx_pubsub_sv(group))
        != pubsub::ChannelIdError::kNone)
    {
        err = "Channel group must not contain '/'.\n";
        goto bad;
    }

    ch->n = 0;

    if (ids == NULL || ids->nelts == 0) {
        err = "No channel id provided.\n";
        goto bad;
    }

    cv = static_cast<ngx_http_complex_value_t *>(ids->elts);

    for (i = 0; i < ids->nelts; i++) {
        std::string_view   split[NGX_PUBSUB_MAX_CHANNELS];
        size_t             n, from;
        pubsub::ChannelIdError  e;

        if (ngx_http_complex_value(r, &cv[i], &value) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the pure splitting and checks are in the core (channel_id.h) */
        n = ch->n;
        from = n;
        e = pubsub::splitChannelIds(ngx_pubsub_sv(value),
                                    ngx_pubsub_sv(plcf->split_delimiter),
                                    plcf->max_channel_id_length, split, &n,
                                    NGX_PUBSUB_MAX_CHANNELS);

        for (size_t k = from; k < n; k++) {
            std::string_view id = split[k];

            if (ch->n == ch->cap) {
                ngx_uint_t  cap = ch->cap * 4 < NGX_PUBSUB_MAX_CHANNELS
                                  ? ch->cap * 4 : NGX_PUBSUB_MAX_CHANNELS;
                ngx_str_t  *nid, *nkey;

                nid = static_cast<ngx_str_t *>(
                          ngx_palloc(r->pool, 2 * cap * sizeof(ngx_str_t)));
                if (nid == NULL) {
                    return NGX_ERROR;
                }

                nkey = nid + cap;
                ngx_memcpy(nid, ch->id, ch->n * sizeof(ngx_str_t));
                ngx_memcpy(nkey, ch->key, ch->n * sizeof(ngx_str_t));
                ch->id = nid;
                ch->key = nkey;
                ch->cap = cap;
            }

            /* the id points into the evaluated value (r->pool or the
               request's own buffers: both live as long as r) */
            ch->id[ch->n].data = reinterpret_cast<u_char *>(
                                     const_cast<char *>(id.data()));
            ch->id[ch->n].len = id.size();
            ch->key[ch->n].len = group.len + 1 + id.size();
            ch->key[ch->n].data = static_cast<u_char *>(
                                      ngx_pnalloc(r->pool, ch->key[ch->n].len));
            if (ch->key[ch->n].data == NULL) {
                return NGX_ERROR;
            }

            u_char *p = ngx_cpymem(ch->key[ch->n].data, group.data, group.len);
            *p++ = '/';
            ngx_memcpy(p, id.data(), id.size());
            ch->n++;
        }

        if (e != pubsub::ChannelIdError::kNone) {
            err = pubsub::channelIdErrorText(e).data();
            goto bad;
        }
    }

    return NGX_OK;

bad:

    *err_out = err;
    return NGX_DECLINED;
}


/*
 * Evaluates the channel ids of a request.  Returns NGX_OK, or NGX_DECLINED
 * after answering the request with the reason (ch->rc to return).
 */
ngx_int_t
ngx_pubsub_channels(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t publisher, ngx_pubsub_channels_t *ch)
{
    ngx_int_t    rc;
    const char  *err;

    rc = ngx_pubsub_channels_eval(r, plcf, publisher, ch, &err);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    ch->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "pubsub: %s", err);

        ch->rc = ngx_pubsub_respond_text(r, NGX_HTTP_BAD_REQUEST,
                                         "text/plain", err);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pubsub_not_allowed(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    std::string_view allow;

    if (plcf->pub_roles && plcf->sub_roles) {
        allow = "GET, POST, PUT, DELETE, OPTIONS";

    } else if (plcf->pub_roles) {
        allow = "GET, POST, PUT, DELETE, OPTIONS";

    } else {
        allow = "GET, OPTIONS";
    }

    if (ngx_pubsub_set_header(r, "Allow", allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_discard_request_body(r);

    return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_ALLOWED, "text/plain",
                                   "Method not allowed.\n");
}


static ngx_int_t
ngx_pubsub_options(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t         rc;
    std::string_view  methods, headers;

    rc = ngx_pubsub_cors(r, plcf, 0);
    if (rc == NGX_DECLINED) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Origin not allowed.\n");
    }
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (plcf->pub_roles) {
        methods = "GET, POST, PUT, DELETE, OPTIONS";
    } else {
        methods = "GET, OPTIONS";
    }

    if (plcf->sub_roles) {
        headers = "If-None-Match, If-Modified-Since, Last-Event-ID, "
                  "Content-Type, Cache-Control, X-EventSource-Event, "
                  "Authorization";
    } else {
        headers = "Content-Type, X-EventSource-Event, Authorization";
    }

    if (ngx_pubsub_set_header(r, "Allow", methods) != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Allow-Methods", methods)
           != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Allow-Headers", headers)
           != NGX_OK
        || ngx_pubsub_set_header(r, "Access-Control-Max-Age", "600")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_discard_request_body(r);

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


/* whether any request header `name` lists `token` */
static ngx_uint_t
ngx_pubsub_header_has(ngx_http_request_t *r, std::string_view name,
    std::string_view token)
{
    ngx_table_elt_t  *h;

    for (h = ngx_pubsub_next_header(r, name, NULL); h;
         h = ngx_pubsub_next_header(r, name, h))
    {
        if (pubsub::headerHasToken(ngx_pubsub_sv(h->value), token)) {
            return 1;
        }
    }

    return 0;
}


ngx_uint_t
ngx_pubsub_is_websocket(ngx_http_request_t *r)
{
    if (r->headers_in.upgrade == NULL) {
        return 0;
    }

    return pubsub::headerHasToken(ngx_pubsub_sv(r->headers_in.upgrade->value),
                                  "websocket");
}


/* Picks the subscriber transport of a GET, or 0 when none fits. */
ngx_uint_t
ngx_pubsub_pick_transport(ngx_http_request_t *r, ngx_uint_t enabled)
{
    if ((enabled & NGX_PUBSUB_SUB_EVENTSOURCE)
        && ngx_pubsub_header_has(r, "Accept", "text/event-stream"))
    {
        return NGX_PUBSUB_SUB_EVENTSOURCE;
    }

    if ((enabled & NGX_PUBSUB_SUB_CHUNKED)
        && ngx_pubsub_header_has(r, "TE", "chunked"))
    {
        return NGX_PUBSUB_SUB_CHUNKED;
    }

    if ((enabled & NGX_PUBSUB_SUB_MULTIPART)
        && ngx_pubsub_header_has(r, "Accept", "multipart/mixed"))
    {
        return NGX_PUBSUB_SUB_MULTIPART;
    }

    if (enabled & NGX_PUBSUB_SUB_INTERVALPOLL) {
        return NGX_PUBSUB_SUB_INTERVALPOLL;
    }

    if (enabled & NGX_PUBSUB_SUB_RAWSTREAM) {
        return NGX_PUBSUB_SUB_RAWSTREAM;
    }

    if (enabled & NGX_PUBSUB_SUB_LONGPOLL) {
        return NGX_PUBSUB_SUB_LONGPOLL;
    }

    return 0;
}


static ngx_int_t
ngx_pubsub_route(ngx_http_request_t *r)
{
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_uint_t              transport;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module));

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_pubsub_options(r, plcf);
    }

    if (ngx_pubsub_store_for(plcf) == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (plcf->presence_api) {
        return ngx_pubsub_presence_api_handler(r, plcf);
    }

    if (r->method == NGX_HTTP_GET && ngx_pubsub_is_websocket(r)) {
        ngx_uint_t sub = plcf->sub_roles & NGX_PUBSUB_SUB_WEBSOCKET;
        ngx_uint_t pub = plcf->pub_roles & NGX_PUBSUB_PUB_WEBSOCKET;

        if (!sub && !pub) {
            ngx_http_discard_request_body(r);
            return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                       "WebSocket is not enabled at this location.\n");
        }

        switch (ngx_pubsub_origin_allowed(r, plcf)) {
        case NGX_OK:
            break;
        case NGX_DECLINED:
            ngx_http_discard_request_body(r);
            return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                           "Origin not allowed.\n");
        default:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_pubsub_websocket_handler(r, plcf, sub, pub);
    }

    switch (r->method) {

    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        if (plcf->sub_roles) {
            transport = ngx_pubsub_pick_transport(r, plcf->sub_roles);

            if (transport) {
                return ngx_pubsub_subscriber_handler(r, plcf, transport);
            }

            if (!(plcf->pub_roles & NGX_PUBSUB_PUB_HTTP)) {
                ngx_http_discard_request_body(r);
                return ngx_pubsub_respond_text(r, 406,
                           "text/plain",
                           "No subscriber transport enabled here fits "
                           "this request.\n");
            }
        }

        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            return ngx_pubsub_publisher_handler(r, plcf);
        }

        break;

    case NGX_HTTP_POST:
    case NGX_HTTP_PUT:
    case NGX_HTTP_DELETE:
        if (plcf->pub_roles & NGX_PUBSUB_PUB_HTTP) {
            return ngx_pubsub_publisher_handler(r, plcf);
        }

        break;

    default:
        break;
    }

    return ngx_pubsub_not_allowed(r, plcf);
}


static ngx_int_t
ngx_pubsub_init_module(ngx_cycle_t *cycle)
{
    return ngx_pubsub_guard(cycle->log, [cycle] {
        return ngx_pubsub_shm_init_module(cycle);
    });
}


static ngx_int_t
ngx_pubsub_handler(ngx_http_request_t *r)
{
    return ngx_pubsub_guard(r->connection->log, [r] {
        ngx_pubsub_loc_conf_t *plcf = static_cast<ngx_pubsub_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_pubsub_module));

        if (plcf->redis != NULL && r->method != NGX_HTTP_OPTIONS) {
            /* Redis subscribers: the channels' snapshots come first */
            ngx_int_t rc = ngx_pubsub_redis_prepare(r, plcf, ngx_pubsub_route);
            if (rc != NGX_DECLINED) {
                return rc;
            }
        }

        return ngx_pubsub_route(r);
    });
}
