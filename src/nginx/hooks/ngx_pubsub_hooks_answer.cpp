/*
 * ngx_pubsub hooks: a hook's answer.  Its status and headers, and its body,
 * captured by a header and a body filter of the hooks module (the first in
 * nginx's filter chains) into a buffer of the hook location's
 * subrequest_output_buffer_size; the post-subrequest handler that records
 * the answer, or fails the hook (no answer, an answer too big or cut
 * short), and counts the failures.  docs/hooks.md, "Answer size".
 */

#include "ngx_pubsub_hooks_internal.h"


/*
 * Hook subrequests are in-memory subrequests, but their body is captured
 * here, at the top of the body filter chain, not by nginx's postpone
 * filter: there, an answer larger than the hook location's
 * subrequest_output_buffer_size is a filter error, which marks the fake
 * connection as broken; nginx then terminates the detached request and
 * closes a connection that is not its own ("connection already closed"),
 * destroying the call without an answer: the client would wait forever.
 * Here an answer too big is read to its end and dropped (or not read at
 * all when its Content-Length says so), and the hook fails with 502.
 */

static ngx_http_output_header_filter_pt  ngx_pubsub_hooks_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_pubsub_hooks_next_body_filter;


/* the call whose hook subrequest r is, if it is one */
static ngx_pubsub_hook_call_t *
ngx_pubsub_hook_call_of(ngx_http_request_t *r)
{
    ngx_pubsub_hook_ctx_t  *ctx;

    if (r == r->main || r->parent != r->main) {
        return NULL;
    }

    ctx = static_cast<ngx_pubsub_hook_ctx_t *>(
              ngx_http_get_module_ctx(r->main, ngx_pubsub_hooks_module));

    if (ctx == NULL || !ctx->detached || ctx->call->sr != r) {
        return NULL;
    }

    return ctx->call;
}


static size_t
ngx_pubsub_hook_body_limit(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = static_cast<ngx_http_core_loc_conf_t *>(
               ngx_http_get_module_loc_conf(r, ngx_http_core_module));

    return clcf->subrequest_output_buffer_size;
}


static void
ngx_pubsub_hook_too_big(ngx_pubsub_hook_call_t *call, ngx_http_request_t *r)
{
    call->body_error = 1;

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  "pubsub: %s hook answer too big: more than the %uz bytes "
                  "of subrequest_output_buffer_size in the hook location",
                  ngx_pubsub_hook_names[call->kind],
                  ngx_pubsub_hook_body_limit(r));
}


static ngx_int_t
ngx_pubsub_hooks_header_filter(ngx_http_request_t *r)
{
    ngx_pubsub_hook_call_t  *call;

    call = ngx_pubsub_hook_call_of(r);

    if (call && r->headers_out.content_length_n > 0
        && (size_t) r->headers_out.content_length_n
           > ngx_pubsub_hook_body_limit(r))
    {
        /* announced too big: the body is not even read */
        ngx_pubsub_hook_too_big(call, r);
        r->header_only = 1;
    }

    return ngx_pubsub_hooks_next_header_filter(r);
}


/* copies one buffer of the answer into call->out; NGX_DECLINED: too big */
static ngx_int_t
ngx_pubsub_hook_capture(ngx_pubsub_hook_call_t *call, ngx_http_request_t *r,
    ngx_buf_t *b)
{
    off_t      size;
    size_t     len;
    ssize_t    n;
    ngx_buf_t *out;

    size = ngx_buf_size(b);

    if (size == 0) {
        return NGX_OK;
    }

    if (call->out == NULL) {
        len = ngx_pubsub_hook_body_limit(r);

        if (r->headers_out.content_length_n >= 0
            && (size_t) r->headers_out.content_length_n < len)
        {
            len = r->headers_out.content_length_n;
        }

        call->out = ngx_create_temp_buf(r->pool, len ? len : 1);
        if (call->out == NULL) {
            return NGX_ERROR;
        }
    }

    out = call->out;

    if (size > out->end - out->last) {
        return NGX_DECLINED;
    }

    len = (size_t) size;

    if (ngx_buf_in_memory(b)) {
        out->last = ngx_cpymem(out->last, b->pos, len);
        return NGX_OK;
    }

    /* a file (a static hook answer): read as nginx's copy filter would */
    n = ngx_read_file(b->file, out->last, len, b->file_pos);

    if (n != (ssize_t) len) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "pubsub: %s hook answer: could not read \"%V\"",
                      ngx_pubsub_hook_names[call->kind], &b->file->name);
        return NGX_ERROR;
    }

    out->last += len;

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_hooks_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_pubsub_hook_call_t  *call;
    ngx_chain_t             *cl;
    ngx_buf_t               *b;
    ngx_int_t                rc;

    call = ngx_pubsub_hook_call_of(r);
    if (call == NULL) {
        return ngx_pubsub_hooks_next_body_filter(r, in);
    }

    /* nothing goes further down: the answer is ours, consumed here */

    call->body_seen = 1;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf || b->last_in_chain) {
            call->body_done = 1;
        }

        if (!call->body_error) {
            rc = ngx_pubsub_hook_capture(call, r, b);

            if (rc == NGX_DECLINED) {
                ngx_pubsub_hook_too_big(call, r);

            } else if (rc != NGX_OK) {
                call->body_error = 1;
            }
        }

        if (ngx_buf_in_memory(b)) {
            b->pos = b->last;
        }

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_hook_sr_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_pubsub_hook_call_t    *call = static_cast<ngx_pubsub_hook_call_t *>(
                                          data);
    ngx_pubsub_hook_result_t  *res = &call->res;

    if (call->answered) {
        return NGX_OK;
    }

    call->answered = 1;

    res->backend_status = sr->headers_out.status >= 100
                          ? sr->headers_out.status : 0;

    /*
     * A broken answer: too big, cut short (the upstream ended it without
     * its last buffer: "upstream prematurely closed connection"), or a
     * filter error on the fake connection.  The error flag is cleared: the
     * detached request is finished by us, nginx would terminate it.
     */
    if (call->body_error || (call->body_seen && !call->body_done)
        || sr->connection->error)
    {
        sr->connection->error = 0;
        rc = NGX_HTTP_BAD_GATEWAY;
    }

    if (rc == NGX_OK && sr->headers_out.status >= 100) {
        res->status = sr->headers_out.status;

        if (call->out) {
            res->body.data = call->out->pos;
            res->body.len = call->out->last - call->out->pos;
        }

    } else if (rc >= NGX_HTTP_OK && rc < 600) {
        /* answered by nginx itself: "return 403", or an upstream error */
        res->status = rc;
        res->failed = (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR);

    } else {
        res->status = NGX_HTTP_BAD_GATEWAY;
        res->failed = 1;
    }

    res->content_type = sr->headers_out.content_type;
    res->headers = &sr->headers_out.headers;

    if (res->failed || res->status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        (void) ngx_atomic_fetch_add(
                   &ngx_pubsub_hook_stats->failures[call->kind], 1);

        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "pubsub: %s hook failed with status %ui",
                      ngx_pubsub_hook_names[call->kind], res->status);
    }

    /* never let the detached request be terminated: it is ours to free */
    return NGX_OK;
}


/* the hooks' filters, first in nginx's chains (loaded after nginx's own) */
void
ngx_pubsub_hooks_init_filters(void)
{
    ngx_pubsub_hooks_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_pubsub_hooks_header_filter;

    ngx_pubsub_hooks_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_pubsub_hooks_body_filter;
}
