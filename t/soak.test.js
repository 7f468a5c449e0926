'use strict';
// The soak and abuse test (t/soak.js) in its 60-second CI form: churning,
// slow, flooding and malformed clients against one nginx; afterwards no
// subscriber is left, shared memory is back to its baseline, worker RSS is
// bounded and error.log is clean.  The 10-minute run:
//   node t/soak.js --duration 600 --churn 2000

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { soak } = require('./soak');

test('soak: 60 s of churn, slow readers, floods and bad input', { timeout: 300000 }, async () => {
    const r = await soak({ duration: 60, churn: 500, quiet: !process.env.PUBSUB_SOAK_VERBOSE });
    assert.ok(r.ok, `soak failed:\n  ${r.problems.join('\n  ')}`);
    assert.ok(r.counts['churn connections'] > 1000, 'churn ran');
    assert.ok(r.counts['good delivered'] > 0, 'well-behaved subscribers got messages');
});
