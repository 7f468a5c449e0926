/*
 * ngx_pubsub: nginx glue shared by every file in src/nginx.
 *
 * The glue is C++ (so it can hold the core's objects) written in nginx's
 * style.  nginx's headers are C and are included inside extern "C".
 * Nothing here may let an exception reach nginx: every handler nginx calls
 * catches and turns it into NGX_ERROR / 500.
 */

#ifndef _NGX_PUBSUB_H_INCLUDED_
#define _NGX_PUBSUB_H_INCLUDED_

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <string>
#include <string_view>

#include "pubsub/codec/format.h"
#include "pubsub/memory/memory_store.h"
#include "pubsub/msgid.h"
#include "pubsub/redis/redis_store.h"
#include "pubsub/store.h"


#define NGX_PUBSUB_VERSION           "0.1.0"

#define NGX_PUBSUB_PUB_HTTP          0x0001
#define NGX_PUBSUB_PUB_WEBSOCKET     0x0002
#define NGX_PUBSUB_SUB_WEBSOCKET     0x0010
#define NGX_PUBSUB_SUB_EVENTSOURCE   0x0020
#define NGX_PUBSUB_SUB_LONGPOLL      0x0040
#define NGX_PUBSUB_SUB_INTERVALPOLL  0x0080
#define NGX_PUBSUB_SUB_CHUNKED       0x0100
#define NGX_PUBSUB_SUB_MULTIPART     0x0200
#define NGX_PUBSUB_SUB_RAWSTREAM     0x0400

#define NGX_PUBSUB_PUB_ALL   (NGX_PUBSUB_PUB_HTTP|NGX_PUBSUB_PUB_WEBSOCKET)
#define NGX_PUBSUB_SUB_ALL   0x07f0
#define NGX_PUBSUB_SUB_DEFAULT                                                \
    (NGX_PUBSUB_SUB_WEBSOCKET|NGX_PUBSUB_SUB_EVENTSOURCE                     \
     |NGX_PUBSUB_SUB_LONGPOLL|NGX_PUBSUB_SUB_CHUNKED                         \
     |NGX_PUBSUB_SUB_MULTIPART)

#define NGX_PUBSUB_MAX_CHANNELS      255

/* a location's storage engine (ngx_pubsub_engine.h) */
typedef struct ngx_pubsub_engine_s  ngx_pubsub_engine_t;

/* pubsub_longpoll_multipart_response */
#define NGX_PUBSUB_LP_MULTIPART_OFF  0
#define NGX_PUBSUB_LP_MULTIPART_ON   1
#define NGX_PUBSUB_LP_MULTIPART_RAW  2


/*
 * A group limit (pubsub_group_max_*): a number parsed once, or a complex
 * value evaluated per request (ngx_pubsub_group.cpp).
 */
typedef struct {
    ngx_http_complex_value_t     *cv;     /* NULL: the constant `value` */
    uint64_t                      value;  /* 0: none of the location's own */
    ngx_int_t                     set;    /* NGX_CONF_UNSET: not written */
} ngx_pubsub_limit_t;

/* pubsub_group_location methods */
#define NGX_PUBSUB_GROUP_GET         0x01
#define NGX_PUBSUB_GROUP_SET         0x02
#define NGX_PUBSUB_GROUP_DELETE      0x04


