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
