/*
 * ngx_pubsub: the presence API (pubsub_presence_api, docs/presence.md): a
 * channel's members page by page, its counts, a user's channels - JSON.
 * The queries go to the location's engine (ngx_pubsub_engine.h): the
 * zone's registry in memory, Redis scripts in Redis.
 */

#include "ngx_pubsub_presence.h"
#include "ngx_pubsub_engine.h"

#include <functional>
#include <memory>
#include <new>
#include <string>

#include "pubsub/codec/json.h"


/* URL-decoded copy of an argument value */
static std::string
ngx_pubsub_presence_unescape(ngx_http_request_t *r, ngx_str_t v)
{
    u_char  *dst, *src;

    if (v.len == 0) {
        return std::string();
    }

    dst = static_cast<u_char *>(ngx_pnalloc(r->pool, v.len));
    if (dst == NULL) {
        throw std::bad_alloc();
    }

    u_char *start = dst;
    src = v.data;
    ngx_unescape_uri(&dst, &src, v.len, 0);

    return std::string(reinterpret_cast<char *>(start), dst - start);
}


static ngx_int_t
ngx_pubsub_presence_json(ngx_http_request_t *r, ngx_uint_t status,
    const std::string &body)
{
    if (ngx_pubsub_set_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_pubsub_cors(r, ngx_pubsub_get_loc_conf(r), 1)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pubsub_respond_text(r, status, "application/json", body);
}


static ngx_int_t
ngx_pubsub_presence_error(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view reason)
{
    std::string  body = "{\"error\":";

    pubsub::appendJsonString(body, reason);
    body += "}\n";

    return ngx_pubsub_presence_json(r, status, body);
}


/* the answers, from the engine's results */

static ngx_int_t
ngx_pubsub_presence_user_answer(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, const std::string &id,
    const pubsub::PresenceUserState &st)
{
    std::string  body, prefix;
    ngx_str_t    group;

    group.len = 0;
    if (plcf->channel_group
        && ngx_http_complex_value(r, plcf->channel_group, &group) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    prefix = group.len ? std::string(ngx_pubsub_sv(group)) : "default";
    prefix += '/';

    body = "{\"user\":";
    pubsub::appendJsonString(body, id);
    body += st.online ? ",\"online\":true" : ",\"online\":false";
    if (st.online) {
        body += ",\"online_since\":" + std::to_string(st.onlineSince / 1000);
    }
    body += ",\"channels\":[";

    ngx_uint_t first = 1;
    for (const std::string &key : st.channels) {
        if (key.compare(0, prefix.size(), prefix) != 0) {
            continue;   /* another group's */
        }
        if (!first) {
            body += ',';
        }
        first = 0;
        pubsub::appendJsonString(body, std::string_view(key).substr(
                                           prefix.size()));
    }

    body += "]}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static void
ngx_pubsub_presence_counts(std::string &body, const pubsub::PresenceStats &s)
{
    body += "\"members\":" + std::to_string(s.members);
    body += ",\"connections\":" + std::to_string(s.connections);
    body += ",\"anonymous\":" + std::to_string(s.anonymous);
}


static ngx_int_t
ngx_pubsub_presence_stats_answer(ngx_http_request_t *r, std::string body,
    const pubsub::PresenceStats &st)
{
    ngx_pubsub_presence_counts(body, st);
    body += "}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_pubsub_presence_page_answer(ngx_http_request_t *r, std::string body,
    const pubsub::PresencePage &page)
{
    body += "\"members\":[";

    for (size_t i = 0; i < page.members.size(); i++) {
        const pubsub::PresenceMemberView &m = page.members[i];

        body += i ? ",{\"id\":" : "{\"id\":";
        pubsub::appendJsonString(body, m.id);
        body += ",\"info\":";
        body += m.info.empty() ? std::string("null") : m.info;
        body += ",\"connections\":" + std::to_string(m.connections);
        body += ",\"joined_at\":" + std::to_string(m.joinedAt / 1000);
        body += m.leaving ? ",\"leaving\":true}" : ",\"leaving\":false}";
    }

    body += "],\"next_cursor\":";
    if (page.nextCursor.empty()) {
        body += "null";
    } else {
        pubsub::appendJsonString(body, page.nextCursor);
    }
    body += ",\"stats\":{";
    ngx_pubsub_presence_counts(body, page.stats);
    body += "}}\n";

    return ngx_pubsub_presence_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_pubsub_presence_bad_cursor(ngx_http_request_t *r)
{
    return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
               "cursor is not one this API gave (use next_cursor as is)");
}


/* an engine's failure */
static ngx_int_t
ngx_pubsub_presence_store_error(ngx_http_request_t *r, pubsub::StoreResult res)
{
    switch (res) {
    case pubsub::StoreResult::kNoMemory:
        return ngx_pubsub_presence_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "out of memory");
    case pubsub::StoreResult::kUnavailable:
        return ngx_pubsub_presence_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         pubsub::RedisStore::kUnavailable);
    default:
        return ngx_pubsub_presence_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "unexpected reply from Redis");
    }
}


/*
 * A query runs in the location's engine.  `start` starts it with a
 * completion that answers; when it completed before returning (memory, or
 * Redis is down), the answer's status is returned as usual, else the
 * request waits.
 */
typedef struct {
    ngx_int_t  rc;
    bool       sync;
    bool       answered;
} ngx_pubsub_presence_wait_t;


