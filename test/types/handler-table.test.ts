/**
 * Compile-time checks, run by `npm run typecheck`: the handler table must match the registry.
 * Each @ts-expect-error fails the typecheck if the error it expects ever disappears.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mockHandlers, type HandlerTable } from '../../src/broker/handlers.js';

// @ts-expect-error a method of the registry without a handler does not compile
const missing = {} satisfies HandlerTable;

type MockOnly = Pick<HandlerTable, 'mock/experimentalMethod'>;

const extra = {
  'mock/experimentalMethod': () => ({ echoed: null }),
  // @ts-expect-error a handler for a method the registry does not declare does not compile
  'no/such/method': () => ({}),
} satisfies MockOnly;

const wrongResult = {
  // @ts-expect-error a handler must return the declared result shape
  'mock/experimentalMethod': () => ({ echoed: 5 }),
} satisfies MockOnly;

test('the handler table covers the registry at run time too', () => {
  assert.deepEqual(Object.keys(mockHandlers), ['mock/experimentalMethod']);
  assert.ok(missing && extra && wrongResult);
});
