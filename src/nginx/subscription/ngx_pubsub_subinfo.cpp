/*
 * ngx_pubsub: pubsub_subscriber_info - a GET asks every subscriber of the
 * location's channel(s), on every worker and every instance, for the
 * string its location's pubsub_subscriber_info_string made when it
 * subscribed, and answers with those strings.
 *
 * How it travels (docs/architecture.md): the question goes out through the
 * engine (memory: the zone's ring every worker reads; Redis: an "I" on the
 * channel's pubsub channel) to the Hub, whose subscribers' subscription
 * objects publish their string on a reply channel; its key has no group,
 * so no client can subscribe to it.  This request counts the channels'
 * subscribers first, then reads the reply channel every
 * NGX_PUBSUB_SUBINFO_POLL ms until that many reports are there or
 * NGX_PUBSUB_SUBINFO_WAIT ms have passed, answers, and deletes the reply
 * channel.
 */

#include "ngx_pubsub.h"
#include "ngx_pubsub_conf.h"
#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_subscription.h"

#include <string>
#include <vector>

#include "pubsub/codec/json.h"


#define NGX_PUBSUB_SUBINFO_POLL      50
#define NGX_PUBSUB_SUBINFO_WAIT      2000


/* the store subscriber a poll reads the reply channel with */
class ngx_pubsub_subinfo_reader_t final : public pubsub::Subscriber {
public:
    void deliver(const pubsub::MessagePtr &msg) override {}
    void gap() override {}
    void channelDeleted() override {}
};


struct ngx_pubsub_subinfo_t;

/* the poll timer: its data is the connection (nginx's debug log reads it) */
struct ngx_pubsub_subinfo_timer_t {
    ngx_event_t                    ev;
    ngx_pubsub_subinfo_t          *si;
};


struct ngx_pubsub_subinfo_t {
    ngx_http_request_t            *r;
    ngx_pubsub_loc_conf_t         *plcf;
    std::vector<std::string>       keys;
    std::string                    reply;
    ngx_uint_t                     left = 0;      /* info answers awaited */
    uint64_t                       expected = 0;
    ngx_uint_t                     failed = 0;
    ngx_msec_t                     deadline = 0;
    std::vector<std::string>       reports;
    ngx_pubsub_subinfo_reader_t    reader;
    ngx_pubsub_subinfo_timer_t     timer;
    ngx_uint_t                     finished = 0;

    ~ngx_pubsub_subinfo_t() {
        if (timer.ev.timer_set) {
            ngx_del_timer(&timer.ev);
        }
    }
};


char *
ngx_pubsub_subscriber_info(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pubsub_loc_conf_t  *plcf = static_cast<ngx_pubsub_loc_conf_t *>(conf);
    char                   *rv;

    if (plcf->subscriber_info != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }

    rv = ngx_pubsub_conf_other_kind(plcf, NGX_PUBSUB_LOC_SUBINFO);
    if (rv != NULL) {
        return rv;
    }

    plcf->subscriber_info = 1;

    return ngx_pubsub_conf_content_handler(cf, ngx_pubsub_handler);
}


