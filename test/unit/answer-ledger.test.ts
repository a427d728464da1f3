import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnswerLedger } from '../../src/broker/admission.js';

test('the ledger counts open requests per id, keeping "1" and 1 apart', () => {
  const ledger = new AnswerLedger();
  ledger.opened(1);
  ledger.opened('1');
  ledger.opened(1); // a client reusing an id while the first is running
  assert.equal(ledger.size, 3);
  assert.equal(ledger.answered(1), true);
  assert.equal(ledger.answered('1'), true);
  assert.equal(ledger.answered('1'), false, 'the string id was open once');
  assert.equal(ledger.size, 1);
  assert.deepEqual(ledger.takeAll(), [1]);
  assert.equal(ledger.size, 0);
  assert.equal(ledger.answered(1), false, 'taken ids are no longer open');
});

test('an id back from an envelope as a bigint is the id it was; big ones stay exact', () => {
  const ledger = new AnswerLedger();
  const big = 2n ** 63n - 1n;
  ledger.opened(7);
  ledger.opened(big);
  assert.equal(ledger.answered(7n), true);
  assert.deepEqual(ledger.takeAll(), [big]);
});
