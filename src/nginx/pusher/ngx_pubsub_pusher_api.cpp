/*
 * ngx_pubsub Pusher: the HTTP API (pubsub_pusher_api, docs/pusher.md
 * "HTTP API"): events, batch_events, channels, one channel, its users and
 * terminate_connections under …/apps/<id>/, each request signed as Pusher
 * signs them (include/pubsub/pusher/auth.h).  Bodies, checks and answers
 * are the core's (include/pubsub/pusher/api.h); what runs in the store goes
 * through the location's engine (memory or pubsub_redis_pass).
 */

#include "ngx_pubsub_pusher.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_redis.h"

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "pubsub/pusher/api.h"
#include "pubsub/pusher/auth.h"
#include "pubsub/pusher/features.h"
#include "pubsub/pusher/origin.h"


namespace pp = pubsub::pusher;


/* most members the users route answers (pages of the presence registry) */
#define NGX_PUBSUB_PUSHER_API_MAX_USERS  100000


typedef struct {
    ngx_http_request_t            *r;
    ngx_pubsub_loc_conf_t         *plcf;
    ngx_pubsub_pusher_app_t       *app;
    pp::ApiPath                    path;
    std::string                    body;
    std::vector<pp::ApiEvent>      events;
    std::vector<pp::ChannelCounts> counts;   /* per event and channel */
    std::vector<std::string>       users;
    pubsub::OccupiedList           occupied;
    pp::InfoFields                 info;
    std::string                    fail;     /* a store's failure */
    ngx_uint_t                     fail_status;
} ngx_pubsub_pusher_api_ctx_t;


/*
 * Store operations whose replies come at once (memory) or later (Redis):
 * `answer` runs after the last one.  When it is late, the request was kept
 * (r->main->count++, NGX_DONE) and the answer finalizes it.
 */
struct ngx_pubsub_pusher_wait_t {
    ngx_http_request_t          *r;
    ngx_uint_t                   left = 1;  /* held until all are started */
    bool                         async = false;
    std::function<ngx_int_t()>   answer;
};

typedef std::shared_ptr<ngx_pubsub_pusher_wait_t>  ngx_pubsub_pusher_wait_p;


static ngx_int_t ngx_pubsub_pusher_api_handler(ngx_http_request_t *r);
static void ngx_pubsub_pusher_api_body(ngx_http_request_t *r);


static ngx_pubsub_pusher_wait_p
ngx_pubsub_pusher_wait(ngx_http_request_t *r, std::function<ngx_int_t()> f)
{
    auto  w = std::make_shared<ngx_pubsub_pusher_wait_t>();

    w->r = r;
    w->answer = std::move(f);

    return w;
}


static void
ngx_pubsub_pusher_wait_done(const ngx_pubsub_pusher_wait_p &w)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    if (--w->left != 0 || !w->async) {
        return;
    }

    c = w->r->connection;
    rc = ngx_pubsub_guard(c->log, [&w] { return w->answer(); });

    ngx_http_finalize_request(w->r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_pubsub_pusher_wait_start(const ngx_pubsub_pusher_wait_p &w)
{
    if (--w->left == 0) {
        return w->answer();
    }

    w->async = true;
    w->r->main->count++;

    return NGX_DONE;
}


/* answers */

static ngx_int_t
ngx_pubsub_pusher_api_error(ngx_http_request_t *r, ngx_uint_t status,
    std::string_view reason)
{
    std::string  text(reason);

    text += '\n';

    if (status == NGX_HTTP_UNAUTHORIZED || status >= 500) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: pusher api: %ui %*s", status,
                      reason.size(), reason.data());
    }

    return ngx_pubsub_respond_text(r, status, "text/plain", text);
}


static ngx_int_t
ngx_pubsub_pusher_api_json(ngx_http_request_t *r, const std::string &json)
{
    if (json.empty()) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;   /* out of memory */
    }

    if (ngx_pubsub_set_header(r, "Cache-Control", "no-cache") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pubsub_respond_text(r, NGX_HTTP_OK, "application/json", json);
}


/* a store's failure, kept for the answer */
static void
ngx_pubsub_pusher_api_failed(ngx_pubsub_pusher_api_ctx_t *ctx,
    pubsub::StoreResult res, std::string_view reason)
{
    if (!ctx->fail.empty()) {
        return;
    }

    ctx->fail_status = ngx_pubsub_status_of(res);
    ctx->fail = reason.empty() ? std::string("the store failed")
                               : std::string(reason);
}


