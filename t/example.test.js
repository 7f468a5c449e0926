'use strict';
// The README's example configuration stays valid: examples/nginx.conf
// passes `nginx -t` with the built module, laid out as scripts/example.sh
// lays it out (prefix with modules/, html and chat).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { test } = require('node:test');

const root = path.resolve(__dirname, '..');
const nginx = process.env.NGINX_BIN || '/usr/sbin/nginx';
const module_ = process.env.PUBSUB_MODULE || path.join(root, 'build/nginx/ngx_pubsub_module.so');

test('examples/nginx.conf passes nginx -t with the built module', () => {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'pubsub-example-'));
    try {
        for (const d of ['logs', 'modules', 'temp']) {
            fs.mkdirSync(path.join(prefix, d));
        }
        fs.symlinkSync(module_, path.join(prefix, 'modules/ngx_pubsub_module.so'));
        fs.symlinkSync(path.join(root, 'examples/html'), path.join(prefix, 'html'));
        fs.symlinkSync(path.join(root, 'examples/chat'), path.join(prefix, 'chat'));
        const r = spawnSync(nginx, ['-t', '-p', prefix, '-c', path.join(root, 'examples/nginx.conf'),
            '-g', 'user root;'], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /test is successful/);
    } finally {
        fs.rmSync(prefix, { recursive: true, force: true });
    }
});
