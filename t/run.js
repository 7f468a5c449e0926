#!/usr/bin/env node
'use strict';
// Runs the integration tests: node --test on t/*.test.js (or the files given
// as arguments), two files at a time. Extra node --test flags may be passed
// through, e.g. `node t/run.js --test-name-pattern=reload`.

const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const dir = __dirname;
const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
let files = args.filter((a) => !a.startsWith('--'));
if (files.length === 0) {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort()
        .map((f) => path.join(dir, f));
}
const concurrency = process.env.TEST_CONCURRENCY || '2';
const child = spawn(process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, ...flags, ...files],
    { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => child.kill(sig));
}
child.on('exit', (code, signal) => {
    process.exit(signal ? 1 : code);
});
