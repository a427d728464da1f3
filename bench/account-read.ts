/**
 * `account/read` as a bench request: the request line and the check of its answer, shared by
 * the stdio part (the issue 7 target at 64 in flight) and the remote-control part (the same
 * request over stdio and through the relay). The child must be logged in as the bench identity
 * (`startGatehouse`), which is what makes the request realistic: the answer carries the account.
 */
import { BENCH_IDENTITY } from './gatehouse-child.js';
import type { Answer, ClosedLoop } from './stdio-load.js';

/** Why `m` is not a good `account/read` answer for the bench identity, or undefined when it is. */
export function readProblem(m: Pick<Answer, 'result' | 'error'>): string | undefined {
  if (m.error !== undefined) return `error ${JSON.stringify(m.error)}`;
  const account = (m.result as { account?: { email?: unknown } } | undefined)?.account;
  return account?.email === BENCH_IDENTITY.email
    ? undefined
    : `not the bench account: ${JSON.stringify(m.result)}`;
}

/**
 * The closed loop of `account/read` with `{}` params; the loop itself checks each answer's id.
 * Notifications (login and status changes) are passed over.
 */
export const accountReadLoop: ClosedLoop = {
  request: (id) => `{"id":${id},"method":"account/read","params":{}}`,
  check: readProblem,
  skipNotifications: true,
};
