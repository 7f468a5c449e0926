/*
 * ngx_pubsub: channel groups - the group limits of a location
 * (pubsub_group_max_*, numbers or variables) and pubsub_group_location:
 * GET answers the group's counts and stored limits, POST stores the
 * location's limits with the group, DELETE deletes the group's channels.
 *
 * Precedence (docs/directives.md): an operation in a location uses the
 * location's own limit where it has one (a number other than 0); where it
 * has none, the limit stored with the group applies.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_conf.h"
#include "ngx_pubsub_engine.h"

#include <memory>
#include <string>

#include "pubsub/channel_id.h"
#include "pubsub/codec/format.h"


/* pubsub_group_max_*: a number (a size for messages memory) or variables */
char *
ngx_pubsub_conf_set_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_limit_t  *l;
    ngx_str_t           *value;
    ssize_t              n;

    l = reinterpret_cast<ngx_pubsub_limit_t *>(
            static_cast<char *>(conf) + cmd->offset);

    if (l->set != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        n = cmd->post ? ngx_parse_size(&value[1])
                      : ngx_atoi(value[1].data, value[1].len);
        if (n == NGX_ERROR) {
            return const_cast<char *>("invalid value");
        }

        l->cv = NULL;
        l->value = static_cast<uint64_t>(n);
        l->set = 1;

        return NGX_CONF_OK;
    }

    l->cv = ngx_pubsub_conf_complex(cf, value[1]);
    if (l->cv == NULL) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    l->value = 0;
    l->set = 1;

    return NGX_CONF_OK;
}


void
ngx_pubsub_merge_limit(ngx_pubsub_limit_t *conf, const ngx_pubsub_limit_t *prev)
{
    if (conf->set == NGX_CONF_UNSET) {
        *conf = *prev;
    }
}


/*
 * One limit for r: NGX_OK with *out (0: none of the location's own; also
 * for an empty value), NGX_DECLINED when the value is not a number.
 */
static ngx_int_t
ngx_pubsub_limit_eval(ngx_http_request_t *r, const ngx_pubsub_limit_t *l,
    ngx_uint_t size, uint64_t *out, ngx_uint_t *empty)
{
    ngx_str_t  v;
    ssize_t    n;

    *out = 0;
    *empty = 0;

    if (l->set == NGX_CONF_UNSET) {
        *empty = 1;
        return NGX_OK;
    }

    if (l->cv == NULL) {
        *out = l->value;
        return NGX_OK;
    }

    if (r == NULL) {
        *empty = 1;
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, l->cv, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v.len == 0) {
        *empty = 1;
        return NGX_OK;
    }

    n = size ? ngx_parse_size(&v) : ngx_atoi(v.data, v.len);
    if (n == NGX_ERROR) {
        return NGX_DECLINED;
    }

    *out = static_cast<uint64_t>(n);

    return NGX_OK;
}


/* the group limits: directive, GroupLimits field, size (or count), error */
static const struct {
    ngx_pubsub_limit_t ngx_pubsub_loc_conf_t::*limit;
    uint64_t pubsub::GroupLimits::*value;
    bool pubsub::GroupLimitsUpdate::*given;
    ngx_uint_t                     size;
    const char                    *err;
} ngx_pubsub_group_limit_defs[] = {
    { &ngx_pubsub_loc_conf_t::group_max_channels,
      &pubsub::GroupLimits::maxChannels, &pubsub::GroupLimitsUpdate::channels,
      0, "Invalid pubsub_group_max_channels value.\n" },
    { &ngx_pubsub_loc_conf_t::group_max_subscribers,
      &pubsub::GroupLimits::maxSubscribers,
      &pubsub::GroupLimitsUpdate::subscribers,
      0, "Invalid pubsub_group_max_subscribers value.\n" },
    { &ngx_pubsub_loc_conf_t::group_max_memory,
      &pubsub::GroupLimits::maxBytes, &pubsub::GroupLimitsUpdate::bytes,
      1, "Invalid pubsub_group_max_messages_memory value.\n" },
};


/*
 * The location's limits for r into up->limits; up's flags tell which of
 * them have a value.  NGX_DECLINED with *err for a value that is not a
 * number.  For a POST to the group: a limit directive that is absent or
 * evaluates to an empty value leaves the stored limit as it is; 0 removes
 * it.
 */
static ngx_int_t
ngx_pubsub_group_eval(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::GroupLimitsUpdate *up, const char **err)
{
    ngx_int_t   rc;
    ngx_uint_t  empty;

    for (const auto &d : ngx_pubsub_group_limit_defs) {
        rc = ngx_pubsub_limit_eval(r, &(plcf->*d.limit), d.size,
                                   &(up->limits.*d.value), &empty);
        if (rc == NGX_DECLINED) {
            *err = d.err;
        }
        if (rc != NGX_OK) {
            return rc;
        }

        up->*d.given = !empty;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pubsub_group_limits(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    pubsub::GroupLimits *l, const char **err)
{
    ngx_int_t                  rc;
    pubsub::GroupLimitsUpdate  up;

    *err = NULL;

    rc = ngx_pubsub_group_eval(r, plcf, &up, err);

    *l = up.limits;

    /* a location with a group limit directive uses the stored ones too
     * (the Redis engine counts the group for it) */
    for (const auto &d : ngx_pubsub_group_limit_defs) {
        if ((plcf->*d.limit).set != NGX_CONF_UNSET) {
            l->useStored = true;
        }
    }

    return rc;
}


/* pubsub_group_location [get] [set] [delete] */
char *
ngx_pubsub_group_location(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    static const ngx_pubsub_keyword_t  words[] = {
        { "get", NGX_PUBSUB_GROUP_GET },
        { "set", NGX_PUBSUB_GROUP_SET },
        { "delete", NGX_PUBSUB_GROUP_DELETE },
    };

    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    char                   *rv;
    ngx_str_t              *value;
    ngx_int_t               method;
    ngx_uint_t              i, methods;

    if (plcf->group_location) {
        return const_cast<char *>("is duplicate");
    }

    rv = ngx_pubsub_conf_other_kind(plcf, NGX_PUBSUB_LOC_GROUP);
    if (rv != NULL) {
        return rv;
    }

    value = static_cast<ngx_str_t *>(cf->args->elts);
    methods = 0;

    /* nchan's "off": not a group location (what leaving it out does) */
    if (cf->args->nelts == 2 && ngx_pubsub_sv(value[1]) == "off") {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_pubsub_conf_keyword(value[i], words, ngx_pubsub_nelts(words),
                                    &method)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\"",
                               &value[i], &cmd->name);
            return static_cast<char *>(NGX_CONF_ERROR);
        }

        methods |= method;
    }

    if (methods == 0) {
        methods = NGX_PUBSUB_GROUP_GET|NGX_PUBSUB_GROUP_SET
                  |NGX_PUBSUB_GROUP_DELETE;
    }

    plcf->group_location = methods;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_handler);
}