static std::string
ngx_pubsub_pusher_api_key(ngx_pubsub_pusher_api_ctx_t *ctx,
    std::string_view channel)
{
    std::string  key(ngx_pubsub_sv(ctx->app->group));

    key += '/';
    key += channel;

    return key;
}


static const char *
ngx_pubsub_pusher_api_store_reason(pubsub::StoreResult res)
{
    switch (res) {
    case pubsub::StoreResult::kUnavailable:
        return pubsub::RedisStore::kUnavailable;
    case pubsub::StoreResult::kNoMemory:
        return "out of memory";
    default:
        return "unexpected reply from the store";
    }
}


/* true for kOk; otherwise the store's failure is kept for the answer */
static bool
ngx_pubsub_pusher_api_ok(ngx_pubsub_pusher_api_ctx_t *ctx,
    pubsub::StoreResult res)
{
    if (res == pubsub::StoreResult::kOk) {
        return true;
    }

    ngx_pubsub_pusher_api_failed(ctx, res,
                                 ngx_pubsub_pusher_api_store_reason(res));
    return false;
}


/* the user_count of the presence channel ctx->counts[i], one more for w */
static void
ngx_pubsub_pusher_api_user_count(ngx_pubsub_pusher_api_ctx_t *ctx,
    const ngx_pubsub_pusher_wait_p &w, size_t i)
{
    w->left++;

    ctx->plcf->engine->presence_stats(ctx->plcf,
        ngx_pubsub_pusher_api_key(ctx, ctx->counts[i].name),
        [ctx, w, i](pubsub::StoreResult res, const pubsub::PresenceStats &st)
        {
            if (ngx_pubsub_pusher_api_ok(ctx, res)) {
                ctx->counts[i].userCount = st.members;
            }

            ngx_pubsub_pusher_wait_done(w);
        });
}


/*
 * user_count of the presence channels of `counts` whose `want` is set, then
 * `answer`.
 */
static ngx_int_t
ngx_pubsub_pusher_api_user_counts(ngx_pubsub_pusher_api_ctx_t *ctx,
    std::vector<ngx_uint_t> want, std::function<ngx_int_t()> answer)
{
    ngx_pubsub_pusher_wait_p  w;

    w = ngx_pubsub_pusher_wait(ctx->r, std::move(answer));

    for (size_t i = 0; i < ctx->counts.size(); i++) {
        if (want[i] && ctx->counts[i].presence) {
            ngx_pubsub_pusher_api_user_count(ctx, w, i);
        }
    }

    return ngx_pubsub_pusher_wait_start(w);
}


/* POST events, batch_events, terminate_connections: publish ctx->events */

static ngx_int_t
ngx_pubsub_pusher_api_published(ngx_pubsub_pusher_api_ctx_t *ctx)
{
    size_t                   k;
    std::vector<ngx_uint_t>  want;

    if (!ctx->fail.empty()) {
        return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                           ctx->fail);
    }

    for (const pp::ApiEvent &ev : ctx->events) {
        for (k = 0; k < ev.channels.size(); k++) {
            want.push_back(ev.info.userCount);
        }
    }

    return ngx_pubsub_pusher_api_user_counts(ctx, std::move(want), [ctx] {
        std::vector<pp::ChannelCounts>  per;
        std::vector<pp::InfoFields>     infos;
        size_t                          n = 0;

        if (!ctx->fail.empty()) {
            return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                               ctx->fail);
        }

        if (ctx->path.route != pp::ApiRoute::BatchEvents) {
            if (ctx->events.empty()) {
                return ngx_pubsub_pusher_api_json(ctx->r, "{}");
            }

            return ngx_pubsub_pusher_api_json(ctx->r,
                       pp::eventsAnswer(ctx->counts, ctx->events[0].info));
        }

        /* a batch event has one channel: its counts */
        for (const pp::ApiEvent &ev : ctx->events) {
            per.push_back(ctx->counts[n]);
            infos.push_back(ev.info);
            n += ev.channels.size();
        }

        return ngx_pubsub_pusher_api_json(ctx->r, pp::batchAnswer(per, infos));
    });
}


