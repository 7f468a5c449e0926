/*
 * ngx_pubsub hooks: the presence hook (pubsub_presence_request, docs
 * presence.md).  Presence events may come long after the client left (a
 * leave delay, a dead worker), so a presence hook is a request of nobody:
 * it is built from the location's target (the server it resolves in, its
 * URI), known by an index that is the same in every worker, and nothing
 * waits for its answer.
 */

#include "ngx_pubsub_hooks_internal.h"
#include "ngx_pubsub_hooks_queue.h"


ngx_uint_t
ngx_pubsub_presence_hook_index(ngx_http_request_t *r)
{
    ngx_uint_t  i = ngx_pubsub_hooks_conf(r)->presence;

    return i == NGX_CONF_UNSET_UINT ? 0 : i;
}


ngx_int_t
ngx_pubsub_hook_presence(ngx_uint_t index, ngx_str_t json,
    ngx_str_t presence_id, ngx_str_t channel_id)
{
    ngx_pubsub_hooks_main_conf_t  *hmcf;
    ngx_pubsub_presence_target_t  *t;
    ngx_pubsub_hook_req_t          v;
    struct sockaddr_in             sin;
    static ngx_str_t               ct = ngx_string("application/json");

    hmcf = static_cast<ngx_pubsub_hooks_main_conf_t *>(
               ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_pubsub_hooks_module));

    if (hmcf == NULL || index == 0 || index > hmcf->presence.nelts) {
        return NGX_DECLINED;
    }

    t = static_cast<ngx_pubsub_presence_target_t *>(hmcf->presence.elts)
        + (index - 1);

    /* a request of nobody: events outlive their clients */
    ngx_pubsub_hook_req_nobody(&v, t->ctx, &t->uri, &t->args, &sin);
    v.presence_id = presence_id;
    v.nids = channel_id.len ? 1 : 0;
    v.ids = &channel_id;

    /* at least once, in order per presence id (ngx_pubsub_hooks_queue.cpp) */
    if (ngx_pubsub_hookq_push(NGX_PUBSUB_HOOK_PRESENCE, &v, json, ct,
                              ngx_pubsub_sv(presence_id))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pubsub: out of memory: a presence hook was not sent");
        return NGX_ERROR;
    }

    return NGX_OK;
}
