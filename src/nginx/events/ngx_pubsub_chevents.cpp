/*
 * ngx_pubsub: channel events (see ngx_pubsub_chevents.h).
 */

#include "ngx_pubsub_chevents.h"
#include "ngx_pubsub_worker.h"

#include <new>
#include <string>
#include <utility>


/* the event being evaluated: $pubsub_channel_event, $pubsub_channel_id */
static struct {
    ngx_uint_t   active;
    ngx_str_t    name;
    ngx_str_t    id;
} ngx_pubsub_chev_current;

/* the worker's events waiting for the posted event that publishes them */
struct ngx_pubsub_chev_worker_t {
    pubsub::ChannelEventQueue      queue;
    ngx_event_t                    flush_ev;
    ngx_uint_t                     drop_logged;
};

/* "pubsub_channel_events_channel_id off" */
static ngx_http_complex_value_t    ngx_pubsub_chev_off;

static ngx_str_t  ngx_pubsub_chev_default_string =
    ngx_string("$pubsub_channel_event $pubsub_channel_id");


static void ngx_pubsub_chev_flush(ngx_event_t *ev);


ngx_uint_t
ngx_pubsub_chev_channel_id(ngx_str_t *id)
{
    if (!ngx_pubsub_chev_current.active) {
        return 0;
    }

    *id = ngx_pubsub_chev_current.id;

    return 1;
}


static ngx_str_t
ngx_pubsub_chev_name(pubsub::ChannelEvent ev)
{
    std::string_view  n = pubsub::channelEventName(ev);
    ngx_str_t         s;

    s.data = reinterpret_cast<u_char *>(const_cast<char *>(n.data()));
    s.len = n.size();

    return s;
}


/* evaluates the meta channel id and the body with the event set */
static std::unique_ptr<ngx_pubsub_chev_t>
ngx_pubsub_chev_eval(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::ChannelEvent ev, ngx_str_t id)
{
    ngx_str_t             meta, body, name;
    pubsub::MetaIdError   err;
    ngx_uint_t            level;

    name = ngx_pubsub_chev_name(ev);

    if (ngx_http_complex_value(r, plcf->chevents_id, &meta) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: no channel event %V for \"%V\": "
                      "pubsub_channel_events_channel_id failed",
                      &name, &id);
        return nullptr;
    }

    err = pubsub::checkMetaChannelId(ngx_pubsub_sv(meta),
                                     plcf->max_channel_id_length);

    if (err != pubsub::MetaIdError::kNone) {
        std::string_view  text = pubsub::metaIdErrorText(err);

        /* an unset variable is a choice; a bad value is a mistake */
        level = (err == pubsub::MetaIdError::kEmpty) ? NGX_LOG_INFO
                                                     : NGX_LOG_WARN;

        ngx_log_error(level, r->connection->log, 0,
                      "pubsub: no channel event %V for \"%V\": %*s "
                      "(pubsub_channel_events_channel_id, %uz bytes)",
                      &name, &id, text.size(), text.data(), meta.len);
        return nullptr;
    }

    if (ngx_http_complex_value(r, plcf->chevent_string, &body) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: no channel event %V for \"%V\": "
                      "pubsub_channel_event_string failed", &name, &id);
        return nullptr;
    }

    std::unique_ptr<ngx_pubsub_chev_t>  chev(new (std::nothrow)
                                                 ngx_pubsub_chev_t);
    if (chev == nullptr) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: no channel event %V for \"%V\": out of memory",
                      &name, &id);
        return nullptr;
    }

    chev->plcf = plcf;
    chev->key.reserve(pubsub::kMetaGroup.size() + 1 + meta.len);
    chev->key.append(pubsub::kMetaGroup);
    chev->key.push_back('/');
    chev->key.append(ngx_pubsub_sv(meta));
    chev->body.assign(ngx_pubsub_sv(body));

    return chev;
}


