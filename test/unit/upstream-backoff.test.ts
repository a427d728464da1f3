import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_RETRY_AFTER_MS, backoffDelayMs, retryAfterMs } from '../../src/upstream/backoff.js';
import { uuidParseError, uuidv7 } from '../../src/relay/ids.js';

test('backoff doubles from the base with ±10% jitter (codex: ≈0.2, 0.4, 0.8, 1.6, 3.2 s)', () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4].map((n) => backoffDelayMs(200, n, () => 0.5)),
    [200, 400, 800, 1600, 3200],
  );
  assert.equal(
    backoffDelayMs(200, 0, () => 0),
    180,
  );
  assert.equal(
    backoffDelayMs(200, 0, () => 0.999999),
    220,
  );
  for (let i = 0; i < 200; i++) {
    const d = backoffDelayMs(200, 3);
    assert.ok(d >= 1440 && d <= 1760, String(d));
  }
  assert.equal(backoffDelayMs(0, 5), 0);
});

test('Retry-After: seconds, an HTTP date, retry-after-ms; bounded; unreadable values ignored', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfterMs({ 'retry-after': '2' }, now), 2000);
  assert.equal(retryAfterMs({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }, now), 3000);
  assert.equal(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' }, now), 250);
  assert.equal(retryAfterMs({ 'retry-after': '86400' }, now), MAX_RETRY_AFTER_MS);
  assert.equal(retryAfterMs({ 'retry-after': 'Wed, 31 Dec 2025 23:00:00 GMT' }, now), 0);
  assert.equal(retryAfterMs({ 'retry-after': 'soon' }, now), undefined);
  assert.equal(retryAfterMs({}, now), undefined);
});

test('thread ids are UUIDv7 in time order; malformed ids get the uuid crate texts', () => {
  const a = uuidv7(1_700_000_000_000);
  const b = uuidv7(1_700_000_000_001);
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(a < b);
  assert.equal(uuidParseError(a), undefined);
  assert.equal(uuidParseError(a.replaceAll('-', '')), undefined);
  assert.equal(
    uuidParseError('nope'),
    'invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `n` at 1',
  );
  assert.equal(uuidParseError('abc'), 'invalid length: expected length 32 for simple format, found 3');
  assert.equal(uuidParseError('11111111-2222-5333-8444'), 'invalid group count: expected 5, found 4');
  assert.equal(
    uuidParseError('11111111-222-5333-8444-555555555555'),
    'invalid group length in group 1: expected 4, found 3',
  );
});
