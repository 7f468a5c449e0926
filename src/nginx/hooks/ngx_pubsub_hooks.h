/*
 * ngx_pubsub: application hooks (authorize, subscribe, unsubscribe,
 * publisher upstream) and JWT tokens.  See docs/hooks.md.
 *
 * Every hook is an in-memory nginx subrequest to the configured URI.  The
 * subrequest is issued from a detached request on a fake connection that
 * carries a copy of the client's request (headers, query string, address),
 * so a hook never depends on the client still being there: an unsubscribe
 * is sent after the client is gone, and a client that goes away while its
 * hook is pending only cancels the callback.
 *
 * Authorize and tokens run in nginx's access phase for every request that
 * reaches a pubsub location or a presence API location (OPTIONS excepted),
 * WebSocket handshakes included: content handlers only run for accepted
 * requests and need to do nothing for them.
 */

#ifndef _NGX_PUBSUB_HOOKS_H_INCLUDED_
#define _NGX_PUBSUB_HOOKS_H_INCLUDED_

#include "ngx_pubsub.h"


extern "C" ngx_module_t  ngx_pubsub_hooks_module;


/* The answer of a hook, valid only while the callback runs. */
typedef struct {
    ngx_uint_t         status;        /* the backend's status, or ours */
    ngx_uint_t         failed;        /* no backend answer: error, timeout */
    ngx_str_t          content_type;
    ngx_str_t          body;
    ngx_list_t        *headers;       /* ngx_table_elt_t, hash 0 = deleted */
} ngx_pubsub_hook_result_t;

/*
 * Called from a posted event of the client's connection (never from inside
 * the call that started the hook); ngx_http_run_posted_requests() runs for
 * r->connection afterwards.
 */
typedef void (*ngx_pubsub_hook_done_pt)(ngx_http_request_t *r, void *data,
    ngx_pubsub_hook_result_t *res);

typedef struct ngx_pubsub_hook_call_s     ngx_pubsub_hook_call_t;
typedef struct ngx_pubsub_hook_session_s  ngx_pubsub_hook_session_t;


/* "websocket", "eventsource", "longpoll", ... for NGX_PUBSUB_SUB_* */
ngx_str_t ngx_pubsub_transport_name(ngx_uint_t transport);

/* whether pubsub_publisher_upstream_request applies to r's location */
ngx_uint_t ngx_pubsub_hook_has_upstream(ngx_http_request_t *r);

/*
 * whether pubsub_authorize_request applies to r's location (it may read
 * cookies: cross-origin requests need listed origins there, SPEC section 11)
 */
ngx_uint_t ngx_pubsub_hook_has_authorize(ngx_http_request_t *r);

/*
 * whether the token of r, a WebSocket that both subscribes and publishes,
 * lets it publish (its "publish" claim covers the publisher channels); 1
 * without a token
 */
ngx_uint_t ngx_pubsub_token_may_publish(ngx_http_request_t *r);

/*
 * POSTs `body` (Content-Type `ct`) to pubsub_publisher_upstream_request.
 * `publisher_type` is "http" or "websocket"; `ch` the channels published to.
 * Returns the call (done will be called exactly once, unless cancelled),
 * or NULL on error (nothing will be called).
 *
 * bind = 1: the call is cancelled automatically when r is freed (one call
 * per request: HTTP).  bind = 0: the caller must ngx_pubsub_hook_cancel()
 * a call whose callback has not run yet when it goes away (WebSocket: many
 * calls on one long request, nothing is added to r->pool per call).
 */
ngx_pubsub_hook_call_t *ngx_pubsub_hook_publish_upstream(
    ngx_http_request_t *r, ngx_pubsub_channels_t *ch, ngx_str_t body,
    ngx_str_t ct, ngx_str_t publisher_type, ngx_uint_t bind,
    ngx_pubsub_hook_done_pt done, void *data);

/* The callback will not be called; the backend still gets the request. */
void ngx_pubsub_hook_cancel(ngx_pubsub_hook_call_t *call);

/*
 * Subscribe / unsubscribe pairing.  Call ngx_pubsub_hook_subscribed() once
 * the subscriber receives messages for channel `id` (its id as given, not
 * the group/id key); it sends pubsub_subscribe_request and returns a session
 * (NULL when neither hook is configured, or on allocation failure - then
 * nothing is sent at all).  Call ngx_pubsub_hook_unsubscribed() exactly
 * once per session, whatever ends it (from a destructor/pool cleanup is
 * fine: nothing is sent synchronously).  The unsubscribe is sent after the
 * subscribe hook has answered.  Sessions outlive the request.
 * A multiplexed subscriber opens one session per channel.
 */