typedef struct {
    ngx_uint_t                    roles;
    ngx_uint_t                    pub_roles;   /* publisher-side roles */
    ngx_uint_t                    sub_roles;   /* subscriber transports */

    ngx_array_t                  *channel_id;       /* ngx_http_complex_value_t */
    ngx_array_t                  *pub_channel_id;
    ngx_array_t                  *sub_channel_id;
    ngx_str_t                     split_delimiter;
    ngx_http_complex_value_t     *channel_group;
    ngx_uint_t                    max_channel_id_length;

    ngx_http_complex_value_t     *buffer_length;
    ngx_http_complex_value_t     *message_timeout;
    ngx_flag_t                    existing_only;
    /* channel events (ngx_pubsub_chevents.cpp); NULL: off */
    ngx_http_complex_value_t     *chevents_id;
    ngx_http_complex_value_t     *chevent_string;

    ngx_int_t                     first_message_kind;
    ngx_int_t                     first_message_n;
    ngx_array_t                  *last_message_id;  /* ngx_http_complex_value_t */

    ngx_msec_t                    subscriber_timeout;
    ngx_msec_t                    ping_interval;
    ngx_http_complex_value_t     *eventsource_event;
    ngx_str_t                     es_ping_event;
    ngx_str_t                     es_ping_data;
    ngx_str_t                     es_ping_comment;
    ngx_uint_t                    longpoll_multipart;
    ngx_str_t                     raw_separator;

    ngx_http_complex_value_t     *allowed_origins;
    ngx_flag_t                    allow_credentials;

    size_t                        ws_max_message_size;
    ngx_flag_t                    deflate_for_websocket;
    size_t                        max_pending;      /* slow-reader bound */

    /* the store seam (ngx_pubsub_engine.h): chosen at configuration
     * time, never NULL once merged; engine_conf is the engine's own (Redis:
     * its upstream) */
    const ngx_pubsub_engine_t    *engine;
    void                         *engine_conf;

    ngx_pubsub_limit_t            group_max_channels;
    ngx_pubsub_limit_t            group_max_subscribers;
    ngx_pubsub_limit_t            group_max_memory;
    /* pubsub_group_location: NGX_PUBSUB_GROUP_*; 0: not one */
    ngx_uint_t                    group_location;
    /* pubsub_subscriber_info (a location that asks), and the string a
     * subscriber of this location answers with (NULL: it does not) */
    ngx_flag_t                    subscriber_info;
    ngx_http_complex_value_t     *subscriber_info_string;
    /* presence (ngx_pubsub_presence.cpp) */
    ngx_flag_t                    presence;
    ngx_http_complex_value_t     *presence_id;
    ngx_flag_t                    presence_events;
    ngx_msec_t                    presence_leave_delay;
    ngx_msec_t                    presence_ttl;     /* Redis mode only */
    ngx_flag_t                    presence_api;
    /* some channels join presence whatever pubsub_presence says (set by
     * pubsub_pusher: presence- channels); not inherited */
    ngx_flag_t                    presence_channels;
} ngx_pubsub_loc_conf_t;


typedef struct {
    size_t                        shm_size;
    ngx_shm_zone_t               *shm_zone;
    ngx_array_t                  *redis_upstreams;  /* of pointers */
} ngx_pubsub_main_conf_t;


/* a request's evaluated channel ids */
typedef struct {
    ngx_uint_t                    n;
    ngx_uint_t                    cap;
    ngx_int_t                     rc;     /* what to return when not NGX_OK */
    ngx_str_t                    *id;     /* as given */
    ngx_str_t                    *key;    /* group/id */
    /* most requests have one id: no allocation for up to 4 */
    ngx_str_t                     id_inline[4];
    ngx_str_t                     key_inline[4];
} ngx_pubsub_channels_t;


extern "C" ngx_module_t  ngx_pubsub_module;

/*
 * The data of the module's own timer and posted events that belong to no
 * connection: nginx's debug log reads a timer event's data as a connection
 * (ngx_event_ident), so it must never be NULL (nginx's cache manager does
 * the same with a "dumb" connection).
 */
extern ngx_connection_t  ngx_pubsub_dumb_conn;


/* ngx_pubsub_shm.cpp */
ngx_int_t ngx_pubsub_shm_conf(ngx_conf_t *cf, ngx_pubsub_main_conf_t *pmcf);
ngx_int_t ngx_pubsub_shm_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_pubsub_shm_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_shm_exit_process(ngx_cycle_t *cycle);
pubsub::Store *ngx_pubsub_store(void);
/* zone memory for the core's shared-memory structures (slab, locked) */
pubsub::ShmAllocator ngx_pubsub_slab_allocator(ngx_slab_pool_t *shpool);
/* the store of a location, through its engine (ngx_pubsub_engine.cpp):
 * NULL when the engine is not up in this process */
pubsub::Store *ngx_pubsub_store_for(ngx_pubsub_loc_conf_t *plcf);

/*
 * module/ngx_pubsub_http.cpp: helpers used by every transport.
 * ngx_pubsub_channels() returns the request's channels (r->pool), or NULL
 * after answering the request (or failing): the handler then returns *rc.
 */
