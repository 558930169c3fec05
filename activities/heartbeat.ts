import { Context } from '@temporalio/activity';

/**
 * Heartbeats `details()` every `everyMs` while `work` runs: long SQL statements
 * report liveness (and the Temporal UI shows where they are) without polling.
 */
export async function heartbeatWhile<T>(details: () => unknown, work: Promise<T>, everyMs = 5_000): Promise<T> {
  const context = Context.current();
  context.heartbeat(details());
  const timer = setInterval(() => context.heartbeat(details()), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/**
 * Heartbeats for work that reports progress in steps (training batches): `beat(details)`
 * heartbeats at once, and while `work` runs the latest details go again every `everyMs`
 * for up to `stallMs` after the last beat. A wait between steps (a pass's first batch,
 * a COPY opening on a busy server) cannot outlast a short heartbeat timeout, and work
 * that stops moving still stops the heartbeats, so the timeout catches a hang.
 */
export async function heartbeatProgress<T>(work: (beat: (details: Record<string, unknown>) => void) => Promise<T>, { everyMs = 2_000, stallMs = 60_000, initial = {} as Record<string, unknown> } = {}): Promise<T> {
  const context = Context.current();
  let latest = initial;
  let movedAt = Date.now();
  const beat = (details: Record<string, unknown>) => {
    latest = details;
    movedAt = Date.now();
    context.heartbeat(details);
  };
  const timer = setInterval(() => {
    if (Date.now() - movedAt < stallMs) context.heartbeat(latest);
  }, everyMs);
  try {
    return await work(beat);
  } finally {
    clearInterval(timer);
  }
}
