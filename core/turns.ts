/**
 * Turns: callers of an async step take it one at a time, first come first served (a
 * mutex for promises). The caller whose turn it is passes it on when done; a caller
 * still waiting when its signal aborts leaves the line, rejected.
 */
export class Turns {
  private busy = false;
  private readonly waiting: Array<() => void> = [];

  /** Resolves once it is the caller's turn; rejects if `signal` aborts first. */
  async take(signal?: AbortSignal): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return;
    }
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', stop);
        resolve();
      };
      const stop = () => {
        const at = this.waiting.indexOf(go);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('the read was cancelled'));
      };
      this.waiting.push(go);
      signal?.addEventListener('abort', stop, { once: true });
    });
  }

  /** Ends the caller's turn: the next waiting caller's begins. */
  pass(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.busy = false;
  }
}