ngx_pubsub_channels_t *ngx_pubsub_channels(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t publisher, ngx_int_t *rc);
/* the same without answering: NGX_OK, NGX_DECLINED (*err: why), NGX_ERROR */
ngx_int_t ngx_pubsub_channels_eval(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t publisher,
    ngx_pubsub_channels_t *ch, const char **err);
/* the location's channel group ("default" when none): NGX_OK, NGX_DECLINED
 * (*err: why), NGX_ERROR */
ngx_int_t ngx_pubsub_channels_group(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_str_t *group, const char **err);
ngx_int_t ngx_pubsub_respond_text(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view content_type, std::string_view body);
ngx_int_t ngx_pubsub_set_header(ngx_http_request_t *r, std::string_view name,
    std::string_view value);
ngx_table_elt_t *ngx_pubsub_find_header(ngx_http_request_t *r,
    std::string_view name);
ngx_table_elt_t *ngx_pubsub_next_header(ngx_http_request_t *r,
    std::string_view name, ngx_table_elt_t *prev);
ngx_int_t ngx_pubsub_cors(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t subscriber);
/*
 * the Origin check alone (SPEC section 11, docs/security.md), no headers
 * added: NGX_OK, NGX_DECLINED (answer 403), NGX_ERROR
 */
ngx_int_t ngx_pubsub_origin_allowed(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);
/*
 * The first query argument called exactly `name` (with or without a value;
 * *value is raw, not decoded, and may be NULL): 1 when there is one.
 */
ngx_uint_t ngx_pubsub_query_arg(ngx_http_request_t *r, std::string_view name,
    ngx_str_t *value);
ngx_uint_t ngx_pubsub_is_websocket(ngx_http_request_t *r);
/* whether r is a subscriber request: a GET/HEAD with a subscriber
 * transport of the location (engines prepare those, see prepare()) */
ngx_uint_t ngx_pubsub_subscriber_request(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);
/* the subscriber transport a GET asks for (NGX_PUBSUB_SUB_*), or 0 */
ngx_uint_t ngx_pubsub_pick_transport(ngx_http_request_t *r, ngx_uint_t enabled);
ngx_int_t ngx_pubsub_status_of(pubsub::StoreResult rc);
ngx_str_t ngx_pubsub_pstr(ngx_pool_t *pool, std::string_view s);

/*
 * ngx_pubsub_group.cpp: the group limits of a location for r, for the
 * store (r NULL: limits with variables count as none of the location's
 * own).  NGX_OK, or NGX_DECLINED with *err (a value is not a number: the
 * caller answers 403 with it), or NGX_ERROR.
 */
ngx_int_t ngx_pubsub_group_limits(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::GroupLimits *l, const char **err);
char *ngx_pubsub_conf_set_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_pubsub_group_location(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_pubsub_merge_limit(ngx_pubsub_limit_t *conf,
    const ngx_pubsub_limit_t *prev);
ngx_int_t ngx_pubsub_group_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);

/* ngx_pubsub_subinfo.cpp: pubsub_subscriber_info */
char *ngx_pubsub_subscriber_info(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_pubsub_subinfo_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);

/*
 * ngx_pubsub_directives.cpp: installs a location's content handler, or
 * refuses (an error text for nginx -t) when the location has another one
 */
char *ngx_pubsub_conf_content_handler(ngx_conf_t *cf,
    ngx_http_handler_pt handler);

/*
 * ngx_pubsub_directives.cpp: `value` (a directive's argument, a default)
 * compiled into *cv, or into a complex value of cf->pool (NULL on an
 * error, which nginx logged)
 */
ngx_int_t ngx_pubsub_conf_compile(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv);
ngx_http_complex_value_t *ngx_pubsub_conf_complex(ngx_conf_t *cf,
    ngx_str_t value);

/*
 * ngx_pubsub_directives.cpp: NULL when the location is of no other kind
 * than `kind`, else the error text for nginx -t
 */
#define NGX_PUBSUB_LOC_ROLE          0
#define NGX_PUBSUB_LOC_PRESENCE_API  1
#define NGX_PUBSUB_LOC_GROUP         2
#define NGX_PUBSUB_LOC_SUBINFO       3

char *ngx_pubsub_conf_other_kind(ngx_pubsub_loc_conf_t *plcf,
    ngx_uint_t kind);