static ngx_int_t
ngx_pubsub_pusher_api_publish(ngx_pubsub_pusher_api_ctx_t *ctx,
    ngx_uint_t transient)
{
    pubsub::Store             *store;
    pubsub::PublishInput       in;
    ngx_pubsub_pusher_wait_p   w;
    size_t                     n;

    store = ngx_pubsub_store_for(ctx->plcf);
    if (store == NULL) {
        return ngx_pubsub_pusher_api_error(ctx->r,
                   NGX_HTTP_SERVICE_UNAVAILABLE, "the store is not available");
    }

    if (ngx_pubsub_publish_params(ctx->r, ctx->plcf, &in) != NGX_OK) {
        return ngx_pubsub_pusher_api_error(ctx->r,
                   NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "invalid message buffer length or timeout");
    }

    if (transient) {
        in.maxMessages = 0;   /* delivered, never replayed */
    }

    for (const pp::ApiEvent &ev : ctx->events) {
        for (const std::string &c : ev.channels) {
            pp::ChannelCounts  cc;

            cc.name = c;
            cc.presence = pp::channelKind(c) == pp::ChannelKind::Presence;
            ctx->counts.push_back(std::move(cc));
        }
    }

    w = ngx_pubsub_pusher_wait(ctx->r, [ctx] {
        return ngx_pubsub_pusher_api_published(ctx);
    });

    n = 0;

    for (const pp::ApiEvent &ev : ctx->events) {
        /* contract 2: the event name, exactly the data, no content type;
           contract 3: socket_id, the connection the delivery skips */
        std::string  origin = pp::encodeOrigin(ev.socketId);

        in.eventName = ev.name;
        in.data = ev.data;
        in.contentType = std::string_view();
        in.origin = origin;

        for (const std::string &c : ev.channels) {
            size_t  i = n++;

            w->left++;

            /* the store copies the input before publish() returns */
            store->publish(ngx_pubsub_pusher_api_key(ctx, c), in,
                [ctx, w, i](pubsub::PublishReply &&reply) {
                    if (reply.status != pubsub::StoreResult::kOk) {
                        ngx_pubsub_pusher_api_failed(ctx, reply.status,
                                                     reply.reason);

                    } else {
                        ctx->counts[i].subscriptionCount =
                            reply.info.subscribers;
                    }

                    ngx_pubsub_pusher_wait_done(w);
                });
        }
    }

    return ngx_pubsub_pusher_wait_start(w);
}


static ngx_int_t
ngx_pubsub_pusher_api_events(ngx_pubsub_pusher_api_ctx_t *ctx)
{
    pp::ApiError  err;

    if (ctx->path.route == pp::ApiRoute::BatchEvents) {
        err = pp::parseBatch(ctx->body, ctx->events);

    } else {
        ctx->events.emplace_back();
        err = pp::parseEvent(ctx->body, ctx->events.back());
    }

    /* every event is checked before any is published */
    if (err) {
        return ngx_pubsub_pusher_api_error(ctx->r, err.status, err.message);
    }

    return ngx_pubsub_pusher_api_publish(ctx, 0);
}


/* contract 4: pusher_internal:terminate to #server-to-user-<uid> */
static ngx_int_t
ngx_pubsub_pusher_api_terminate(ngx_pubsub_pusher_api_ctx_t *ctx)
{
    pp::ApiEvent  ev;

    ev.name = "pusher_internal:terminate";
    ev.channels.push_back(pp::serverToUserChannel(ctx->path.user));

    if (pp::channelKind(ev.channels[0]) != pp::ChannelKind::ServerToUser) {
        return ngx_pubsub_pusher_api_error(ctx->r, NGX_HTTP_BAD_REQUEST,
                   "invalid user id (1 to 148 characters of "
                   "A-Z a-z 0-9 _ - = @ , . ;)");
    }

    ctx->events.push_back(std::move(ev));

    return ngx_pubsub_pusher_api_publish(ctx, 1);
}


