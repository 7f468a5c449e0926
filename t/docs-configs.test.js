'use strict';
// The configurations the documentation offers for copying pass `nginx -t`.
//
// A fenced code block in README.md or docs/*.md is a complete configuration
// when the line right before its opening fence is one of
//     <!-- complete config -->           checked with ngx_pubsub's module
//     <!-- complete config (nchan) -->   checked with nchan's module, where
//                                        Debian's libnginx-mod-nchan is installed
// Every ```nginx block that has both an `events` and an `http` block must
// carry one of them, so a new complete example cannot go unchecked.
//
// Each config is checked as written, except for what a test machine cannot
// have, replaced line by line:
//   load_module .../ngx_pubsub_module.so  -> PUBSUB_MODULE (t/lib/nginx.js)
//   load_module .../ngx_nchan_module.so   -> NCHAN_SO (default: Debian's path)
//   ssl_certificate, ssl_certificate_key  -> a self-signed pair made by openssl
//   pubsub_token_key rs256:/es256:PATH    -> a public key made by openssl
//   error_log, access_log /ABSOLUTE/PATH  -> the temp prefix's logs/
// then `nginx -t -p PREFIX/ -c PREFIX/conf/nginx.conf` must succeed (nginx -t
// binds no socket, so `listen` lines stay as written).
//
// Also: every module log message quoted in docs/troubleshooting.md (a table
// cell holding `pubsub: ...`, where <...> stands for a value) is a possible
// rendering of an ngx_log_error() format in src/, at the level given.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { test, before, after } = require('node:test');
const { NGINX_BIN, MODULE_PATH, REPO } = require('./lib/nginx');

const NCHAN_SO = process.env.NCHAN_SO || '/usr/lib/nginx/modules/ngx_nchan_module.so';
const MARK = /^<!--\s*complete config(?:\s*\((nchan)\))?\s*-->\s*$/;

// ---------------------------------------------------------------- extraction

