/** What the security suites compare and search: the store's tables and rows, and a run's history as text. */
import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';
import { expect } from 'vitest';
import { uniqueId } from '../helpers/services.ts';
import { localActivityOf } from '../helpers/histories.ts';
import { failureOf } from '../helpers/workflows.ts';

export interface StoreState {
  /** Every table of the schema, by name. */
  tables: string[];
  /** Row counts of every table the suite's role can read. */
  rows: Record<string, number>;
}

/** The schema's table list and each table's row count: equal before and after a refused run. */
export async function storeState(knex: Knex, schema: string): Promise<StoreState> {
  const { rows: tables } = (await knex.raw(
    `select c.relname as name, has_table_privilege(c.oid, 'select') as readable
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = ? and c.relkind in ('r', 'p', 'v', 'm') order by 1`,
    [schema],
  )) as { rows: Array<{ name: string; readable: boolean }> };
  const rows: Record<string, number> = {};
  for (const t of tables) {
    if (!t.readable) continue;
    const { rows: counted } = (await knex.raw('select count(*)::int as n from ??.??', [schema, t.name])) as { rows: Array<{ n: number }> };
    rows[t.name] = counted[0]?.n ?? -1;
  }
  return { tables: tables.map((t) => t.name), rows };
}

/** Tables named like `pattern` in any schema of the database. */
export async function tablesNamed(knex: Knex, pattern: string): Promise<string[]> {
  const { rows } = (await knex.raw(`select n.nspname || '.' || c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relname like ?`, [pattern])) as {
    rows: Array<{ name: string }>;
  };
  return rows.map((r) => r.name);
}

/**
 * Starts `featurePipeline` the way the Temporal UI does (by type name, the pasted JSON
 * parsed as its one argument) and waits for its failure.
 */
export async function pasteAndFail(client: Client, taskQueue: string, json: string) {
  const handle = await client.workflow.start('featurePipeline', { taskQueue, workflowId: uniqueId('pasted'), args: [JSON.parse(json) as unknown] });
  const failure = await failureOf(handle.result());
  return { failure, workflowId: handle.workflowId };
}

/** A run's whole history as text, payloads (inputs, results, failure details) decoded: what the Temporal UI can show. */
export async function historyText(client: Client, workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const text = JSON.stringify(history, (_key, value: unknown) => {
    if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
    const buffer = value as { type?: unknown; data?: unknown } | null;
    if (buffer && typeof buffer === 'object' && buffer.type === 'Buffer' && Array.isArray(buffer.data)) return Buffer.from(buffer.data as number[]).toString('utf8');
    return value;
  });
  // The decoding works: the workflow's own type name and input are in there.
  expect(text).toContain('featurePipeline');
  return text;
}

/** The highest attempt any activity of the run reached, local activities included (1: nothing was retried). */
export async function maxActivityAttempt(client: Client, workflowId: string): Promise<number> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  let max = 0;
  for (const event of history.events ?? []) max = Math.max(max, event.activityTaskStartedEventAttributes?.attempt ?? 0, localActivityOf(event)?.attempt ?? 0);
  return max;
}