ngx_pubsub_hook_session_t *ngx_pubsub_hook_subscribed(ngx_http_request_t *r,
    ngx_str_t id, ngx_uint_t transport);
void ngx_pubsub_hook_unsubscribed(ngx_pubsub_hook_session_t *s);

/*
 * Long-poll / interval-poll: a polling session (docs/hooks.md) spans the
 * polls of one client that resume where the previous poll ended, within
 * pubsub_longpoll_session_grace.  _begin() continues a waiting session or
 * starts one (subscribe hook); _end() parks it until the next poll asking
 * for messages after `next` (or ends it now: `deleted`, or grace 0).
 */
ngx_pubsub_hook_session_t *ngx_pubsub_hook_poll_begin(ngx_http_request_t *r,
    ngx_str_t id, ngx_str_t key, ngx_uint_t transport,
    const pubsub::MsgId &resume);
void ngx_pubsub_hook_poll_end(ngx_pubsub_hook_session_t *s,
    const pubsub::MsgId &next, ngx_uint_t deleted);

/*
 * The same with the position as text: a multiplexed poll opens one session
 * per channel (the channel's key), all at the compound position of the
 * whole subscription (pubsub::Multiplexer::compoundId(size())), which the
 * next poll resumes from.
 */
ngx_pubsub_hook_session_t *ngx_pubsub_hook_poll_begin_at(
    ngx_http_request_t *r, ngx_str_t id, ngx_str_t key, ngx_uint_t transport,
    std::string_view resume);
void ngx_pubsub_hook_poll_end_at(ngx_pubsub_hook_session_t *s,
    std::string_view next, ngx_uint_t deleted);
/*
 * Parked sessions are forgotten at exit: by ngx_pubsub_module's
 * exit_process, before the worker root they hang off goes.
 */
void ngx_pubsub_hook_poll_forget(void);

/* Message id variables of r ($pubsub_message_id, $pubsub_prev_message_id) */
void ngx_pubsub_hook_set_message_ids(ngx_http_request_t *r,
    const pubsub::MsgId &id, const pubsub::MsgId &prev);

/* What the token (sub, info) or the authorize hook said about the client. */
typedef struct {
    ngx_str_t          presence_id;
    ngx_str_t          presence_info;   /* JSON text, may be empty */
    ngx_uint_t         token_verified;
} ngx_pubsub_identity_t;

/* NULL when r carried no token and no authorize hook gave an identity */
const ngx_pubsub_identity_t *ngx_pubsub_identity(ngx_http_request_t *r);

/*
 * Presence hook (pubsub_presence_request).  Events may come long after the
 * client left (a leave delay, a dead worker), so they are not tied to a
 * request: a location's hook is known by a small index, the same in every
 * worker and across reloads of an unchanged configuration.
 * ngx_pubsub_presence_hook_index() gives r's location's index + 1 (0: no
 * hook); ngx_pubsub_hook_presence() POSTs `json` (application/json) to the
 * hook of index + 1 `index` with X-Presence-Id and X-Channel-Id (when
 * `channel_id` is not empty).  Nothing waits for the answer.
 */
ngx_uint_t ngx_pubsub_presence_hook_index(ngx_http_request_t *r);
ngx_int_t ngx_pubsub_hook_presence(ngx_uint_t index, ngx_str_t json,
    ngx_str_t presence_id, ngx_str_t channel_id);

/* hook counters for pubsub_status, in shared memory (ngx_pubsub_status.cpp) */
typedef struct {
    ngx_atomic_uint_t  calls[5];        /* authorize, subscribe, unsubscribe,
                                           upstream, presence */
    ngx_atomic_uint_t  failures[5];     /* no answer or a 5xx */
    ngx_atomic_uint_t  refused;         /* authorize: not 2xx */
    ngx_atomic_uint_t  token_refused;   /* 401 for a token */
    ngx_atomic_uint_t  in_flight;
} ngx_pubsub_hook_stats_t;

extern ngx_pubsub_hook_stats_t  *ngx_pubsub_hook_stats;

#endif /* _NGX_PUBSUB_HOOKS_H_INCLUDED_ */