/* GET channels */
static ngx_int_t
ngx_pubsub_pusher_api_channels(ngx_pubsub_pusher_api_ctx_t *ctx,
    std::string_view query)
{
    std::string               prefix, info;
    ngx_pubsub_pusher_wait_p  w;

    pp::queryArg(query, "filter_by_prefix", prefix);

    if (pp::queryArg(query, "info", info)) {
        ctx->info = pp::parseInfoFields(info);
    }

    if (ctx->info.userCount && prefix.compare(0, 9, "presence-") != 0) {
        return ngx_pubsub_pusher_api_error(ctx->r, NGX_HTTP_BAD_REQUEST,
                   "info=user_count needs filter_by_prefix=presence- "
                   "(only presence channels have users)");
    }

    w = ngx_pubsub_pusher_wait(ctx->r, [ctx] {
        std::vector<ngx_uint_t>  want;

        if (!ctx->fail.empty()) {
            return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                               ctx->fail);
        }

        if (ctx->occupied.truncated) {
            ngx_log_error(NGX_LOG_WARN, ctx->r->connection->log, 0,
                          "pubsub: pusher api: app \"%V\" has more than "
                          "%uz occupied channels, listed %uz",
                          &ctx->app->id, pp::kMaxListedChannels,
                          pp::kMaxListedChannels);
        }

        for (pubsub::OccupiedChannel &o : ctx->occupied.channels) {
            pp::ChannelCounts  cc;

            /* the server's own: #server-to-user-*, #subscription_count */
            if (pp::internalChannel(o.id)) {
                continue;
            }

            cc.presence = pp::channelKind(o.id) == pp::ChannelKind::Presence;
            cc.subscriptionCount = o.subscribers;
            cc.name = std::move(o.id);
            ctx->counts.push_back(std::move(cc));
            want.push_back(ctx->info.userCount);
        }

        return ngx_pubsub_pusher_api_user_counts(ctx, std::move(want), [ctx] {
            if (!ctx->fail.empty()) {
                return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                                   ctx->fail);
            }

            return ngx_pubsub_pusher_api_json(ctx->r,
                       pp::channelsAnswer(ctx->counts, ctx->info));
        });
    });

    w->left++;

    ctx->plcf->engine->occupied(ctx->plcf, ngx_pubsub_sv(ctx->app->group),
        prefix, pp::kMaxListedChannels,
        [ctx, w](pubsub::StoreResult res, pubsub::OccupiedList &&list) {
            if (ngx_pubsub_pusher_api_ok(ctx, res)) {
                ctx->occupied = std::move(list);
            }

            ngx_pubsub_pusher_wait_done(w);
        });

    return ngx_pubsub_pusher_wait_start(w);
}


/* GET channels/<name> */
static ngx_int_t
ngx_pubsub_pusher_api_channel(ngx_pubsub_pusher_api_ctx_t *ctx,
    std::string_view query)
{
    std::string               info;
    pp::ChannelCounts         cc;
    ngx_pubsub_pusher_wait_p  w;

    if (pp::queryArg(query, "info", info)) {
        ctx->info = pp::parseInfoFields(info);
    }

    cc.name = ctx->path.channel;
    cc.presence = pp::channelKind(cc.name) == pp::ChannelKind::Presence;

    if (ctx->info.userCount && !cc.presence) {
        return ngx_pubsub_pusher_api_error(ctx->r, NGX_HTTP_BAD_REQUEST,
                   "info=user_count is only available for presence "
                   "channels");
    }

    ctx->counts.push_back(std::move(cc));

    w = ngx_pubsub_pusher_wait(ctx->r, [ctx] {
        const pp::ChannelCounts  &c = ctx->counts[0];

        if (!ctx->fail.empty()) {
            return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                               ctx->fail);
        }

        return ngx_pubsub_pusher_api_json(ctx->r,
                   pp::channelAnswer(c.subscriptionCount > 0, c, ctx->info));
    });

    w->left++;

    ctx->plcf->engine->info(ctx->plcf,
        ngx_pubsub_pusher_api_key(ctx, ctx->counts[0].name),
        [ctx, w](pubsub::StoreResult res, const pubsub::ChannelInfo &ci) {
            /* an unknown channel has no subscribers */
            if (res != pubsub::StoreResult::kNotFound
                && ngx_pubsub_pusher_api_ok(ctx, res))
            {
                ctx->counts[0].subscriptionCount = ci.subscribers;
            }

            ngx_pubsub_pusher_wait_done(w);
        });

    if (ctx->counts[0].presence) {
        ngx_pubsub_pusher_api_user_count(ctx, w, 0);
    }

    return ngx_pubsub_pusher_wait_start(w);
}


/* GET channels/<name>/users: the presence registry, page after page */

static void ngx_pubsub_pusher_api_users_page(ngx_pubsub_pusher_api_ctx_t *ctx,
    const ngx_pubsub_pusher_wait_p &w, const std::string &cursor);


