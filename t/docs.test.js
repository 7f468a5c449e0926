'use strict';
// The directive reference cannot drift from the module: every directive the
// module registers (ngx_command_t tables in src/nginx) is documented in
// docs/directives.md, and every directive documented there exists.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const root = path.resolve(__dirname, '..');

function registered() {
    const names = new Set();
    const dir = path.join(root, 'src', 'nginx');
    for (const f of fs.readdirSync(dir)) {
        if (!/\.(c|cpp)$/.test(f)) {
            continue;
        }
        const text = fs.readFileSync(path.join(dir, f), 'utf8');
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
