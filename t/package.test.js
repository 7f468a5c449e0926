'use strict';
// The Debian package (debian/, scripts/package.sh; issue 18): it builds with
// dpkg-buildpackage, is laid out as Debian's libnginx-mod-* packages are,
// depends on the nginx ABI that nginx-dev names, and once installed (into a
// scratch root: dpkg -x, plus the link its postinst makes) Debian's nginx
// passes `nginx -t` on its default config with the module enabled, and
// serves a message through the installed module.
//
// scripts/package.sh reuses a package built from the same sources, so this
// costs a full build only when they changed (scripts/test.sh builds it
// before the integration tests). PUBSUB_DEB=path tests a given .deb instead.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { test, before, after } = require('node:test');
const { withNginx, NGINX_BIN, REPO } = require('./lib/nginx');

const PKG = 'libnginx-mod-pubsub';
const ABI_FILE = '/usr/share/nginx/src/debian/libnginx-mod.abisubstvars';
let deb;
let root; // the scratch root the package is installed into
let scratch;

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...opts });

before(() => {
    if (process.env.PUBSUB_DEB) {
        deb = process.env.PUBSUB_DEB; // a package built elsewhere
    } else {
        const r = spawnSync('bash', [path.join(REPO, 'scripts/package.sh')],
            { encoding: 'utf8', timeout: 30 * 60 * 1000, env: { JOBS: '2', ...process.env } });
        assert.equal(r.status, 0, `scripts/package.sh failed:\n${r.stdout}\n${r.stderr}`);
        deb = /package: (\S+\.deb)/.exec(r.stdout)[1];
    }
    assert.ok(fs.existsSync(deb), deb);

    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pubsub-package-'));
    fs.chmodSync(scratch, 0o755);
    root = path.join(scratch, 'root');
    run('dpkg', ['-x', deb, root]);
});

after(() => {
    if (scratch) {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
});

test('the package is laid out as Debian ships nginx modules', () => {
    const field = (f) => run('dpkg-deb', ['-f', deb, f]).trim();
    assert.equal(field('Package'), PKG);
    assert.equal(field('Section'), 'httpd');

    // Depends on the exact nginx ABI that nginx-dev names, and Debian's
    // nginx provides it
    const abi = /^nginx:abi=(\S+)$/m.exec(fs.readFileSync(ABI_FILE, 'utf8'))[1];
    assert.match(abi, /^nginx-abi-/);
    const depends = field('Depends').split(/,\s*/);
    assert.ok(depends.includes(abi), `Depends: ${depends.join(', ')} (want ${abi})`);
    assert.ok(run('dpkg-query', ['-W', '-f=${Provides}', 'nginx']).split(/,\s*/).includes(abi));
    // the libraries the module links, found by dh_shlibdeps
    for (const lib of [/^libhiredis/, /^libssl3/, /^libstdc\+\+6/, /^libc6/]) {
        assert.ok(depends.some((d) => lib.test(d)), `Depends: ${depends.join(', ')} has ${lib}`);
    }

    const files = run('dpkg-deb', ['-c', deb]).split('\n')
        .map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\./, '')).filter(Boolean);
    for (const f of [
        '/usr/lib/nginx/modules/ngx_pubsub_module.so',
        '/usr/share/nginx/modules-available/mod-pubsub.conf',
        `/usr/share/doc/${PKG}/copyright`,
        `/usr/share/doc/${PKG}/changelog.gz`,
        `/usr/share/doc/${PKG}/README.md`,
        `/usr/share/doc/${PKG}/docs/hooks.md`,
        `/usr/share/doc/${PKG}/docs/production.md`,
        `/usr/share/doc/${PKG}/examples/nginx.conf`,
        `/usr/share/doc/${PKG}/examples/app/server.js`,
        `/usr/share/doc/${PKG}/examples/app/public/chat.html`,
    ]) {
        assert.ok(files.includes(f), `${f} in the package:\n${files.join('\n')}`);
    }
    // nothing outside the places a module package uses
    for (const f of files.filter((x) => !x.endsWith('/'))) {
        assert.match(f, /^\/usr\/(lib\/nginx\/modules|share\/nginx\/modules-available|share\/doc)\//);
    }
    assert.equal(fs.readFileSync(path.join(root, 'usr/share/nginx/modules-available/mod-pubsub.conf'),
        'utf8'), 'load_module modules/ngx_pubsub_module.so;\n');

    // the maintainer scripts enable it in /etc/nginx/modules-enabled/ on
    // installation and disable it on removal, as Debian's module packages do
    const ctl = path.join(scratch, 'control');
    run('dpkg-deb', ['-e', deb, ctl]);
    const postinst = fs.readFileSync(path.join(ctl, 'postinst'), 'utf8');
    assert.match(postinst, /mod-pubsub\.conf:50-mod-pubsub\.conf/);
    assert.match(postinst, /ln -sf \/usr\/share\/nginx\/modules-available\/\$from/);
    assert.match(postinst, /\/etc\/nginx\/modules-enabled\/\$to/);
    for (const s of ['prerm', 'postrm']) {
        assert.match(fs.readFileSync(path.join(ctl, s), 'utf8'), /mod-pubsub\.conf:50-mod-pubsub\.conf/);
    }
});

