/**
 * Writing one partition of a prediction run, exactly once: in one transaction on
 * one connection, under a lock on (run, partition), whatever the partition's time
 * range already holds is deleted (only a partition that was finished once and reset to
 * be scored again can hold any), the new predictions are COPYed in, rejected rows are recorded, and
 * the partition is marked done. A failed attempt leaves nothing behind, so a retry
 * either finds the partition done or starts it over: it never adds a second row.
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import { columnValue, rowOf, type ColumnBatch } from '../../core/columns.ts';
import { FailureType, FtiError } from '../../core/errors.ts';
import { BinaryCopyWriter, cancelOnAbort, copyIn, timestampText, type ChunkSource } from '../db/index.ts';
import type { ScoringReject } from '../../ml/scoring.ts';
import { toPartition, type PartitionRow, type PredictionPartition, type PredictionRun } from './runs.ts';

/** A batch as the reads give it (reads.ts), the rows of it that passed the signature check, and one score each. */
export interface ScoredBatch {
  /** Entity keys and the event time (microseconds since 1970) among its columns. */
  batch: ColumnBatch;
  /** The scored rows' indices in `batch`. */
  rows: Uint32Array;
  scores: Float32Array;
}

export interface PartitionWrite {
  run: PredictionRun;
  partition: PredictionPartition;
  spine: { entityKeys: string[]; eventTime: string };
  /** Consumed once, inside the transaction (the read side holds a cursor of its own). */
  batches: AsyncIterable<ScoredBatch>;
  /** Read after `batches` is consumed: every rejected row counted, the first ones kept. */
  rejects: () => { count: number; kept: ScoringReject[] };
  /** Cancels the write: its statement is cancelled in Postgres and the transaction rolls back. */
  signal?: AbortSignal;
}

const COPY_PREDICTIONS = 'copy predictions (run_id, model, model_version, entity_key, event_time, score) from stdin (format binary)';

/** Returns the partition as done; `written: false` when an earlier attempt had already finished it. */
export async function writePartition(knex: Knex, w: PartitionWrite): Promise<{ partition: PredictionPartition; written: boolean }> {
  const { run, partition } = w;
  const client = (await knex.client.acquireConnection()) as pg.PoolClient & { processID: number };
  let open = false;
  const release = cancelOnAbort(knex, client.processID, w.signal);
  try {
    w.signal?.throwIfAborted();
    await client.query('begin');
    open = true;
    await client.query('select pg_advisory_xact_lock(hashtext($1))', [`fti.prediction_partition:${run.runId}:${partition.index}`]);
    const current = await client.query<{ status: string; finished_at: Date | null }>('select status, finished_at from prediction_run_partitions where run_id = $1 and partition = $2', [run.runId, partition.index]);
    const status = current.rows[0]?.status;
    if (status === undefined) throw new FtiError(FailureType.NotFound, `prediction run ${run.runId} has no partition ${partition.index}`);
    if (status === 'done') {
      await client.query('commit');
      open = false;
      return { partition: await readPartition(client, run.runId, partition.index), written: false };
    }

    // Rows are committed only together with 'done' (and its finished_at), so a partition
    // never finished has none to delete. Skipping the delete matters: predictions has no
    // btree, and the delete scans the whole table (every run ever scored), once per partition.
    if (current.rows[0]?.finished_at != null) {
      const range = [run.runId, partition.start, partition.end];
      await client.query('delete from predictions where run_id = $1 and event_time >= $2 and event_time < $3', range);
      await client.query('delete from prediction_rejects where run_id = $1 and event_time >= $2 and event_time < $3', range);
    }

    const counter = { rows: 0 };
    await copyIn(client, COPY_PREDICTIONS, (chunks) => copyTuples(w, counter, chunks));

    const rejects = w.rejects();
    if (rejects.kept.length) await insertRejects(client, run.runId, w.spine, rejects.kept);
    await client.query(
      `update prediction_run_partitions set status = 'done', rows = $3, rows_rejected = $4, finished_at = now() where run_id = $1 and partition = $2`,
      [run.runId, partition.index, counter.rows, rejects.count],
    );
    await client.query('commit');
    open = false;
    return { partition: await readPartition(client, run.runId, partition.index), written: true };
  } finally {
    release();
    if (open) await client.query('rollback').catch(() => {});
    await knex.client.releaseConnection(client);
  }
}

/**
 * Binary COPY tuples, a chunk per scored batch: scores as float8 and event times as
 * microseconds go in as they are, with no text to print or for Postgres to parse.
 */
async function* copyTuples(w: PartitionWrite, counter: { rows: number }, chunks: ChunkSource): AsyncGenerator<Buffer> {
  const { run, spine } = w;
  // Every tuple starts the same: its field count, the run id, the model and its version.
  const start = tupleStart(run);
  const out = new BinaryCopyWriter(undefined, chunks);
  for await (const { batch, rows, scores } of w.batches) {
    if (rows.length !== scores.length) throw new Error(`a scored batch has ${rows.length} rows but ${scores.length} scores`);
    const entityKey = entityKeyField(batch, spine.entityKeys);
    const times = eventTimes(batch, spine.eventTime);
    for (let k = 0; k < rows.length; k++) {
      const i = rows[k] as number;
      out.writeRange(start, 0, start.length);
      entityKey(out, i);
      out.timestamptz(times(i));
      out.float8(scores[k] as number);
    }
    counter.rows += rows.length;
    // Its last reader: what the tuples need is in the chunk now.
    batch.release?.();
    yield* out.take();
  }
  yield* out.end();
}