template <typename Start>
static ngx_int_t
ngx_pubsub_presence_query(ngx_http_request_t *r, Start start)
{
    auto  w = std::make_shared<ngx_pubsub_presence_wait_t>();

    w->sync = true;
    w->answered = false;
    w->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    start([r, w](std::function<ngx_int_t()> answer) {
        ngx_int_t          rc;
        ngx_connection_t  *c;

        rc = ngx_pubsub_guard(r->connection->log, answer);

        if (w->sync) {
            w->answered = true;
            w->rc = rc;
            return;
        }

        c = r->connection;
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    });

    w->sync = false;

    if (w->answered) {
        return w->rc;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_pubsub_presence_user(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_str_t arg)
{
    std::string  id;

    id = ngx_pubsub_presence_unescape(r, arg);

    if (id.empty()) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                         "user must not be empty");
    }

    if (id.size() > pubsub::PresenceRegistry::kMaxIdLength) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                         "user is longer than 1024 bytes");
    }

    return ngx_pubsub_presence_query(r, [&](auto done) {
        plcf->engine->presence_user(plcf, id, [r, plcf, id, done](
            pubsub::StoreResult res, pubsub::PresenceUserState &&u)
        {
            done([&]() {
                if (res != pubsub::StoreResult::kOk) {
                    return ngx_pubsub_presence_store_error(r, res);
                }
                return ngx_pubsub_presence_user_answer(r, plcf, id, u);
            });
        });
    });
}


static ngx_int_t ngx_pubsub_presence_channel(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf);


static ngx_int_t
ngx_pubsub_presence_api_run(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_str_t  v;
    ngx_int_t  rc;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        ngx_http_discard_request_body(r);
        if (ngx_pubsub_set_header(r, "Allow", "GET, OPTIONS") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_pubsub_presence_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "the presence API answers GET only");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ngx_pubsub_presence_available()) {
        return ngx_pubsub_presence_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "presence is not available");
    }

    if (ngx_pubsub_query_arg(r, "user", &v)) {
        return ngx_pubsub_presence_user(r, plcf, v);
    }

    return ngx_pubsub_presence_channel(r, plcf);
}


/* the one channel of r; NULL with *rc, r's answer, when there is none */
static ngx_pubsub_channels_t *
ngx_pubsub_presence_one_channel(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, ngx_int_t *rc)
{
    ngx_pubsub_channels_t  *ch;
    const char             *err;

    ch = static_cast<ngx_pubsub_channels_t *>(
             ngx_palloc(r->pool, sizeof(ngx_pubsub_channels_t)));
    if (ch == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    *rc = ngx_pubsub_channels_eval(r, plcf, 0, ch, &err);

    if (*rc == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    if (*rc == NGX_DECLINED) {
        /* the same reason as elsewhere, as JSON like the rest of the API */
        std::string_view  reason(err);

        if (!reason.empty() && reason.back() == '\n') {
            reason.remove_suffix(1);
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "pubsub: %s", err);
        *rc = ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST, reason);
        return NULL;
    }

    if (ch->n != 1) {
        *rc = ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                                        "the presence API takes one channel");
        return NULL;
    }

    return ch;
}


/* a page of the members of `key`: ?limit (100 by default), ?cursor */
static ngx_int_t
ngx_pubsub_presence_members(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf, std::string_view key, const std::string &body)
{
    ngx_str_t    v;
    std::string  cursor;
    size_t       limit = 100;

    if (ngx_pubsub_query_arg(r, "limit", &v)) {
        ngx_int_t n = v.len ? ngx_atoi(v.data, v.len) : NGX_ERROR;
        if (n < 1 || n > (ngx_int_t) pubsub::PresenceRegistry::kMaxPage) {
            return ngx_pubsub_presence_error(r, NGX_HTTP_BAD_REQUEST,
                       "limit must be a number from 1 to 1000");
        }
        limit = static_cast<size_t>(n);
    }

    if (ngx_pubsub_query_arg(r, "cursor", &v)) {
        cursor = ngx_pubsub_presence_unescape(r, v);
    }

    return ngx_pubsub_presence_query(r, [&](auto done) {
        plcf->engine->presence_page(plcf, key, limit, cursor, [r, body, done](
            pubsub::StoreResult res, pubsub::PresencePage &&page)
        {
            done([&]() {
                if (res == pubsub::StoreResult::kNotFound) {
                    return ngx_pubsub_presence_bad_cursor(r);
                }
                if (res != pubsub::StoreResult::kOk) {
                    return ngx_pubsub_presence_store_error(r, res);
                }
                return ngx_pubsub_presence_page_answer(r, body, page);
            });
        });
    });
}


/* a channel's counts (?stats) or a page of its members */
static ngx_int_t
ngx_pubsub_presence_channel(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    ngx_int_t               rc;
    std::string             body;
    ngx_pubsub_channels_t  *ch;

    ch = ngx_pubsub_presence_one_channel(r, plcf, &rc);
    if (ch == NULL) {
        return rc;
    }

    std::string_view key = ngx_pubsub_sv(ch->key[0]);

    body = "{\"channel\":";
    pubsub::appendJsonString(body, ngx_pubsub_sv(ch->id[0]));
    body += ',';

    if (!ngx_pubsub_query_arg(r, "stats", NULL)) {
        return ngx_pubsub_presence_members(r, plcf, key, body);
    }

    return ngx_pubsub_presence_query(r, [&](auto done) {
        plcf->engine->presence_stats(plcf, key, [r, body, done](
            pubsub::StoreResult res, const pubsub::PresenceStats &st)
        {
            done([&]() {
                if (res != pubsub::StoreResult::kOk) {
                    return ngx_pubsub_presence_store_error(r, res);
                }
                return ngx_pubsub_presence_stats_answer(r, body, st);
            });
        });
    });
}


ngx_int_t
ngx_pubsub_presence_api_handler(ngx_http_request_t *r,
    ngx_pubsub_loc_conf_t *plcf)
{
    return ngx_pubsub_guard(r->connection->log, [r, plcf] {
        return ngx_pubsub_presence_api_run(r, plcf);
    });
}