std::unique_ptr<ngx_pubsub_chev_t>
ngx_pubsub_chev_prepare(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::ChannelEvent ev, ngx_str_t id, ngx_str_t key)
{
    std::unique_ptr<ngx_pubsub_chev_t>  chev;

    if (!ngx_pubsub_chev_enabled(plcf) || plcf->chevent_string == NULL
        || pubsub::isMetaChannelKey(ngx_pubsub_sv(key)))
    {
        return nullptr;
    }

    ngx_pubsub_chev_current.active = 1;
    ngx_pubsub_chev_current.name = ngx_pubsub_chev_name(ev);
    ngx_pubsub_chev_current.id = id;

    try {
        chev = ngx_pubsub_chev_eval(r, plcf, ev, id);

    } catch (...) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pubsub: no channel event for \"%V\": out of memory",
                      &id);
        chev.reset();
    }

    ngx_pubsub_chev_current.active = 0;

    if (chev == nullptr) {
        ngx_pubsub_stats_chev(0, 1);
    }

    return chev;
}


void
ngx_pubsub_chev_emit(const ngx_pubsub_chev_t *ev)
{
    ngx_pubsub_chev_worker_t  *wk = ngx_pubsub_worker_part(chev);

    if (ev == NULL || wk == NULL) {
        return;
    }

    if (!wk->queue.push(ev->key, ev->body, ev->plcf)) {
        if (!wk->drop_logged) {
            wk->drop_logged = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "pubsub: channel events dropped: %uz wait already",
                          wk->queue.size());
        }

        ngx_pubsub_stats_chev(0, 1);
        return;
    }

    if (!wk->flush_ev.posted) {
        ngx_post_event(&wk->flush_ev, &ngx_posted_events);
    }
}


void
ngx_pubsub_chev_now(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::ChannelEvent ev, ngx_str_t id, ngx_str_t key)
{
    if (!ngx_pubsub_chev_enabled(plcf)) {
        return;
    }

    std::unique_ptr<ngx_pubsub_chev_t> chev = ngx_pubsub_chev_prepare(r, plcf,
                                                  ev, id, key);

    ngx_pubsub_chev_emit(chev.get());
}


ngx_pubsub_chev_t *
ngx_pubsub_chev_open(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t id, ngx_str_t key)
{
    std::unique_ptr<ngx_pubsub_chev_t>  enq, deq;

    if (!ngx_pubsub_chev_enabled(plcf)) {
        return NULL;
    }

    enq = ngx_pubsub_chev_prepare(r, plcf,
                                  pubsub::ChannelEvent::kSubscriberEnqueue,
                                  id, key);
    if (enq == nullptr) {
        return NULL;
    }

    /* the dequeue is evaluated now: the request may be gone by then */
    deq = ngx_pubsub_chev_prepare(r, plcf,
                                  pubsub::ChannelEvent::kSubscriberDequeue,
                                  id, key);
    if (deq == nullptr) {
        return NULL;   /* an enqueue without its dequeue would mislead */
    }

    ngx_pubsub_chev_emit(enq.get());

    return deq.release();
}


void
ngx_pubsub_chev_close(ngx_pubsub_chev_t *dequeue)
{
    std::unique_ptr<ngx_pubsub_chev_t>  ev(dequeue);

    ngx_pubsub_chev_emit(ev.get());
}


