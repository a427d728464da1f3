/**
 * Tests that need a system package (swtpm, SoftHSM2) skip when it is absent, and never quietly:
 * a banner on stderr names the test and what to install, and the runner counts it as skipped.
 */
export function skippedFor(
  t: { name: string; skip(message: string): void },
  reason: string | undefined,
): boolean {
  if (reason === undefined) return false;
  console.error(`\n*** SKIPPED "${t.name}": ${reason} ***\n`);
  t.skip(reason);
  return true;
}