/* a group request waiting for its store's answer (Redis) */
struct ngx_pubsub_group_op_t {
    ngx_http_request_t  *r;
    ngx_uint_t           async = 0;
    ngx_uint_t           done = 0;
    ngx_int_t            rc = NGX_OK;
};


static ngx_int_t
ngx_pubsub_group_answer(ngx_http_request_t *r, pubsub::StoreResult res,
    const pubsub::GroupInfo &info)
{
    pubsub::InfoFormat  fmt;

    if (res != pubsub::StoreResult::kOk) {
        return ngx_pubsub_respond_text(r, ngx_pubsub_status_of(res),
                   "text/plain",
                   res == pubsub::StoreResult::kUnavailable
                   ? "Redis is unavailable.\n" : "Group request failed.\n");
    }

    fmt = ngx_pubsub_info_format(r);

    return ngx_pubsub_respond_text(r, NGX_HTTP_OK,
                                   pubsub::infoContentType(fmt),
                                   pubsub::formatGroupInfo(info, fmt));
}


/* the store's answer: at once (returned) or later (finalizes r) */
static pubsub::Store::GroupCallback
ngx_pubsub_group_cb(ngx_pubsub_group_op_t *op)
{
    return [op](pubsub::StoreResult res, const pubsub::GroupInfo &info) {
        ngx_http_request_t  *r = op->r;
        ngx_connection_t    *c = r->connection;
        ngx_int_t            rc;

        rc = ngx_pubsub_guard(c->log, [r, res, &info] {
            return ngx_pubsub_group_answer(r, res, info);
        });

        op->done = 1;

        if (!op->async) {
            op->rc = rc;
            return;
        }

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    };
}


/* the store's operation for `method` on the group; its answer is r's */
static ngx_int_t
ngx_pubsub_group_start(ngx_http_request_t *r, pubsub::Store *store,
    ngx_uint_t method, std::string_view name,
    const pubsub::GroupLimitsUpdate &up)
{
    ngx_pool_cleanup_t     *cln;
    ngx_pubsub_group_op_t  *op;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pubsub_group_op_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op = new (cln->data) ngx_pubsub_group_op_t();
    cln->handler = [](void *data) {
        static_cast<ngx_pubsub_group_op_t *>(data)->~ngx_pubsub_group_op_t();
    };
    op->r = r;

    /* the request stays until the answer (Redis: from the event loop) */
    r->main->count++;

    if (method == NGX_PUBSUB_GROUP_GET) {
        store->groupInfo(name, ngx_pubsub_group_cb(op));

    } else if (method == NGX_PUBSUB_GROUP_SET) {
        store->setGroupLimits(name, up, ngx_pubsub_group_cb(op));

    } else {
        store->removeGroup(name, ngx_pubsub_group_cb(op));
    }

    if (op->done) {
        r->main->count--;
        return op->rc;
    }

    op->async = 1;

    return NGX_DONE;
}


ngx_int_t
ngx_pubsub_group_handler(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t                  rc;
    ngx_str_t                  group;
    ngx_uint_t                 method;
    pubsub::Store             *store;
    pubsub::GroupLimitsUpdate  up;
    const char                *err = NULL;

    ngx_http_discard_request_body(r);

    switch (r->method) {
    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        method = NGX_PUBSUB_GROUP_GET;
        break;
    case NGX_HTTP_POST:
        method = NGX_PUBSUB_GROUP_SET;
        break;
    case NGX_HTTP_DELETE:
        method = NGX_PUBSUB_GROUP_DELETE;
        break;
    default:
        if (ngx_pubsub_set_header(r, "Allow", "GET, POST, DELETE, OPTIONS")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_ALLOWED, "text/plain",
                                       "Method not allowed.\n");
    }

    if (!(plcf->group_location & method)) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                   "This method is not enabled at this group location.\n");
    }

    rc = ngx_pubsub_channels_group(r, plcf, &group, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED || group.len > plcf->max_channel_id_length) {
        return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN, "text/plain",
                                       "Invalid channel group.\n");
    }

    if (method == NGX_PUBSUB_GROUP_SET) {
        switch (ngx_pubsub_group_eval(r, plcf, &up, &err)) {
        case NGX_OK:
            break;
        case NGX_DECLINED:
            return ngx_pubsub_respond_text(r, NGX_HTTP_FORBIDDEN,
                                           "text/plain", err);
        default:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    store = ngx_pubsub_store_for(plcf);
    if (store == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return ngx_pubsub_group_start(r, store, method, ngx_pubsub_sv(group), up);
}