test('nginx -t passes on the default config with the installed module enabled', () => {
    // /etc/nginx as Debian's nginx installs it, in the scratch root, with
    // the module enabled as the postinst does (and no other module)
    const etc = path.join(root, 'etc/nginx');
    fs.mkdirSync(path.dirname(etc), { recursive: true });
    run('cp', ['-a', '/etc/nginx', etc]);
    const enabled = path.join(etc, 'modules-enabled');
    fs.rmSync(enabled, { recursive: true, force: true });
    fs.mkdirSync(enabled);
    fs.symlinkSync(path.join(root, 'usr/share/nginx/modules-available/mod-pubsub.conf'),
        path.join(enabled, '50-mod-pubsub.conf'));
    // nginx-common's /usr/share/nginx/modules -> ../../lib/nginx/modules
    fs.symlinkSync('../../lib/nginx/modules', path.join(root, 'usr/share/nginx/modules'));

    const logs = path.join(scratch, 'log');
    fs.mkdirSync(logs);
    const conf = path.join(etc, 'nginx.conf');
    const text = fs.readFileSync(conf, 'utf8');
    assert.match(text, /include \/etc\/nginx\/modules-enabled\/\*\.conf;/);
    fs.writeFileSync(conf, text
        .replaceAll('/etc/nginx/', `${etc}/`)
        .replaceAll('/run/nginx.pid', path.join(scratch, 'nginx.pid'))
        .replaceAll('/var/log/nginx/', `${logs}/`));

    const r = spawnSync(NGINX_BIN, ['-t', '-p', `${path.join(root, 'usr/share/nginx')}/`, '-c', conf],
        { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /test is successful/);
    // the module is really loaded: a pubsub directive is known
    const site = path.join(etc, 'conf.d/pubsub-check.conf');
    fs.writeFileSync(site, 'server { listen 127.0.0.1:9; location /s { pubsub_subscriber; ' +
        'pubsub_channel_id x; } }\n');
    const r2 = spawnSync(NGINX_BIN, ['-t', '-p', `${path.join(root, 'usr/share/nginx')}/`, '-c', conf],
        { encoding: 'utf8' });
    assert.equal(r2.status, 0, r2.stderr);
    fs.rmSync(site);
});

test('the installed module publishes and delivers a message', () => withNginx({
    modulePath: path.join(root, 'usr/lib/nginx/modules/ngx_pubsub_module.so'),
    conf: `server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/pub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/sub/(\\w+)$ { pubsub_subscriber; pubsub_channel_id $1; }
    }`,
}, async (ngx) => {
    const pub = await fetch(ngx.url('/pub/installed'), { method: 'POST', body: 'from the package' });
    assert.equal(pub.status, 202); // stored, nobody listening yet
    // a long-poll without a resume id starts at the oldest message
    const sub = await fetch(ngx.url('/sub/installed'));
    assert.equal(sub.status, 200);
    assert.equal(await sub.text(), 'from the package');
}));