/* publishes what waits: from a posted event, never inside a caller */
static void
ngx_pubsub_chev_flush(ngx_event_t *ev)
{
    (void) ngx_pubsub_guard(ev->log, [ev] {
        std::vector<pubsub::PendingChannelEvent>  evs;
        ngx_pubsub_chev_worker_t                 *wk;

        wk = ngx_pubsub_worker_part(chev);
        if (wk == NULL) {
            return NGX_OK;
        }

        wk->drop_logged = 0;
        wk->queue.takeAll(&evs);

        for (const pubsub::PendingChannelEvent &e : evs) {
            auto *plcf = static_cast<ngx_pubsub_loc_conf_t *>(
                             const_cast<void *>(e.context));
            pubsub::Store *store = ngx_pubsub_store_for(plcf);

            if (store == NULL) {
                ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                              "pubsub: channel event to \"%*s\" not "
                              "published: no store", e.key.size(),
                              e.key.data());
                ngx_pubsub_stats_chev(0, 1);
                continue;
            }

            pubsub::PublishInput  in;

            in.data = e.body;
            in.contentType = pubsub::kMetaContentType;
            in.maxMessages = pubsub::kMetaBufferLength;
            in.ttl = pubsub::kMetaMessageTtl;

            /* a direct store publish: no channel_publish about it */
            store->publish(e.key, in, [](pubsub::PublishReply &&reply) {
                if (reply.status == pubsub::StoreResult::kOk) {
                    ngx_pubsub_stats_chev(1, 0);
                    return;
                }

                ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                              "pubsub: channel event not published: %s",
                              reply.reason.c_str());
                ngx_pubsub_stats_chev(0, 1);
            });
        }

        return NGX_OK;
    });
}


ngx_int_t
ngx_pubsub_chev_init_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_chev_worker_t  *wk;

    wk = new (std::nothrow) ngx_pubsub_chev_worker_t();
    if (wk == NULL) {
        return NGX_ERROR;
    }

    wk->flush_ev.handler = ngx_pubsub_chev_flush;
    wk->flush_ev.data = &ngx_pubsub_dumb_conn;
    wk->flush_ev.log = cycle->log;

    ngx_pubsub_worker->chev = wk;

    return NGX_OK;
}


void
ngx_pubsub_chev_exit_process(ngx_cycle_t *cycle)
{
    ngx_pubsub_chev_worker_t  *wk = ngx_pubsub_worker_part(chev);

    if (wk == NULL) {
        return;
    }

    if (wk->flush_ev.posted) {
        ngx_delete_posted_event(&wk->flush_ev);
    }

    ngx_pubsub_worker->chev = NULL;
    delete wk;
}


/* configuration */

char *
ngx_pubsub_chev_id_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t  *plcf;
    ngx_str_t              *value;

    plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);

    if (plcf->chevents_id != NGX_CONF_UNSET_PTR) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        plcf->chevents_id = &ngx_pubsub_chev_off;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return const_cast<char *>("takes a meta channel id, not \"\"");
    }

    plcf->chevents_id = ngx_pubsub_conf_complex(cf, value[1]);
    if (plcf->chevents_id == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


char *
ngx_pubsub_chev_merge(ngx_conf_t *cf, ngx_pubsub_loc_conf_t *prev,
    ngx_pubsub_loc_conf_t *conf)
{
    if (conf->chevents_id == NGX_CONF_UNSET_PTR) {
        conf->chevents_id = prev->chevents_id;
    }

    if (conf->chevents_id == NGX_CONF_UNSET_PTR
        || conf->chevents_id == &ngx_pubsub_chev_off)
    {
        conf->chevents_id = NULL;
    }

    if (conf->chevent_string == NULL) {
        conf->chevent_string = prev->chevent_string;
    }

    if (conf->chevent_string != NULL || conf->chevents_id == NULL) {
        return NGX_CONF_OK;
    }

    conf->chevent_string = ngx_pubsub_conf_complex(cf,
                               ngx_pubsub_chev_default_string);
    if (conf->chevent_string == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    return NGX_CONF_OK;
}


/* $pubsub_channel_event: the event being evaluated, empty otherwise */
static ngx_int_t
ngx_pubsub_chev_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (ngx_pubsub_chev_current.active) {
        v->len = ngx_pubsub_chev_current.name.len;
        v->data = ngx_pubsub_chev_current.name.data;

    } else {
        v->len = 0;
        v->data = reinterpret_cast<u_char *>(const_cast<char *>(""));
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_chev_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;
    ngx_str_t             name = ngx_string("pubsub_channel_event");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_pubsub_chev_variable;
    var->data = 0;

    return NGX_OK;
}