/*
 * ngx_pubsub_directives.cpp: *value for a directive's argument among its
 * keywords; NGX_DECLINED when it is none of them
 */
typedef struct {
    const char  *word;
    ngx_int_t    value;
} ngx_pubsub_keyword_t;

#define ngx_pubsub_nelts(a)  (sizeof(a) / sizeof((a)[0]))

/*
 * ngx_pubsub_directives.cpp: NGX_CONF_ERROR (logged: "it has no `lacks`")
 * when one of the directives, written in a pubsub_presence_api location,
 * is set there
 */
typedef struct {
    const char  *name;
    ngx_uint_t   set;
} ngx_pubsub_conf_used_t;

char *ngx_pubsub_conf_not_in_presence_api(ngx_conf_t *cf,
    const ngx_pubsub_conf_used_t *d, ngx_uint_t n, const char *lacks);

ngx_int_t ngx_pubsub_conf_keyword(ngx_str_t arg,
    const ngx_pubsub_keyword_t *words, ngx_uint_t n, ngx_int_t *value);

/* ngx_pubsub_publisher.cpp */
ngx_int_t ngx_pubsub_publisher_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);
ngx_int_t ngx_pubsub_channel_info(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_pubsub_channels_t *ch);
ngx_int_t ngx_pubsub_publish_params(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, pubsub::PublishInput *in);
pubsub::InfoFormat ngx_pubsub_info_format(ngx_http_request_t *r);

/* ngx_pubsub_subscriber.cpp */
ngx_int_t ngx_pubsub_subscriber_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t transport);

/* ngx_pubsub_presence_api.cpp, ngx_pubsub_presence.cpp (more in
 * ngx_pubsub_presence.h) */
ngx_int_t ngx_pubsub_presence_api_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);
/* members of the channel (joined or leaving), for channel info */
uint64_t ngx_pubsub_presence_members(std::string_view key);

/* ngx_pubsub_websocket.cpp (and ngx_pubsub_ws_*.cpp) */
ngx_int_t ngx_pubsub_websocket_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_uint_t subscribe, ngx_uint_t publish);
/* the worker's WebSocket state (ngx_pubsub_ws_conn.cpp) */
ngx_int_t ngx_pubsub_ws_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_ws_exit_process(ngx_cycle_t *cycle);


/*
 * ngx_pubsub_status.cpp: cluster-wide counters in shared memory and the
 * pubsub_status location.
 */
char *ngx_pubsub_status_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_pubsub_stats_conf(ngx_conf_t *cf);
ngx_int_t ngx_pubsub_stats_init_process(ngx_cycle_t *cycle);
void ngx_pubsub_stats_exit_process(ngx_cycle_t *cycle);
void ngx_pubsub_stats_delivered(ngx_uint_t n);
void ngx_pubsub_stats_redis(ngx_int_t links, ngx_int_t ready);
void ngx_pubsub_stats_redis_rtt(ngx_msec_t ms);
void ngx_pubsub_stats_redis_engine(const pubsub::RedisStoreStats &now,
    pubsub::RedisStoreStats *last);

/* one subscriber of a transport (NGX_PUBSUB_SUB_*), from start() to end() */
struct ngx_pubsub_sub_count_t {
    uint32_t    transport = 0;

    void start(ngx_uint_t t);
    void end();     /* idempotent; also run by the destructor */
    ~ngx_pubsub_sub_count_t() { end(); }
};


/* Runs f(), turning any exception into a logged NGX_ERROR. */
template <typename F>
static inline ngx_int_t
ngx_pubsub_guard(ngx_log_t *log, F f)
{
    try {
        return f();

    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "pubsub: %s", e.what());

    } catch (...) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "pubsub: unexpected exception");
    }

    return NGX_ERROR;
}


static inline std::string_view
ngx_pubsub_sv(const ngx_str_t &s)
{
    return std::string_view(reinterpret_cast<const char *>(s.data), s.len);
}


/* the module's configuration of r's location */
static inline ngx_pubsub_loc_conf_t *
ngx_pubsub_get_loc_conf(ngx_http_request_t *r)
{
    return static_cast<ngx_pubsub_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_pubsub_module));
}


#endif /* _NGX_PUBSUB_H_INCLUDED_ */
