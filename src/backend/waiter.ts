/**
 * A wait with a deadline, for the local backend's test-facing waits (`waitForServer`, and a
 * remote client's `request`, `next` and `ping`): it either settles or times out, never hangs.
 */

/** A promise settled once, by its owner or by a timeout (whose timer dies with it). */
export class Waiter<T> {
  readonly promise: Promise<T>;
  private settle!: { resolve: (value: T) => void; reject: (reason: Error) => void };
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number, what: string, onTimeout: () => void) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.timer = setTimeout(() => {
      onTimeout();
      this.settle.reject(new Error(`${what} within ${timeoutMs} ms`));
    }, timeoutMs);
  }

  resolve(value: T): void {
    clearTimeout(this.timer);
    this.settle.resolve(value);
  }

  reject(reason: Error): void {
    clearTimeout(this.timer);
    this.settle.reject(reason);
  }
}
