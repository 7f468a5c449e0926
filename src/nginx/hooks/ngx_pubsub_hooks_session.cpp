/*
 * ngx_pubsub hooks: subscribe/unsubscribe pairing (docs/hooks.md, "the
 * pairing guarantee").  A session is opened per subscribed channel: it
 * sends the subscribe hook and keeps a snapshot of the client's request,
 * so that its unsubscribe, sent exactly once whatever ends it, after the
 * subscribe hook's answer, needs nothing of the client.  Long-poll and
 * interval-poll: a session spans the polls of one client that resume where
 * the previous poll ended; between polls it is parked under a key
 * (channel, position, client identity) for pubsub_longpoll_session_grace.
 */

#include "ngx_pubsub_hooks_internal.h"
#include "ngx_pubsub_worker.h"

#include <new>
#include <string>
#include <unordered_map>

#include "pubsub/keyed_hash.h"


struct ngx_pubsub_hook_session_s {
    ngx_pool_t                   *pool;
    ngx_pubsub_hook_req_t        *req;
    ngx_str_t                     unsub_uri;
    ngx_str_t                     unsub_args;
    ngx_uint_t                    has_unsub;
    ngx_uint_t                    sub_inflight;
    ngx_uint_t                    unsub_wanted;
    ngx_uint_t                    ended;

    /* polling sessions */
    ngx_uint_t                    poll;
    ngx_msec_t                    grace;
    ngx_str_t                     chan_key;
    std::string                  *identity;
    std::string                  *parked_key;
    ngx_event_t                   grace_ev;
};


/* keyed by client-chosen channel ids: a keyed hash (see keyed_hash.h) */
typedef std::unordered_multimap<std::string, ngx_pubsub_hook_session_t *,
                                pubsub::KeyedStringHash>
    ngx_pubsub_poll_map_t;

/*
 * The worker root's "hooks" part: the parked polling sessions, made by the
 * first polling session and forgotten at exit (ngx_pubsub_hook_poll_forget).
 */
struct ngx_pubsub_hook_worker_t {
    ngx_pubsub_poll_map_t  parked;
};


/* the parked sessions (make: made if there are none); NULL: none */
static ngx_pubsub_poll_map_t *
ngx_pubsub_poll_sessions(bool make)
{
    ngx_pubsub_hook_worker_t  *hw = ngx_pubsub_worker_part(hooks);

    if (hw == NULL && make && ngx_pubsub_worker != NULL) {
        hw = new ngx_pubsub_hook_worker_t();
        ngx_pubsub_worker->hooks = hw;
    }

    return hw ? &hw->parked : NULL;
}


static void ngx_pubsub_session_destroy(ngx_pubsub_hook_session_t *s);


/* sends a session's hook `kind` to uri?args: the call, or NULL */
static ngx_pubsub_hook_call_t *
ngx_pubsub_session_send(ngx_pubsub_hook_session_t *s, ngx_uint_t kind,
    ngx_str_t uri, ngx_str_t args, ngx_log_t *log)
{
    ngx_pubsub_hook_call_t  *call;
    ngx_pubsub_hook_req_t    v;

    call = ngx_pubsub_hook_call_alloc(kind, log);
    if (call == NULL) {
        return NULL;
    }

    v = *s->req;
    v.uri = uri;
    v.args = args;

    call->req = ngx_pubsub_hook_req_copy(call->pool, &v, v.nheaders);

    if (call->req == NULL || ngx_pubsub_hook_launch(call) != NGX_OK) {
        ngx_pubsub_hook_free(call);
        return NULL;
    }

    return call;
}


static void
ngx_pubsub_session_unsub_now(ngx_pubsub_hook_session_t *s)
{
    if (s->has_unsub
        && ngx_pubsub_session_send(s, NGX_PUBSUB_HOOK_UNSUBSCRIBE,
                                   s->unsub_uri, s->unsub_args,
                                   ngx_cycle->log) == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "pubsub: out of memory: an unsubscribe hook was not "
                      "sent");
    }

    ngx_pubsub_session_destroy(s);
}


static void
ngx_pubsub_session_sub_done(ngx_pubsub_hook_call_t *call,
    ngx_pubsub_hook_result_t *res)
{
    ngx_pubsub_hook_session_t  *s = static_cast<ngx_pubsub_hook_session_t *>(
                                        call->idata);

    (void) res;

    s->sub_inflight = 0;

    if (s->unsub_wanted) {
        ngx_pubsub_session_unsub_now(s);
    }
}


