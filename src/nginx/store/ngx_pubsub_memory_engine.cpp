/*
 * ngx_pubsub: the memory engine's table (ngx_pubsub_engine.h).  Its store
 * is the worker's pubsub::MemoryStore on the shared-memory zone
 * (ngx_pubsub_shm.cpp), which answers everything before returning: prepare
 * has nothing to do, and presence is the zone's registry
 * (ngx_pubsub_presence.cpp), which is the whole truth here.
 */

#include "ngx_pubsub_engine.h"
#include "ngx_pubsub_presence.h"


static pubsub::Store *
ngx_pubsub_memory_store(ngx_pubsub_loc_conf_t *plcf)
{
    return ngx_pubsub_store();
}


static ngx_int_t
ngx_pubsub_memory_prepare(ngx_http_request_t *r, ngx_pubsub_loc_conf_t *plcf,
    ngx_pubsub_prepared_pt handler)
{
    return handler(r);
}


static ngx_int_t
ngx_pubsub_memory_prepare_keys(ngx_pubsub_loc_conf_t *plcf,
    const std::vector<std::string> &keys, std::function<void()> done)
{
    done();

    return NGX_OK;
}


static void
ngx_pubsub_memory_info(ngx_pubsub_loc_conf_t *plcf, std::string_view key,
    pubsub::Store::InfoCallback cb)
{
    pubsub::Store  *store = ngx_pubsub_store();

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, pubsub::ChannelInfo());
        return;
    }

    /* the store answers before returning: `key` and `cb` are still here */
    store->info(key, [key, &cb](pubsub::StoreResult res,
                                const pubsub::ChannelInfo &info)
    {
        pubsub::ChannelInfo  copy = info;

        /* the store leaves presence to the registry */
        if (res == pubsub::StoreResult::kOk && !copy.presence) {
            copy.presence = ngx_pubsub_presence_members(key);
        }

        cb(res, copy);
    });
}


static ngx_uint_t
ngx_pubsub_memory_presence_tag(ngx_pubsub_loc_conf_t *plcf)
{
    return 0;
}


static void
ngx_pubsub_memory_presence_stats(ngx_pubsub_loc_conf_t *plcf,
    std::string_view key, ngx_pubsub_presence_stats_cb cb)
{
    cb(pubsub::StoreResult::kOk, ngx_pubsub_presence_local_stats(key));
}


static void
ngx_pubsub_memory_presence_page(ngx_pubsub_loc_conf_t *plcf,
    std::string_view key, size_t limit, const std::string &cursor,
    ngx_pubsub_presence_page_cb cb)
{
    pubsub::PresencePage  page;

    page = ngx_pubsub_presence_local_page(key, limit, cursor);

    switch (page.status) {
    case pubsub::PresenceStatus::kOk:
        cb(pubsub::StoreResult::kOk, std::move(page));
        break;
    case pubsub::PresenceStatus::kBadCursor:
        cb(pubsub::StoreResult::kNotFound, std::move(page));
        break;
    default:
        cb(pubsub::StoreResult::kNoMemory, std::move(page));
        break;
    }
}


static void
ngx_pubsub_memory_presence_user(ngx_pubsub_loc_conf_t *plcf,
    const std::string &id, ngx_pubsub_presence_user_cb cb)
{
    pubsub::PresenceUserState  st;

    st = ngx_pubsub_presence_local_user(id);

    cb(st.status == pubsub::PresenceStatus::kOk
       ? pubsub::StoreResult::kOk : pubsub::StoreResult::kNoMemory,
       std::move(st));
}


static void
ngx_pubsub_memory_occupied(ngx_pubsub_loc_conf_t *plcf,
    std::string_view group, std::string_view prefix, size_t max,
    ngx_pubsub_occupied_cb cb)
{
    pubsub::OccupiedList   list;
    pubsub::MemoryStore   *store;

    /* the memory engine's store is always a MemoryStore */
    store = static_cast<pubsub::MemoryStore *>(ngx_pubsub_store());

    if (store == NULL) {
        cb(pubsub::StoreResult::kUnavailable, std::move(list));
        return;
    }

    if (!store->occupied(group, prefix, max, &list)) {
        cb(pubsub::StoreResult::kNoMemory, pubsub::OccupiedList());
        return;
    }

    cb(pubsub::StoreResult::kOk, std::move(list));
}


const ngx_pubsub_engine_t  ngx_pubsub_memory_engine = {
    "memory",
    NULL,                               /* check_conf */
    NULL,                               /* merge_loc_conf */
    NULL,                               /* use */
    ngx_pubsub_shm_init_process,
    ngx_pubsub_shm_exit_process,
    ngx_pubsub_memory_store,
    ngx_pubsub_memory_prepare,
    ngx_pubsub_memory_prepare_keys,
    ngx_pubsub_memory_info,
    ngx_pubsub_presence_ask_info,
    ngx_pubsub_memory_presence_tag,
    ngx_pubsub_memory_presence_stats,
    ngx_pubsub_memory_presence_page,
    ngx_pubsub_memory_presence_user,
    NULL,                               /* presence_deltas */
    NULL,                               /* presence_interval */
    NULL,                               /* presence_refresh */
    ngx_pubsub_memory_occupied,
};
