/**
 * The attacks a person who can start a workflow (Temporal UI, a schedule, the client) can
 * try with a feature pipeline input: SQL in every name they can type, SQL as a source,
 * a path out of the data roots. Each is refused with a clear, non-retryable error, the
 * store is unchanged, and nothing of a file outside the roots reaches Temporal or Postgres.
 * Also: a definition's own SQL cannot end its read-only transaction.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FtiClient, PipelineInputError } from '../../client/fti-client.ts';
import { FailureType } from '../../core/errors.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { scratchFiles } from '../helpers/files.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';
import { failureOf } from '../helpers/workflows.ts';
import { historyText, maxActivityAttempt, pasteAndFail, storeState, tablesNamed } from './support.ts';

// The data root, and a directory beside it that is not one.
const root = scratchFiles('sec-root');
const outside = scratchFiles('sec-outside');
const SECRET = 'outside_secret_7d1e';
const PASSWD_LINE = 'root:x:0:0';
const secretFile = outside.file('secret.csv', `sensor,at,value\n${SECRET},2024-01-01T00:00:00Z,1\n`);
const readingsFile = root.file('readings.csv', 'sensor,at,value\ns1,2024-01-01T10:00:00Z,1.5\ns2,2024-01-01T10:00:00Z,2.5\n');
root.file('correction.csv', 'sensor,at,value\ns1,2024-01-01T10:00:00Z,1.75\n');
// Symbolic links inside the root that point out of it.
fs.symlinkSync('/etc/passwd', path.join(root.dir, 'passwd.csv'));
fs.symlinkSync(secretFile, path.join(root.dir, 'secret-link.csv'));
fs.symlinkSync(outside.dir, path.join(root.dir, 'outside-dir'));

const readings = defineFeatureGroup({
  name: 'readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'csv', path: readingsFile },
  validation: 'quarantine',
});
// Definitions' own SQL: the one place SQL may come from. Each tries to get out of its read-only transaction.
const sqlGroup = (name: string, query: string, extra: { timeZone?: string } = {}) =>
  defineFeatureGroup({ name, version: 1, entityKeys: ['id'], eventTime: 'at', features: { id: 'int', at: 'timestamp' }, source: { kind: 'postgres', query }, ...extra });
const escapes = {
  sql_commit: {
    query: `select 1::bigint as id, timestamptz '2001-01-01T00:00:00Z' as at; commit; create table pwned_commit (x int)`,
    error: /the definition's source query was refused by Postgres: cannot insert multiple commands into a prepared statement \(SQLSTATE 42601\)/,
  },
  sql_read_write: {
    query: `select 1::bigint as id, now() as at, set_config('transaction_read_only', 'off', true) as escape`,
    error: /transaction read-write mode must be set before any query \(SQLSTATE 25001\)/,
  },
  sql_cte_write: {
    query: `with w as (insert into feature_groups (name, version, fingerprint, schema) values ('pwned', 1, 'x', '{}') returning 1) select 1::bigint as id, now() as at from w`,
    error: /DECLARE CURSOR must not contain data-modifying statements in WITH \(SQLSTATE 0A000\)/,
  },
  sql_ddl_function: {
    query: `select 1::bigint as id, now() as at, query_to_xml('create table pwned_function (x int)', true, false, '') as escape`,
    error: /CREATE TABLE is not allowed in a non-volatile function/,
  },
};
const sqlOk = sqlGroup('sql_ok', `select 1::bigint as id, timestamp '2001-01-01 10:00' as at`, { timeZone: 'America/New_York' });
const project = defineProject({ featureGroups: [readings, sqlOk, ...Object.entries(escapes).map(([name, e]) => sqlGroup(name, e.query))] });

describe('security: a workflow input names only what the code defines (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let bare: RunningWorker;
  const barePrefix = `${uniqueId('bare')}-`;

  beforeAll(async () => {
    db = await createTestDb('sec_inputs');
    temporal = await createTestTemporal('sec-inputs');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [root.dir] });
    // A worker with no data roots configured (FTI_DATA_ROOTS unset): only the definitions' own files.
    bare = await startInProcessWorker('cpu', { prefix: barePrefix, knex: db.knex, project });
  });

  afterAll(async () => {
    await worker?.stop();
    await bare?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(root.dir, { recursive: true, force: true });
    fs.rmSync(outside.dir, { recursive: true, force: true });
  });

  it('SQL typed into every name of a pasted UI input is refused with a clear error, and the store is unchanged', async () => {
    const before = await storeState(db.knex, db.schema);
    const attempts: Array<[string, RegExp]> = [
      [`{ "featureGroup": "readings'; drop table feature_groups; --" }`, /^invalid featurePipeline input: featureGroup: must match/],
      [`{ "featureGroup": "readings", "version": "1; drop table feature_commits" }`, /^invalid featurePipeline input: version: /],
      [
        `{ "featureGroup": "readings", "source": { "kind": "postgres", "query": "select * from feature_groups; drop table feature_commits; --" } }`,
        /^invalid featurePipeline input: source\.kind: SQL sources exist only in the definitions module \(FTI_DEFINITIONS\), never in a workflow input; a source override may only be a csv, ndjson or parquet file under a data root \(FTI_DATA_ROOTS\)$/,
      ],
      [`{ "featureGroup": "readings", "source": { "kind": "feature_group", "name": "readings", "version": 1 } }`, /source\.kind: feature_group sources exist only in the definitions module/],
      [`{ "featureGroup": "readings", "source": { "kind": "csv'; drop table feature_groups; --", "path": "readings.csv" } }`, /^invalid featurePipeline input: source\.kind: /],
      [`{ "featureGroup": "readings", "start": "2001-01-01T00:00:00Z'; drop table feature_groups; --" }`, /^invalid featurePipeline input: start: must be an ISO-8601 timestamp with a zone/],
      // Date.parse reads 'x 2001' as a date; the input schema does not.
      [`{ "featureGroup": "readings", "end": "x 2001" }`, /^invalid featurePipeline input: end: must be an ISO-8601 timestamp with a zone/],
      [`{ "featureGroup": "readings", "scheduleWindow": "1h; drop table feature_groups" }`, /^invalid featurePipeline input: scheduleWindow: must be a duration/],
      [`{ "featureGroup": "readings", "query": "drop table feature_groups" }`, /^invalid featurePipeline input: input: Unrecognized key: "query"/],
      // The run a feature run signals once committed (ftiPipeline sets it): only another run of the same chain.
      [`{ "featureGroup": "readings", "downstream": "someone-elses-workflow" }`, /^downstream must name another child of this run's parent workflow; got someone-elses-workflow$/],
      // Passes the schema (it is a file name), then the worker looks under its data root: no such file.
      [
        `{ "featureGroup": "readings", "source": { "kind": "csv", "path": "readings.csv'; drop table feature_groups; --" } }`,
        /^cannot read source file "readings\.csv'; drop table feature_groups; --" \(.*\): no such file$/,
      ],
    ];
    for (const [json, message] of attempts) {
      const { failure, workflowId } = await pasteAndFail(temporal.client, temporal.cpuQueue, json);
      expect(failure.type, json).toBe(FailureType.InvalidInput);
      expect(failure.message, json).toMatch(message);
      expect(failure.nonRetryable, json).toBe(true);
      expect(await maxActivityAttempt(temporal.client, workflowId), json).toBeLessThanOrEqual(1);
    }
    expect(await storeState(db.knex, db.schema)).toEqual(before);
  });

  it('FtiClient (and so `fti run`) refuses a SQL source before starting anything', async () => {
    const fti = FtiClient.fromClient(temporal.client, { taskQueuePrefix: temporal.prefix });
    const input = { featureGroup: 'readings', source: { kind: 'postgres', query: 'select 1' } } as never;
    await expect(fti.start('feature', input)).rejects.toThrow(PipelineInputError);
    await expect(fti.start('feature', input)).rejects.toThrow(/source\.kind: SQL sources exist only in the definitions module/);
  });

  describe('paths: only under a data root, symbolic links followed', () => {
    const cases: Array<[string, string, string]> = [
      ['a relative path that climbs out (../../etc/passwd)', '../../etc/passwd', PASSWD_LINE],
      ['an absolute path (/etc/passwd)', '/etc/passwd', PASSWD_LINE],
      ['a symbolic link inside the root to /etc/passwd', 'passwd.csv', PASSWD_LINE],
      ['a symbolic link inside the root to a file outside it', 'secret-link.csv', SECRET],
      ['a file under a linked directory that leads outside', 'outside-dir/secret.csv', SECRET],
      ['an absolute path to a file outside the root', secretFile, SECRET],
    ];
    for (const [what, requested, marker] of cases) {
      it(`refuses ${what}; no byte of the file reaches Temporal or the database`, async () => {
        const before = await storeState(db.knex, db.schema);
        const json = JSON.stringify({ featureGroup: 'readings', source: { kind: 'csv', path: requested, delimiter: ':' } });
        const { failure, workflowId } = await pasteAndFail(temporal.client, temporal.cpuQueue, json);
        expect(failure.type).toBe(FailureType.InvalidInput);
        expect(failure.nonRetryable).toBe(true);
        expect(failure.message).toBe(
          `source file ${JSON.stringify(requested)} is outside the data roots: a workflow input may name only a file under FTI_DATA_ROOTS (${fs.realpathSync(root.dir)}) ` +
            `or one of the definitions' own source files; relative paths are resolved against the data roots, symbolic links are followed`,
        );
        const history = await historyText(temporal.client, workflowId);
        expect(history).toContain(requested);
        expect(history).not.toContain(marker);
        expect(await storeState(db.knex, db.schema)).toEqual(before);
        const rejects = (await db.knex.raw(`select count(*)::int as n from feature_rejects where row::text like ? or array_to_string(reasons, ' ') like ?`, [`%${marker}%`, `%${marker}%`])) as { rows: Array<{ n: number }> };
        expect(rejects.rows[0]?.n).toBe(0);
      });
    }

    it('a file under the root is read, by a relative or an absolute path', async () => {
      const relative = await temporal.client.workflow.execute(featurePipeline, {
        taskQueue: temporal.cpuQueue,
        workflowId: uniqueId('root-file'),
        args: [{ featureGroup: 'readings', source: { kind: 'csv', path: 'correction.csv' } }],
      });
      expect(relative).toMatchObject({ rowsIn: 1, rowsCommitted: 1 });
      const absolute = await temporal.client.workflow.execute(featurePipeline, {
        taskQueue: temporal.cpuQueue,
        workflowId: uniqueId('root-file'),
        args: [{ featureGroup: 'readings', source: { kind: 'csv', path: path.join(root.dir, 'correction.csv') } }],
      });
      expect(absolute).toMatchObject({ rowsIn: 1, rowsUnchanged: 1 });
    });

    it('with no data roots configured, only the definitions’ own files may be named', async () => {
      const queue = taskQueue('cpu', barePrefix);
      const { failure } = await pasteAndFail(temporal.client, queue, JSON.stringify({ featureGroup: 'readings', source: { kind: 'csv', path: path.join(root.dir, 'correction.csv') } }));
      expect(failure.type).toBe(FailureType.InvalidInput);
      expect(failure.message).toMatch(/is outside the data roots: a workflow input may name only a file under FTI_DATA_ROOTS \(none configured\)/);
      const own = await temporal.client.workflow.execute(featurePipeline, { taskQueue: queue, workflowId: uniqueId('own-file'), args: [{ featureGroup: 'readings', source: { kind: 'csv', path: readingsFile } }] });
      expect(own).toMatchObject({ rowsIn: 2 });
    });
  });

  describe("a definition's own SQL runs in a read-only transaction it cannot end", () => {
    for (const [name, { query, error }] of Object.entries(escapes)) {
      it(`${name}: ${query.slice(0, 70)}… fails at once and creates nothing`, async () => {
        const handle = await temporal.client.workflow.start(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId(name), args: [{ featureGroup: name }] });
        const failure = await failureOf(handle.result());
        expect(failure.type).toBe(FailureType.InvalidInput);
        expect(failure.message).toMatch(error);
        // Not retried: the same query would fail the same way.
        expect(await maxActivityAttempt(temporal.client, handle.workflowId)).toBe(1);
        expect(await tablesNamed(db.knex, 'pwned%')).toEqual([]);
        expect(await db.knex('feature_groups').where({ name: 'pwned' }).first()).toBeUndefined();
        const group = await new FeatureStore({ knex: db.knex }).group(name, 1);
        expect(await new FeatureStore({ knex: db.knex }).read(group).count()).toBe(0);
      });
    }

    it('a well-formed query still runs; its zone-less timestamps are read in the definition’s zone', async () => {
      const result = await temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('sql-ok'), args: [{ featureGroup: 'sql_ok' }] });
      expect(result).toMatchObject({ rowsIn: 1, rowsCommitted: 1 });
      const store = new FeatureStore({ knex: db.knex });
      const [row] = await store.read(await store.group('sql_ok', 1)).toArray();
      // 10:00 in New York is 15:00 UTC in January.
      expect((row?.at as Date).toISOString()).toBe('2001-01-01T15:00:00.000Z');
    });
  });
});