static void
ngx_pubsub_pusher_api_users_page(ngx_pubsub_pusher_api_ctx_t *ctx,
    const ngx_pubsub_pusher_wait_p &w, const std::string &cursor)
{
    ctx->plcf->engine->presence_page(ctx->plcf,
        ngx_pubsub_pusher_api_key(ctx, ctx->path.channel),
        pubsub::PresenceRegistry::kMaxPage, cursor,
        [ctx, w](pubsub::StoreResult res, pubsub::PresencePage &&page) {
            if (!ngx_pubsub_pusher_api_ok(ctx, res)) {
                ngx_pubsub_pusher_wait_done(w);
                return;
            }

            for (pubsub::PresenceMemberView &m : page.members) {
                ctx->users.push_back(std::move(m.id));
            }

            if (page.nextCursor.empty() || page.members.empty()
                || ctx->users.size() >= NGX_PUBSUB_PUSHER_API_MAX_USERS)
            {
                ngx_pubsub_pusher_wait_done(w);
                return;
            }

            /* the next page: w stays held until the last one */
            ngx_pubsub_pusher_api_users_page(ctx, w, page.nextCursor);
        });
}


static ngx_int_t
ngx_pubsub_pusher_api_users(ngx_pubsub_pusher_api_ctx_t *ctx)
{
    ngx_pubsub_pusher_wait_p  w;

    if (pp::channelKind(ctx->path.channel) != pp::ChannelKind::Presence) {
        return ngx_pubsub_pusher_api_error(ctx->r, NGX_HTTP_BAD_REQUEST,
                   "users are only available for presence channels");
    }

    w = ngx_pubsub_pusher_wait(ctx->r, [ctx] {
        if (!ctx->fail.empty()) {
            return ngx_pubsub_pusher_api_error(ctx->r, ctx->fail_status,
                                               ctx->fail);
        }

        return ngx_pubsub_pusher_api_json(ctx->r, pp::usersAnswer(ctx->users));
    });

    w->left++;
    ngx_pubsub_pusher_api_users_page(ctx, w, std::string());

    return ngx_pubsub_pusher_wait_start(w);
}


/* the request: signed, then routed */