/** The bytes every tuple of a run starts with: its six fields' count, then run_id, model and model_version. */
function tupleStart(run: PredictionRun): Buffer {
  const runId = Buffer.from(run.runId, 'utf8');
  const model = Buffer.from(run.model, 'utf8');
  const start = Buffer.alloc(2 + 4 + runId.length + 4 + model.length + 8);
  let at = start.writeInt16BE(6, 0);
  at = start.writeInt32BE(runId.length, at);
  at += runId.copy(start, at);
  at = start.writeInt32BE(model.length, at);
  at += model.copy(start, at);
  at = start.writeInt32BE(4, at);
  start.writeInt32BE(run.version, at);
  return start;
}

/** The spine row's entity keys as a JSON object, keys in definition order. */
export function entityKeyOf(row: Readonly<Record<string, unknown>>, entityKeys: readonly string[]): Record<string, unknown> {
  const key: Record<string, unknown> = {};
  for (const k of entityKeys) key[k] = row[k];
  return key;
}

function entityKeyJson(row: Readonly<Record<string, unknown>>, entityKeys: readonly string[]): string {
  return JSON.stringify(entityKeyOf(row, entityKeys));
}

/**
 * Writes row i's entity key as a jsonb field: entityKeyJson's text, built from each
 * key's prefix (`{"flight_id":`) and the value, with no object or string per row for
 * an integer key (its digits go straight into the chunk); other values are printed by
 * JSON.stringify. A key whose value is absent takes the object's path
 * (JSON.stringify leaves such a key out).
 */
export function entityKeyField(batch: ColumnBatch, entityKeys: readonly string[]): (out: BinaryCopyWriter, i: number) => void {
  const prefixes = entityKeys.map((k, c) => Buffer.from(`${c === 0 ? '{' : ','}${JSON.stringify(k)}:`, 'utf8'));
  const columns = entityKeys.map((k) => batch.columns.get(k));
  // jsonb's version byte, the prefixes and the closing brace.
  const fixed = prefixes.reduce((n, p) => n + p.length, 2);
  const values: unknown[] = new Array(columns.length);
  const texts: Array<string | undefined> = new Array(columns.length);
  return (out, i) => {
    let most = fixed;
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c];
      const value = column === undefined ? undefined : columnValue(column, i);
      if (value === undefined) {
        out.jsonb(entityKeyJson(rowOf(batch, i), entityKeys));
        return;
      }
      values[c] = value;
      const text = typeof value === 'number' && Number.isSafeInteger(value) ? undefined : JSON.stringify(value);
      texts[c] = text;
      // An integer's digits and sign: at most 17; UTF-8 at most 3 bytes a unit.
      most += text === undefined ? 17 : 3 * text.length;
    }
    // A key longer than a chunk (a text of megabytes) takes the path that writes any size.
    if (!out.fits(most)) {
      out.jsonb(entityKeyJson(rowOf(batch, i), entityKeys));
      return;
    }
    out.openField(most);
    out.appendByte(1);
    for (let c = 0; c < columns.length; c++) {
      out.appendBytes(prefixes[c] as Buffer);
      const text = texts[c];
      if (text === undefined) out.appendInteger(values[c] as number);
      else out.appendUtf8(text);
    }
    out.appendByte(125); // '}'
    out.closeField();
  };
}

/** Row i's event time in microseconds since 1970, as the reads give it (reads.ts). */
function eventTimes(batch: ColumnBatch, name: string): (i: number) => number {
  const column = batch.columns.get(name);
  return (i) => eventTimeMicros(column === undefined ? undefined : columnValue(column, i), name);
}

function eventTimeMicros(t: unknown, column: string): number {
  if (typeof t === 'number' && Number.isFinite(t)) return t;
  throw new Error(`spine row has no event time in microseconds in ${column}`);
}

/** The spine row's event time as ISO 8601 text, for the rejects' JSON. */
function eventTimeText(row: Readonly<Record<string, unknown>>, column: string): string {
  return timestampText(eventTimeMicros(row[column], column));
}

async function insertRejects(client: pg.PoolClient, runId: string, spine: PartitionWrite['spine'], kept: ScoringReject[]): Promise<void> {
  // One statement per chunk, arrays unnested server-side; reasons travel as JSON arrays.
  for (let i = 0; i < kept.length; i += 1000) {
    const chunk = kept.slice(i, i + 1000);
    await client.query(
      `insert into prediction_rejects (run_id, entity_key, event_time, reasons, features)
       select $1, k::jsonb, t, array(select jsonb_array_elements_text(r::jsonb)), f::jsonb
       from unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[]) as u(k, t, r, f)
       on conflict do nothing`,
      [
        runId,
        chunk.map((r) => entityKeyJson(r.row, spine.entityKeys)),
        chunk.map((r) => eventTimeText(r.row, spine.eventTime)),
        chunk.map((r) => JSON.stringify(r.reasons)),
        // The stored features read as the row did before reads gave times in microseconds.
        chunk.map((r) => JSON.stringify({ ...r.row, [spine.eventTime]: eventTimeText(r.row, spine.eventTime) })),
      ],
    );
  }
}

async function readPartition(client: pg.PoolClient, runId: string, index: number): Promise<PredictionPartition> {
  const result = await client.query<PartitionRow>('select * from prediction_run_partitions where run_id = $1 and partition = $2', [runId, index]);
  const row = result.rows[0];
  if (!row) throw new Error(`partition ${index} of ${runId} vanished`);
  return toPartition(row);
}