static ngx_int_t
ngx_pubsub_subinfo_body(ngx_pubsub_subinfo_t *si)
{
    std::string  body;

    if (ngx_pubsub_info_format(si->r) == pubsub::InfoFormat::kJson) {
        body = "[";
        for (size_t i = 0; i < si->reports.size(); i++) {
            if (i) {
                body += ", ";
            }
            if (!pubsub::appendJsonString(body, si->reports[i])) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
        body += "]\n";

        return ngx_pubsub_respond_text(si->r, NGX_HTTP_OK, "application/json",
                                       body);
    }

    for (const std::string &s : si->reports) {
        body += s;
        body += '\n';
    }

    return ngx_pubsub_respond_text(si->r, NGX_HTTP_OK, "text/plain", body);
}


/* answers and finalizes (the request was kept with count++) */
static void
ngx_pubsub_subinfo_finish(ngx_pubsub_subinfo_t *si)
{
    ngx_http_request_t  *r = si->r;
    ngx_connection_t    *c = r->connection;
    pubsub::Store       *store;
    ngx_int_t            rc;

    si->finished = 1;

    if (si->timer.ev.timer_set) {
        ngx_del_timer(&si->timer.ev);
    }

    rc = ngx_pubsub_guard(c->log, [si] {
        if (si->failed && si->expected == 0) {
            return ngx_pubsub_respond_text(si->r,
                       NGX_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                       "Subscriber info is unavailable.\n");
        }
        return ngx_pubsub_subinfo_body(si);
    });

    /* the reports are read: the reply channel goes */
    store = ngx_pubsub_store_for(si->plcf);
    if (store != NULL && si->expected != 0) {
        (void) ngx_pubsub_guard(c->log, [store, si] {
            store->remove(si->reply, [](pubsub::StoreResult,
                                        const pubsub::ChannelInfo &) {});
            return NGX_OK;
        });
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* reads what the reply channel holds so far */
static void
ngx_pubsub_subinfo_read(ngx_pubsub_subinfo_t *si)
{
    pubsub::Store            *store;
    pubsub::SubscribeRequest  req;

    store = ngx_pubsub_store_for(si->plcf);
    if (store == NULL) {
        return;
    }

    req.key = si->reply;
    req.start.kind = pubsub::StartSpec::kOldest;
    req.existingOnly = true;    /* nothing yet: nothing made */
    req.oneShot = true;

    store->subscribe(&si->reader, req, [si](pubsub::SubscribeReply &&rep) {
        if (rep.status != pubsub::StoreResult::kOk) {
            return;
        }

        si->reports.clear();
        for (const pubsub::MessagePtr &m : rep.backlog) {
            si->reports.emplace_back(m->data());
        }
    });

    if (si->reader.attached()) {
        store->unsubscribe(&si->reader);
    }
}


static void ngx_pubsub_subinfo_poll(ngx_pubsub_subinfo_t *si);


static void
ngx_pubsub_subinfo_timer(ngx_event_t *ev)
{
    ngx_pubsub_subinfo_t  *si;

    si = reinterpret_cast<ngx_pubsub_subinfo_timer_t *>(ev)->si;

    ngx_pubsub_subinfo_poll(si);
}


static void
ngx_pubsub_subinfo_poll(ngx_pubsub_subinfo_t *si)
{
    ngx_int_t  rc;

    rc = si->plcf->engine->prepare_keys(si->plcf, { si->reply }, [si] {
        (void) ngx_pubsub_guard(si->r->connection->log, [si] {
            ngx_pubsub_subinfo_read(si);
            return NGX_OK;
        });

        if (si->reports.size() >= si->expected
            || (ngx_msec_int_t) (ngx_current_msec - si->deadline) >= 0)
        {
            ngx_pubsub_subinfo_finish(si);
            return;
        }

        ngx_add_timer(&si->timer.ev, NGX_PUBSUB_SUBINFO_POLL);
    });

    (void) rc;
}


/* every channel's subscribers are counted: ask them */
static void
ngx_pubsub_subinfo_ask(ngx_pubsub_subinfo_t *si)
{
    ngx_uint_t  sent = 0;

    if (si->expected == 0) {
        ngx_pubsub_subinfo_finish(si);
        return;
    }

    for (const std::string &key : si->keys) {
        if (si->plcf->engine->ask_info(si->plcf, key, si->reply) == NGX_OK) {
            sent++;
        }
    }

    if (sent == 0) {
        si->failed = 1;
        si->expected = 0;
        ngx_pubsub_subinfo_finish(si);
        return;
    }

    si->deadline = ngx_current_msec + NGX_PUBSUB_SUBINFO_WAIT;
    ngx_add_timer(&si->timer.ev, NGX_PUBSUB_SUBINFO_POLL);
}


ngx_int_t
ngx_pubsub_subinfo_handler(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf)
{
    static uint64_t          seq;
    ngx_int_t                rc;
    ngx_pubsub_channels_t   *ch;
    ngx_pool_cleanup_t      *cln;
    ngx_pubsub_subinfo_t    *si;
    u_char                   rnd[32], *p;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_http_discard_request_body(r);
        if (ngx_pubsub_set_header(r, "Allow", "GET, OPTIONS") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_pubsub_respond_text(r, NGX_HTTP_NOT_ALLOWED, "text/plain",
                                       "Method not allowed.\n");
    }

    ngx_http_discard_request_body(r);

    ch = ngx_pubsub_channels(r, plcf, 0, &rc);
    if (ch == NULL) {
        return rc;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pubsub_subinfo_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    si = new (cln->data) ngx_pubsub_subinfo_t();
    cln->handler = [](void *data) {
        static_cast<ngx_pubsub_subinfo_t *>(data)->~ngx_pubsub_subinfo_t();
    };

    si->r = r;
    si->plcf = plcf;
    ngx_memzero(&si->timer.ev, sizeof(ngx_event_t));
    si->timer.ev.handler = ngx_pubsub_subinfo_timer;
    si->timer.ev.data = r->connection;
    si->timer.ev.log = r->connection->log;
    si->timer.si = si;

    for (ngx_uint_t i = 0; i < ch->n; i++) {
        si->keys.emplace_back(ngx_pubsub_sv(ch->key[i]));
    }

    /* no '/' (no group: no client names it), unguessable */
    p = ngx_sprintf(rnd, "%08xD%08xD", (uint32_t) ngx_random(),
                    (uint32_t) ngx_random());
    si->reply = "subinfo:" + std::to_string(ngx_pid) + ":"
                + std::to_string(++seq) + ":"
                + std::string(reinterpret_cast<char *>(rnd), p - rnd);

    si->left = si->keys.size() + 1;
    r->main->count++;

    for (const std::string &key : si->keys) {
        plcf->engine->info(plcf, key,
            [si](pubsub::StoreResult res, const pubsub::ChannelInfo &info) {
                if (res == pubsub::StoreResult::kOk) {
                    si->expected += info.subscribers;
                } else if (res != pubsub::StoreResult::kNotFound) {
                    si->failed = 1;
                }

                if (--si->left == 0) {
                    ngx_pubsub_subinfo_ask(si);
                }
            });
    }

    if (--si->left == 0) {
        ngx_pubsub_subinfo_ask(si);
    }

    return NGX_DONE;
}