function docFiles() {
    const docs = fs.readdirSync(path.join(REPO, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .sort()
        .map((f) => path.join('docs', f));
    return ['README.md', ...docs];
}

// Fenced blocks of a Markdown file: {file, line, info, text, kind}; kind is
// 'pubsub', 'nchan' or null (unmarked).
function fencedBlocks(file) {
    const lines = fs.readFileSync(path.join(REPO, file), 'utf8').split('\n');
    const blocks = [];
    for (let i = 0; i < lines.length; i++) {
        const open = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)/.exec(lines[i]);
        if (!open) {
            continue;
        }
        const fence = open[2];
        const body = [];
        let j = i + 1;
        while (j < lines.length && !lines[j].trim().startsWith(fence)) {
            body.push(lines[j]);
            j++;
        }
        const mark = i > 0 ? MARK.exec(lines[i - 1].trim()) : null;
        blocks.push({
            file,
            line: i + 1,
            info: open[3],
            text: body.join('\n') + '\n',
            kind: mark ? (mark[1] || 'pubsub') : null,
        });
        i = j;
    }
    // a marker that is not right before a fence is a typo
    lines.forEach((l, k) => {
        if (MARK.test(l.trim()) && !/^\s*(`{3,}|~{3,})/.test(lines[k + 1] || '')) {
            throw new Error(`${file}:${k + 1}: complete-config marker not followed by a fenced block`);
        }
    });
    return blocks;
}

const BLOCKS = docFiles().flatMap(fencedBlocks);
const where = (b) => `${b.file}:${b.line}`;

// ---------------------------------------------------------------- rewriting

const tmp = { dir: null, cert: null, key: null, rs256: null, es256: null };

function run(cmd, args) {
    return new Promise((resolve, reject) => {
        execFile(cmd, args, { timeout: 30000 }, (err, stdout, stderr) => {
            if (err) {
                reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
            } else {
                resolve(`${stdout}${stderr}`);
            }
        });
    });
}

async function publicKey(alg) {
    if (!tmp[alg]) {
        const priv = path.join(tmp.dir, `${alg}.key`);
        const pub = path.join(tmp.dir, `${alg}.pub.pem`);
        const opts = alg === 'rs256'
            ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']
            : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
        await run('openssl', ['genpkey', ...opts, '-out', priv]);
        await run('openssl', ['pkey', '-in', priv, '-pubout', '-out', pub]);
        tmp[alg] = pub;
    }
    return tmp[alg];
}

// The config text with the replacements listed at the top.
async function rewrite(text, kind, prefix) {
    const out = [];
    for (const line of text.split('\n')) {
        let l = line;
        let m;
        if ((m = /^(\s*load_module\s+)(\S*ngx_(pubsub|nchan)_module\.so)\s*;/.exec(l))) {
            l = `${m[1]}${m[3] === 'pubsub' ? MODULE_PATH : NCHAN_SO};`;
        } else if ((m = /^(\s*ssl_certificate(_key)?\s+)[^;]+;(.*)$/.exec(l))) {
            l = `${m[1]}${m[2] ? tmp.key : tmp.cert};${m[3]}`;
        } else if ((m = /^(\s*pubsub_token_key\s+)(rs256|es256):[^;\s]+;(.*)$/.exec(l))) {
            l = `${m[1]}${m[2]}:${await publicKey(m[2])};${m[3]}`;
        } else if ((m = /^(\s*(?:error_log|access_log)\s+)(\/\S+)([^;]*;.*)$/.exec(l))) {
            l = `${m[1]}${prefix}/logs/${path.basename(m[2])}${m[3]}`;
        }
        out.push(l);
    }
    if (kind === 'pubsub' && /^\s*load_module\s/m.test(text)) {
        assert.ok(out.some((l) => l.includes(MODULE_PATH)),
            'a config that loads modules must load ngx_pubsub_module.so');
    }
    return out.join('\n');
}

async function nginxT(block) {
    const prefix = await fsp.mkdtemp(path.join(os.tmpdir(), 'ngx-pubsub-docs-'));
    try {
        await fsp.chmod(prefix, 0o755);
        for (const d of ['conf', 'logs']) {
            await fsp.mkdir(path.join(prefix, d));
        }
        const conf = await rewrite(block.text, block.kind, prefix);
        const confPath = path.join(prefix, 'conf', 'nginx.conf');
        await fsp.writeFile(confPath, conf);
        const res = await new Promise((resolve) => {
            execFile(NGINX_BIN, ['-t', '-p', `${prefix}/`, '-c', confPath,
                '-e', path.join(prefix, 'logs', 'startup.log')],
            { timeout: 15000 }, (err, stdout, stderr) => {
                resolve({ code: err ? (err.code ?? -1) : 0, output: `${stdout}${stderr}` });
            });
        });
        return { ...res, conf };
    } finally {
        await fsp.rm(prefix, { recursive: true, force: true });
    }
}

before(async () => {
    tmp.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ngx-pubsub-docs-tls-'));
    await fsp.chmod(tmp.dir, 0o755);
    tmp.cert = path.join(tmp.dir, 'cert.pem');
    tmp.key = path.join(tmp.dir, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
        '-subj', '/CN=pubsub.example.com', '-keyout', tmp.key, '-out', tmp.cert]);
});

after(async () => {
    if (tmp.dir) {
        await fsp.rm(tmp.dir, { recursive: true, force: true });
    }
});

// ---------------------------------------------------------------- tests

test('the documentation marks its complete configs', () => {
    const marked = BLOCKS.filter((b) => b.kind);
    for (const b of marked) {
        assert.equal(b.info, 'nginx', `${where(b)}: a complete config is a fenced "nginx" block`);
    }
    // every nginx block with events and http is a complete config: marked
    const unmarked = BLOCKS.filter((b) => !b.kind && b.info === 'nginx'
        && /^\s*events\s*\{/m.test(b.text) && /^\s*http\s*\{/m.test(b.text));
    assert.deepEqual(unmarked.map(where), [], 'complete configs without the marker');
    // the ones issue 19 asked for: the production config, the migration
    // guide's side by side, the README's
    const files = (kind) => new Set(marked.filter((b) => b.kind === kind).map((b) => b.file));
    for (const f of ['README.md', 'docs/production.md', 'docs/migration-from-nchan.md']) {
        assert.ok(files('pubsub').has(f), `${f} has no complete ngx_pubsub config`);
    }
    assert.ok(files('nchan').has('docs/migration-from-nchan.md'), 'the nchan side is marked');
});

for (const b of BLOCKS.filter((x) => x.kind === 'pubsub')) {
    test(`nginx -t accepts the config at ${where(b)}`, async () => {
        const r = await nginxT(b);
        assert.equal(r.code, 0, `nginx -t failed for ${where(b)}:\n${r.output}\n--- as checked ---\n${r.conf}`);
        assert.match(r.output, /test is successful/);
    });
}

const nchanMissing = fs.existsSync(NCHAN_SO) ? false
    : `nchan's module is not installed (${NCHAN_SO}; Debian: libnginx-mod-nchan)`;

for (const b of BLOCKS.filter((x) => x.kind === 'nchan')) {
    test(`nginx -t accepts the nchan config at ${where(b)}`, { skip: nchanMissing }, async () => {
        const r = await nginxT(b);
        assert.equal(r.code, 0, `nginx -t failed for ${where(b)}:\n${r.output}\n--- as checked ---\n${r.conf}`);
        assert.match(r.output, /test is successful/);
    });
}

// ---------------------------------------------------------------- log messages

// ngx_log_error() calls in src/: {level (null when not a constant), format}
function logFormats() {
    const out = [];
    const walk = (dir) => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
            const p = path.join(dir, e.name);
            if (e.isDirectory()) {
                walk(p);
                continue;
            }
            if (!/\.(c|cpp|h)$/.test(e.name)) {
                continue;
            }
            const text = fs.readFileSync(p, 'utf8');
            for (const m of text.matchAll(/ngx_log_error\(\s*([A-Za-z_]+)\s*,/g)) {
                // the call's arguments, up to its closing parenthesis
                let i = m.index + m[0].length;
                for (let depth = 1; depth > 0 && i < text.length; i++) {
                    depth += text[i] === '(' ? 1 : text[i] === ')' ? -1 : 0;
                }
                const args = text.slice(m.index + m[0].length, i - 1);
                const strs = [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1]);
                const level = /^NGX_LOG_([A-Z]+)$/.exec(m[1]);
                out.push({
                    level: level ? level[1].toLowerCase().replace('err', 'error') : null,
                    format: strs.join('').replace(/\\"/g, '"').replace(/\\\\/g, '\\'),
                });
            }
        }
    };
    walk(path.join(REPO, 'src'));
    return out;
}

// nginx's format as a regex: every conversion (%s, %V, %uz, %*s, ...) matches
// any text
function formatRegex(format) {
    const parts = format.split(/%\*?[0-9]*u?[a-zA-Z]/);
    return new RegExp(`^${parts.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.+')}$`);
}

test('every log message in docs/troubleshooting.md is one the module writes', () => {
    const formats = logFormats().map((f) => ({ ...f, re: formatRegex(f.format) }));
    assert.ok(formats.length > 40, 'ngx_log_error calls not found in src/');
    const text = fs.readFileSync(path.join(REPO, 'docs', 'troubleshooting.md'), 'utf8');
    const quoted = [];
    for (const line of text.split('\n')) {
        const cells = line.split('|').map((c) => c.trim());
        // | level | `pubsub: ...` | meaning |
        const msg = /^`(pubsub: .*)`$/.exec(cells[2] || '');
        if (line.startsWith('|') && msg) {
            quoted.push({ levels: cells[1].split(/,\s*/), msg: msg[1] });
        }
    }
    assert.ok(quoted.length > 40, 'no log message table found');
    const bad = quoted.filter((q) => !formats.some((f) => f.re.test(q.msg)
        && (f.level === null || q.levels.includes(f.level))));
    assert.deepEqual(bad.map((q) => `${q.levels.join(',')} ${q.msg}`), [],
        'quoted in docs/troubleshooting.md, but no ngx_log_error() in src/ writes it');
});
