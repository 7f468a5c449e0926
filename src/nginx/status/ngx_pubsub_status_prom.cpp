/*
 * ngx_pubsub: pubsub_status as Prometheus text exposition (the snapshot:
 * ngx_pubsub_status_internal.h).
 */

#include "ngx_pubsub_status_internal.h"


#define U(v)  static_cast<unsigned long long>(v)

static void
ngx_pubsub_prom_head(std::string &o, const char *name, const char *type,
    const char *help)
{
    ngx_pubsub_append(o, "# HELP pubsub_%s %s\n# TYPE pubsub_%s %s\n",
                      name, help, name, type);
}


static void
ngx_pubsub_prom(std::string &o, const char *name, const char *type,
    const char *help, uint64_t v)
{
    ngx_pubsub_prom_head(o, name, type, help);
    ngx_pubsub_append(o, "pubsub_%s %llu\n", name, U(v));
}


/* a Prometheus metric that is one field of the snapshot */
typedef struct {
    const char                  *name;
    const char                  *type;
    const char                  *help;
    uint64_t ngx_pubsub_snapshot_t::*field;
} ngx_pubsub_metric_t;


#define M(name, type, field, help)                                           \
    { name, type, help, &ngx_pubsub_snapshot_t::field }

static const ngx_pubsub_metric_t  ngx_pubsub_metrics_store[] = {
    M("uptime_seconds", "gauge", uptime,
      "Seconds since the counters were created."),
    M("reloads_total", "counter", reloads,
      "Configuration reloads that kept the counters."),
    M("workers", "gauge", workers, "Worker processes counted."),
    M("channels", "gauge", channels, "Channels in shared memory."),
    M("subscriptions", "gauge", subscriptions,
      "Channel subscriptions (a multiplexed subscriber counts once per "
      "channel)."),
    M("messages", "gauge", messages, "Messages stored in shared memory."),
    M("message_bytes", "gauge", message_bytes,
      "Bytes stored messages take in the zone, headers included."),
    M("published_messages_total", "counter", published,
      "Messages published (once per channel)."),
    M("delivered_messages_total", "counter", delivered,
      "Messages sent to subscribers (once per subscriber)."),
    M("channel_events_total", "counter", chev_published,
      "Channel events published to meta channels."),
    M("channel_event_failures_total", "counter", chev_failed,
      "Channel events lost: a bad meta channel id, a full queue or a "
      "failed publish (logged)."),
};

static const ngx_pubsub_metric_t  ngx_pubsub_metrics_zone[] = {
    M("shm_size_bytes", "gauge", shm_size,
      "Size of the shared memory zone (pubsub_shm_size)."),
    M("shm_used_bytes", "gauge", shm_used,
      "Shared memory in use (size minus free pages)."),
    M("shm_free_bytes", "gauge", shm_free,
      "Shared memory in free slab pages."),
    M("unpublished_channels", "gauge", fresh_channels,
      "Channels nobody has published to (made by subscribers)."),
    M("unpublished_channel_bytes", "gauge", fresh_bytes,
      "Shared memory they take, at most pubsub_shm_size / 4."),
    M("unpublished_channels_refused_total", "counter", fresh_refused,
      "Subscribers to new channels refused (507) because such channels "
      "used their share."),
    M("idle_channels_reclaimed_total", "counter", reclaimed,
      "Idle empty channels freed early for a publish in a full zone."),
    M("presence_members", "gauge", presence_members,
      "Presence members (joined or leaving) over all channels."),
    M("presence_connections", "gauge", presence_connections,
      "Subscriber connections in presence channels (anonymous "
      "included)."),
};

static const ngx_pubsub_metric_t  ngx_pubsub_metrics_hooks[] = {
    M("authorize_refused_total", "counter", hook_refused,
      "Requests the authorize hook refused."),
    M("token_refused_total", "counter", token_refused,
      "Requests refused for their token (401)."),
    M("hooks_in_flight", "gauge", hook_in_flight,
      "Hook subrequests waiting for an answer."),
    M("hook_queue_pending", "gauge", hookq_pending,
      "Hooks queued for at-least-once delivery."),
    M("hook_queue_delivered_total", "counter", hookq_delivered,
      "Queued hooks the backend took."),
    M("hook_queue_retried_total", "counter", hookq_retried,
      "Failed attempts of queued hooks, retried."),
    M("hook_queue_given_up_total", "counter", hookq_given_up,
      "Queued hooks given up after 5 minutes of failures."),
    M("hook_queue_dropped_total", "counter", hookq_dropped,
      "Hooks not queued (the queue was full): sent once."),
    M("redis_links", "gauge", redis_links,
      "Redis upstream links of all workers."),
    M("redis_connected_links", "gauge", redis_ready,
      "Redis upstream links that are connected."),
};

#undef M


template <size_t N>
static void
ngx_pubsub_prom_table(std::string &o, const ngx_pubsub_metric_t (&m)[N],
    const ngx_pubsub_snapshot_t *s)
{
    for (size_t i = 0; i < N; i++) {
        ngx_pubsub_prom(o, m[i].name, m[i].type, m[i].help, s->*m[i].field);
    }
}


/* a metric with one value per label (transport, hook) */
static void
ngx_pubsub_prom_labelled(std::string &o, const char *name, const char *type,
    const char *help, const char *label, const char *const *values,
    const uint64_t *v, ngx_uint_t n)
{
    ngx_pubsub_prom_head(o, name, type, help);
    for (ngx_uint_t i = 0; i < n; i++) {
        ngx_pubsub_append(o, "pubsub_%s{%s=\"%s\"} %llu\n",
                          name, label, values[i], U(v[i]));
    }
}


void
ngx_pubsub_status_prometheus(std::string &o, const ngx_pubsub_snapshot_t *s)
{
    ngx_pubsub_prom_table(o, ngx_pubsub_metrics_store, s);

    ngx_pubsub_prom_labelled(o, "subscribers", "gauge",
                             "Connected subscribers by transport.",
                             "transport", ngx_pubsub_transport_names,
                             s->subscribers, NGX_PUBSUB_TRANSPORTS);

    ngx_pubsub_prom_table(o, ngx_pubsub_metrics_zone, s);

    ngx_pubsub_prom_labelled(o, "hook_calls_total", "counter",
                             "Hook subrequests sent, by hook.",
                             "hook", ngx_pubsub_hook_labels,
                             s->hook_calls, NGX_PUBSUB_HOOKS);
    ngx_pubsub_prom_labelled(o, "hook_failures_total", "counter",
                             "Hook subrequests that got no answer or a 5xx.",
                             "hook", ngx_pubsub_hook_labels,
                             s->hook_failures, NGX_PUBSUB_HOOKS);

    ngx_pubsub_prom_table(o, ngx_pubsub_metrics_hooks, s);

    ngx_pubsub_prom_head(o, "redis_latency_seconds", "gauge",
                         "Smoothed Redis command round trip (1 ms "
                         "resolution), averaged over workers.");
    ngx_pubsub_append(o, "pubsub_redis_latency_seconds %.4f\n",
                      s->redis_measured
                      ? (double) s->redis_rtt_x8 / 8 / s->redis_measured / 1000
                      : 0.0);

    for (ngx_uint_t i = 0; i < NGX_PUBSUB_REDIS_COUNTERS; i++) {
        std::string name = std::string("redis_")
                           + ngx_pubsub_redis_counter_names[i] + "_total";
        ngx_pubsub_prom(o, name.c_str(), "counter",
                        ngx_pubsub_redis_counter_help[i], s->redis_engine[i]);
    }
}


#undef U
