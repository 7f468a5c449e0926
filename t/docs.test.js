'use strict';
// The directive reference cannot drift from the module: every directive the
// module registers (ngx_command_t tables in src/nginx) is documented in
// docs/directives.md, and every directive documented there exists; the nchan
// migration guide maps every nchan directive to ones that exist (or are coming).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const root = path.resolve(__dirname, '..');

// the text of every glue source (src/nginx and src/redis, any folder)
function glueSources() {
    const out = [];
    const walk = (dir) => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
            const p = path.join(dir, e.name);
            if (e.isDirectory()) {
                walk(p);
            } else if (/\.(c|cpp)$/.test(e.name)) {
                out.push(fs.readFileSync(p, 'utf8'));
            }
        }
    };
    walk(path.join(root, 'src', 'nginx'));
    walk(path.join(root, 'src', 'redis'));
    return out;
}

function registered() {
    const names = new Set();
    for (const text of glueSources()) {
        // directive names are the ngx_string() first members of ngx_command_t
        for (const m of text.matchAll(/\{\s*ngx_string\("(pubsub_[a-z0-9_]+)"\)/g)) {
            names.add(m[1]);
        }
    }
    return names;
}

function documented() {
    const text = fs.readFileSync(path.join(root, 'docs', 'directives.md'), 'utf8');
    const names = new Set();
    // table rows start with | `pubsub_name ...`; a row may list several
    for (const line of text.split('\n')) {
        if (!line.startsWith('|')) {
            continue;
        }
        const first = line.split('|')[1] || '';
        for (const m of first.matchAll(/`(pubsub_[a-z0-9_]+)/g)) {
            names.add(m[1]);
        }
    }
    return names;
}

test('every registered directive is documented in docs/directives.md', () => {
    const docs = documented();
    const missing = [...registered()].filter((n) => !docs.has(n)).sort();
    assert.deepEqual(missing, [], `undocumented: ${missing.join(', ')}`);
});

test('every documented directive exists in the module', () => {
    const reg = registered();
    const extra = [...documented()].filter((n) => !reg.has(n)).sort();
    assert.deepEqual(extra, [], `documented but not registered: ${extra.join(', ')}`);
});

// ---------------------------------------------------------------------------
// docs/migration-from-nchan.md: every directive nchan registers is mapped,
// and every pubsub_* name in it exists or is marked "(coming)" on its line.

// The distinct names of nchan 1.3.7's command table (src/nchan_config_commands.c:
// 153 entries, two names registered twice).
const NCHAN_DIRECTIVES = `
    nchan_access_control_allow_credentials nchan_access_control_allow_origin
    nchan_authorize_request nchan_benchmark nchan_benchmark_channels
    nchan_benchmark_message_padding_bytes
    nchan_benchmark_messages_per_channel_per_minute
    nchan_benchmark_publisher_distribution
    nchan_benchmark_subscriber_distribution
    nchan_benchmark_subscribers_per_channel nchan_benchmark_time
    nchan_channel_event_string nchan_channel_events_channel_id
    nchan_channel_group nchan_channel_group_accounting nchan_channel_id
    nchan_channel_id_split_delimiter nchan_channel_timeout
    nchan_deflate_message_for_websocket nchan_eventsource_event
    nchan_eventsource_ping_comment nchan_eventsource_ping_data
    nchan_eventsource_ping_event nchan_eventsource_ping_interval
    nchan_group_location nchan_group_max_channels nchan_group_max_messages
    nchan_group_max_messages_disk nchan_group_max_messages_memory
    nchan_group_max_subscribers nchan_longpoll_multipart_response
    nchan_max_channel_id_length nchan_max_channel_subscribers
    nchan_max_reserved_memory nchan_message_buffer_length
    nchan_message_max_buffer_length nchan_message_temp_path
    nchan_message_timeout nchan_permessage_deflate_compression_level
    nchan_permessage_deflate_compression_memlevel
    nchan_permessage_deflate_compression_strategy
    nchan_permessage_deflate_compression_window nchan_pub_channel_id
    nchan_publisher nchan_publisher_channel_id nchan_publisher_location
    nchan_publisher_upstream_request nchan_pubsub nchan_pubsub_channel_id
    nchan_pubsub_location nchan_redis_accurate_subscriber_count
    nchan_redis_cluster_check_interval
    nchan_redis_cluster_check_interval_backoff
    nchan_redis_cluster_check_interval_jitter
    nchan_redis_cluster_check_interval_max
    nchan_redis_cluster_check_interval_min nchan_redis_cluster_connect_timeout
    nchan_redis_cluster_max_failing_time nchan_redis_cluster_recovery_delay
    nchan_redis_cluster_recovery_delay_backoff
    nchan_redis_cluster_recovery_delay_jitter
    nchan_redis_cluster_recovery_delay_max
    nchan_redis_cluster_recovery_delay_min nchan_redis_command_timeout
    nchan_redis_connect_timeout nchan_redis_discovered_ip_range_blacklist
    nchan_redis_fakesub_timer_interval nchan_redis_idle_channel_cache_timeout
    nchan_redis_idle_channel_keepalive_backoff
    nchan_redis_idle_channel_keepalive_jitter
    nchan_redis_idle_channel_keepalive_max
    nchan_redis_idle_channel_keepalive_min
    nchan_redis_idle_channel_keepalive_safety_margin
    nchan_redis_load_scripts_unconditionally nchan_redis_namespace
    nchan_redis_node_connect_timeout nchan_redis_nostore_fastpublish
    nchan_redis_optimize_target nchan_redis_pass nchan_redis_pass_inheritable
    nchan_redis_password nchan_redis_ping_interval
    nchan_redis_publish_msgpacked_max_size nchan_redis_reconnect_delay
    nchan_redis_reconnect_delay_backoff nchan_redis_reconnect_delay_jitter
    nchan_redis_reconnect_delay_max nchan_redis_reconnect_delay_min
    nchan_redis_retry_commands nchan_redis_retry_commands_max_wait
    nchan_redis_server nchan_redis_ssl nchan_redis_ssl_ciphers
    nchan_redis_ssl_client_certificate nchan_redis_ssl_client_certificate_key
    nchan_redis_ssl_server_name nchan_redis_ssl_trusted_certificate
    nchan_redis_ssl_trusted_certificate_path
    nchan_redis_ssl_verify_certificate nchan_redis_storage_mode
    nchan_redis_subscribe_weights nchan_redis_tls nchan_redis_tls_ciphers
    nchan_redis_tls_client_certificate nchan_redis_tls_server_name
    nchan_redis_tls_trusted_certificate
    nchan_redis_tls_trusted_certificate_path
    nchan_redis_tls_verify_certificate nchan_redis_upstream_stats
    nchan_redis_upstream_stats_disconnected_timeout
    nchan_redis_upstream_stats_enabled nchan_redis_url nchan_redis_username
    nchan_redis_wait_after_connecting nchan_shared_memory_size
    nchan_storage_engine nchan_store_messages nchan_stub_status
    nchan_sub_channel_id nchan_subscribe_existing_channels_only
    nchan_subscribe_request nchan_subscriber nchan_subscriber_channel_id
    nchan_subscriber_compound_etag_message_id nchan_subscriber_first_message
    nchan_subscriber_http_raw_stream_separator nchan_subscriber_info
    nchan_subscriber_info_string nchan_subscriber_last_message_id
    nchan_subscriber_location nchan_subscriber_message_id_custom_etag_header
    nchan_subscriber_timeout nchan_unsubscribe_request nchan_use_redis
    nchan_websocket_client_heartbeat nchan_websocket_ping_interval
    push_authorized_channels_only push_channel_group push_channel_timeout
    push_max_channel_id_length push_max_channel_subscribers
    push_max_message_buffer_length push_max_reserved_memory
    push_message_buffer_length push_message_timeout
    push_min_message_buffer_length push_publisher push_store_messages
    push_subscriber push_subscriber_concurrency push_subscriber_timeout
`.trim().split(/\s+/);

function migrationGuide() {
    return fs.readFileSync(path.join(root, 'docs', 'migration-from-nchan.md'), 'utf8');
}

// the variables the module defines: the names in the hooks variable table,
// plus $pubsub_channel_id_N, plus the channel events' variable
function registeredVariables() {
    const names = new Set();
    for (const text of glueSources()) {
        for (const m of text.matchAll(/\{\s*"(pubsub_[a-z0-9_]+)",\s*NGX_PUBSUB_VAR_/g)) {
            names.add(m[1]);
        }
        for (const m of text.matchAll(/name = ngx_string\("(pubsub_[a-z0-9_]+)"\)/g)) {
            names.add(m[1]);
        }
    }
    return names;
}

test('the migration guide names every nchan directive', () => {
    assert.equal(NCHAN_DIRECTIVES.length, 151);
    const text = migrationGuide();
    const missing = NCHAN_DIRECTIVES.filter((n) => !text.includes('`' + n + '`'));
    assert.deepEqual(missing, [], `not in docs/migration-from-nchan.md: ${missing.join(', ')}`);
});

test('every pubsub_* directive in the migration guide exists or is marked (coming)', () => {
    const reg = registered();
    const bad = [];
    const lines = migrationGuide().split('\n');
    lines.forEach((line, i) => {
        // directive names: not variables ($pubsub_...), not ngx_pubsub_...;
        // one that does not exist must be followed by "` (coming)", i.e. the
        // mark right after the code span that names it
        for (const m of line.matchAll(/(^|[^$\w])(pubsub_[a-z0-9_]+)/g)) {
            const name = m[2];
            const rest = line.slice(m.index + m[0].length);
            if (!reg.has(name) && !/^[^`]*` \(coming\)/.test(rest)) {
                bad.push(`line ${i + 1}: ${name}`);
            }
        }
    });
    assert.deepEqual(bad, [], `neither registered nor marked (coming): ${bad.join('; ')}`);
});

test('directives the migration guide marks (coming) are not registered yet', () => {
    // when one lands, drop its "(coming)" from docs/migration-from-nchan.md
    const reg = registered();
    const stale = new Set();
    for (const m of migrationGuide().matchAll(/`(pubsub_[a-z0-9_]+)[^`]*` \(coming\)/g)) {
        if (reg.has(m[1])) {
            stale.add(m[1]);
        }
    }
    assert.deepEqual([...stale], [], `registered now, still marked (coming): ${[...stale].join(', ')}`);
});

test('every $pubsub_ variable in the migration guide exists', () => {
    const vars = registeredVariables();
    assert.ok(vars.has('pubsub_channel_id'), 'variable table not found');
    const bad = new Set();
    for (const m of migrationGuide().matchAll(/\$(pubsub_[a-z0-9_]+)/g)) {
        const name = m[1];
        if (!vars.has(name) && !/^pubsub_channel_id_[0-9]+$/.test(name)) {
            bad.add(name);
        }
    }
    assert.deepEqual([...bad], [], `unknown variables: ${[...bad].join(', ')}`);
});