static void
ngx_pubsub_session_destroy(ngx_pubsub_hook_session_t *s)
{
    if (s->grace_ev.timer_set) {
        ngx_del_timer(&s->grace_ev);
    }

    delete s->identity;
    delete s->parked_key;
    s->identity = NULL;
    s->parked_key = NULL;

    ngx_destroy_pool(s->pool);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_subscribed(ngx_http_request_t *r, ngx_str_t id,
    ngx_uint_t transport)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);
    ngx_pubsub_hook_session_t    *s;
    ngx_pubsub_hook_call_t       *call;
    ngx_pool_t                   *pool;
    ngx_str_t                     uri, args;
    ngx_str_t                     none = ngx_null_string;

    if (!ngx_pubsub_hook_active(hlcf->subscribe)
        && !ngx_pubsub_hook_active(hlcf->unsubscribe))
    {
        return NULL;
    }

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    s = static_cast<ngx_pubsub_hook_session_t *>(
            ngx_pcalloc(pool, sizeof(ngx_pubsub_hook_session_t)));
    if (s == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    s->pool = pool;

    s->req = ngx_pubsub_hook_snapshot(r, pool, 1, &id,
                                      ngx_pubsub_transport_name(transport),
                                      none);
    if (s->req == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    if (ngx_pubsub_hook_active(hlcf->unsubscribe)) {
        if (ngx_pubsub_hook_target(r, hlcf->unsubscribe, pool, &s->unsub_uri,
                                   &s->unsub_args) != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return NULL;
        }

        s->has_unsub = 1;
    }

    if (!ngx_pubsub_hook_active(hlcf->subscribe)) {
        return s;
    }

    if (ngx_pubsub_hook_target(r, hlcf->subscribe, pool, &uri, &args)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NULL;
    }

    call = ngx_pubsub_session_send(s, NGX_PUBSUB_HOOK_SUBSCRIBE, uri, args,
                                   r->connection->log);
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    /* the answer comes from a posted event: not yet */
    call->internal = ngx_pubsub_session_sub_done;
    call->idata = s;

    s->sub_inflight = 1;

    return s;
}


void
ngx_pubsub_hook_unsubscribed(ngx_pubsub_hook_session_t *s)
{
    if (s == NULL || s->ended) {
        return;
    }

    s->ended = 1;

    if (s->sub_inflight) {
        s->unsub_wanted = 1;
        return;
    }

    ngx_pubsub_session_unsub_now(s);
}


/* polling sessions */

static std::string
ngx_pubsub_poll_key(ngx_pubsub_hook_session_t *s, std::string_view next)
{
    std::string  k;

    k.append(ngx_pubsub_sv(s->chan_key));
    k.push_back('\n');
    k.append(next);
    k.push_back('\n');
    k.append(*s->identity);

    return k;
}


/* a single channel's position as a poll key part ("" before any message) */
static std::string
ngx_pubsub_poll_pos(const pubsub::MsgId &id)
{
    return id.isNull() ? std::string() : pubsub::formatMsgId(id);
}


static std::string
ngx_pubsub_poll_identity(ngx_http_request_t *r)
{
    static const char  *names[] = { "User-Agent", "Cookie", "Authorization" };
    std::string         id;
    ngx_table_elt_t    *h;
    ngx_str_t           tok;

    id.append(ngx_pubsub_sv(r->connection->addr_text));

    for (const char *n : names) {
        id.push_back('\n');
        h = ngx_pubsub_find_header(r, n);
        if (h) {
            id.append(ngx_pubsub_sv(h->value));
        }
    }

    /* a token in the query string (pubsub_token $arg_token) */
    if (ngx_http_arg(r, (u_char *) "token", 5, &tok) == NGX_OK) {
        id.push_back('\n');
        id.append(ngx_pubsub_sv(tok));
    }

    return id;
}


static void
ngx_pubsub_poll_unpark(ngx_pubsub_hook_session_t *s)
{
    ngx_pubsub_poll_map_t  *parked = ngx_pubsub_poll_sessions(false);

    if (s->parked_key && parked) {
        auto range = parked->equal_range(*s->parked_key);

        for (auto it = range.first; it != range.second; ++it) {
            if (it->second == s) {
                parked->erase(it);
                break;
            }
        }
    }

    delete s->parked_key;
    s->parked_key = NULL;

    if (s->grace_ev.timer_set) {
        ngx_del_timer(&s->grace_ev);
    }
}


static void
ngx_pubsub_poll_grace_handler(ngx_event_t *ev)
{
    ngx_pubsub_hook_session_t  *s = static_cast<ngx_pubsub_hook_session_t *>(
                                        ev->data);

    ngx_pubsub_poll_unpark(s);
    ngx_pubsub_hook_unsubscribed(s);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_poll_begin(ngx_http_request_t *r, ngx_str_t id, ngx_str_t key,
    ngx_uint_t transport, const pubsub::MsgId &resume)
{
    std::string  at;

    try {
        at = ngx_pubsub_poll_pos(resume);

    } catch (...) {
        return ngx_pubsub_hook_subscribed(r, id, transport);
    }

    return ngx_pubsub_hook_poll_begin_at(r, id, key, transport, at);
}


ngx_pubsub_hook_session_t *
ngx_pubsub_hook_poll_begin_at(ngx_http_request_t *r, ngx_str_t id,
    ngx_str_t key, ngx_uint_t transport, std::string_view resume)
{
    ngx_pubsub_hooks_loc_conf_t  *hlcf = ngx_pubsub_hooks_conf(r);
    ngx_pubsub_hook_session_t    *s;
    ngx_pubsub_poll_map_t        *parked;
    std::string                   ident, k;

    if (!ngx_pubsub_hook_active(hlcf->subscribe)
        && !ngx_pubsub_hook_active(hlcf->unsubscribe))
    {
        return NULL;
    }

    parked = ngx_pubsub_poll_sessions(true);

    ident = ngx_pubsub_poll_identity(r);

    k.append(ngx_pubsub_sv(key));
    k.push_back('\n');
    k.append(resume);
    k.push_back('\n');
    k.append(ident);

    auto it = parked ? parked->find(k) : ngx_pubsub_poll_map_t::iterator();

    if (parked && it != parked->end()) {
        s = it->second;
        ngx_pubsub_poll_unpark(s);
        return s;
    }

    s = ngx_pubsub_hook_subscribed(r, id, transport);
    if (s == NULL) {
        return NULL;
    }

    s->poll = 1;
    s->grace = hlcf->poll_grace;

    s->identity = new (std::nothrow) std::string(std::move(ident));
    if (s->identity == NULL || parked == NULL
        || ngx_pubsub_hook_dup(s->pool, &s->chan_key, key) != NGX_OK)
    {
        /* cannot park it: a session of one poll */
        s->grace = 0;
    }

    s->grace_ev.handler = ngx_pubsub_poll_grace_handler;
    s->grace_ev.data = s;
    s->grace_ev.log = ngx_cycle->log;

    return s;
}


void
ngx_pubsub_hook_poll_end(ngx_pubsub_hook_session_t *s,
    const pubsub::MsgId &next, ngx_uint_t deleted)
{
    std::string  at;

    if (s == NULL || s->ended) {
        return;
    }

    try {
        at = ngx_pubsub_poll_pos(next);

    } catch (...) {
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    ngx_pubsub_hook_poll_end_at(s, at, deleted);
}


void
ngx_pubsub_hook_poll_end_at(ngx_pubsub_hook_session_t *s,
    std::string_view next, ngx_uint_t deleted)
{
    ngx_pubsub_poll_map_t  *parked = ngx_pubsub_poll_sessions(false);

    if (s == NULL || s->ended) {
        return;
    }

    /* a worker shutting down gets no more polls: end now */
    if (deleted || s->grace == 0 || parked == NULL || ngx_exiting
        || ngx_terminate || ngx_quit)
    {
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    try {
        s->parked_key = new std::string(ngx_pubsub_poll_key(s, next));
        parked->emplace(*s->parked_key, s);

    } catch (...) {
        delete s->parked_key;
        s->parked_key = NULL;
        ngx_pubsub_hook_unsubscribed(s);
        return;
    }

    ngx_add_timer(&s->grace_ev, s->grace);
}


/*
 * At exit (ngx_pubsub_module's, before the worker root goes): parked
 * sessions can send nothing any more; forget them.
 */
void
ngx_pubsub_hook_poll_forget(void)
{
    ngx_pubsub_hook_worker_t  *hw = ngx_pubsub_worker_part(hooks);

    if (hw == NULL) {
        return;
    }

    ngx_pubsub_worker->hooks = NULL;
    delete hw;
}