static ngx_int_t
ngx_pubsub_pusher_api_body_text(ngx_http_request_t *r, std::string *out)
{
    ngx_chain_t  *cl;
    ngx_buf_t    *b;
    ssize_t       n;
    size_t        len;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            len = (size_t) (b->file_last - b->file_pos);
            size_t  at = out->size();

            out->resize(at + len);
            n = ngx_read_file(b->file, (u_char *) &(*out)[at], len,
                              b->file_pos);
            if (n != (ssize_t) len) {
                return NGX_ERROR;
            }

        } else {
            out->append((const char *) b->pos, b->last - b->pos);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pubsub_pusher_api_run(ngx_http_request_t *r,
    ngx_pubsub_pusher_api_ctx_t *ctx)
{
    std::string         reason, decoded;
    std::string_view    query;
    pp::ApiRequest      req;

    if (ngx_pubsub_pusher_api_body_text(r, &ctx->body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    query = ngx_pubsub_sv(r->args);

    req.method = ngx_pubsub_sv(r->method_name);
    req.path = ctx->path.signedPath;
    req.query = query;
    req.body = ctx->body;
    req.now = ngx_time();

    reason = pp::verifyApiRequest(req, ngx_pubsub_sv(ctx->app->key),
                                  ngx_pubsub_sv(ctx->app->secret));

    /* clients that URL-encode the query signed the decoded values */
    if (reason == "invalid signature"
        && query.find_first_of("%+") != std::string_view::npos)
    {
        decoded = pp::decodedQuery(query);
        req.query = decoded;
        reason = pp::verifyApiRequest(req, ngx_pubsub_sv(ctx->app->key),
                                      ngx_pubsub_sv(ctx->app->secret));
    }

    if (!reason.empty()) {
        return ngx_pubsub_pusher_api_error(r, NGX_HTTP_UNAUTHORIZED, reason);
    }

    switch (ctx->path.route) {
    case pp::ApiRoute::Events:
    case pp::ApiRoute::BatchEvents:
        return ngx_pubsub_pusher_api_events(ctx);
    case pp::ApiRoute::TerminateConnections:
        return ngx_pubsub_pusher_api_terminate(ctx);
    case pp::ApiRoute::Channels:
        return ngx_pubsub_pusher_api_channels(ctx, query);
    case pp::ApiRoute::Channel:
        if (pp::channelKind(ctx->path.channel) == pp::ChannelKind::Invalid) {
            return ngx_pubsub_pusher_api_error(r, NGX_HTTP_BAD_REQUEST,
                                               "invalid channel name");
        }
        return ngx_pubsub_pusher_api_channel(ctx, query);
    case pp::ApiRoute::ChannelUsers:
        return ngx_pubsub_pusher_api_users(ctx);
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_pubsub_pusher_api_ctx_t *
ngx_pubsub_pusher_api_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t           *cln;
    ngx_pubsub_pusher_api_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pubsub_pusher_api_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = new (cln->data) ngx_pubsub_pusher_api_ctx_t();
    cln->handler = [](void *data) {
        static_cast<ngx_pubsub_pusher_api_ctx_t *>(data)
            ->~ngx_pubsub_pusher_api_ctx_t();
    };

    ctx->r = r;
    ctx->fail_status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    return ctx;
}


static ngx_int_t
ngx_pubsub_pusher_api_start(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     id, path;
    u_char                       *q;
    std::string_view              method;
    ngx_pubsub_pusher_api_ctx_t  *ctx;

    ctx = ngx_pubsub_pusher_api_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->plcf = ngx_pubsub_get_loc_conf(r);

    /* the raw path: what the client signed */
    path = r->unparsed_uri;
    q = static_cast<u_char *>(ngx_strlchr(path.data, path.data + path.len,
                                          '?'));
    if (q) {
        path.len = q - path.data;
    }

    if (!pp::parseApiPath(ngx_pubsub_sv(path), ctx->path)) {
        ngx_http_discard_request_body(r);
        return ngx_pubsub_pusher_api_error(r, NGX_HTTP_NOT_FOUND,
                   "not a Pusher API path (…/apps/<app id>/…)");
    }

    id.data = (u_char *) ctx->path.appId.data();
    id.len = ctx->path.appId.size();

    ctx->app = ngx_pubsub_pusher_app_by_id(r, &id);
    if (ctx->app == NULL) {
        ngx_http_discard_request_body(r);
        return ngx_pubsub_pusher_api_error(r, NGX_HTTP_NOT_FOUND,
                                           "unknown app");
    }

    method = pp::routeMethod(ctx->path.route);

    if (method.empty()) {
        ngx_http_discard_request_body(r);
        return ngx_pubsub_pusher_api_error(r, NGX_HTTP_NOT_FOUND,
                                           "unknown API route");
    }

    if (ngx_pubsub_sv(r->method_name) != method) {
        ngx_http_discard_request_body(r);
        if (ngx_pubsub_set_header(r, "Allow", method) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_pubsub_pusher_api_error(r, NGX_HTTP_NOT_ALLOWED,
                   method == "GET" ? "this route answers GET"
                                   : "this route answers POST");
    }

    if (r->method == NGX_HTTP_POST) {
        ngx_http_set_ctx(r, ctx, ngx_pubsub_pusher_module);

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_pubsub_pusher_api_body);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_pubsub_pusher_api_run(r, ctx);
}


static void
ngx_pubsub_pusher_api_body(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_pubsub_pusher_api_ctx_t  *ctx;

    ctx = static_cast<ngx_pubsub_pusher_api_ctx_t *>(
              ngx_http_get_module_ctx(r, ngx_pubsub_pusher_module));

    rc = ngx_pubsub_guard(r->connection->log, [r, ctx] {
        return ngx_pubsub_pusher_api_run(r, ctx);
    });

    /* NGX_DONE: the store answers later (it took r->main->count++) */
    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_pubsub_pusher_api_handler(ngx_http_request_t *r)
{
    return ngx_pubsub_guard(r->connection->log, [r] {
        return ngx_pubsub_pusher_api_start(r);
    });
}


/* pubsub_pusher_api; */
char *
ngx_pubsub_pusher_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    (void) cmd;

    /* the merge marks the location's engine used (Redis connects) */
    static_cast<ngx_pubsub_pusher_loc_conf_t *>(conf)->api = 1;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_pusher_api_handler);
}


/* Redis: the apps' groups keep their occupied channels listed */
ngx_int_t
ngx_pubsub_pusher_api_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i, n;
    ngx_pubsub_redis_upstream_t  **ups;

    (void) cycle;

    ups = ngx_pubsub_redis_all(&n);

    for (i = 0; i < n; i++) {
        if (ups[i]->store == NULL) {
            continue;
        }

        try {
            ups[i]->store->indexGroups(NGX_PUBSUB_PUSHER_GROUP_PREFIX);

        } catch (...) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
