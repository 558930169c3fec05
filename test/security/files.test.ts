/**
 * Bad input files fail clearly and lose nothing: a source whose columns do not fit the
 * definition fails before any row is read; a missing, truncated or corrupt file fails once
 * (not five retries), naming the file; zone-less timestamps are read in the definition's
 * zone whatever the worker's TZ; quarantine refuses a commit with too many rejects; failure
 * details carry counts and reasons, never raw rows. And the README's late-rows path works.
 */
import fs from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeaturePipelineResult } from '../../activities/feature.ts';
import { FailureType } from '../../core/errors.ts';
import { FLIGHTS_3M_PARQUET } from '../../examples/flights/data.ts';
import { flights } from '../../examples/flights/definitions.ts';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { runFti } from '../helpers/cli.ts';
import { scratchFiles } from '../helpers/files.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';
import { failureOf } from '../helpers/workflows.ts';
import { historyText, maxActivityAttempt, storeState } from './support.ts';

// The worker reads files in a zone that is not UTC: zone-less times must not depend on it.
const originalTz = process.env.TZ;
process.env.TZ = 'America/New_York';

const root = scratchFiles('sec-files');
const { file, ndjson } = root;
fs.mkdirSync(path.join(root.dir, 'a-directory'));

const readingsFeatures = { sensor: 'string', at: 'timestamp', value: 'float' } as const;
const readings = defineFeatureGroup({
  name: 'readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: readingsFeatures,
  source: { kind: 'csv', path: file('readings.csv', 'sensor,at,value\ns1,2024-01-01T10:00:00Z,1.5\n') },
});
// Quarantine with the default maximum reject ratio (5%), and one that accepts any ratio.
const quarantined = defineFeatureGroup({ ...readingsInput('quarantined'), validation: 'quarantine', expectations: [{ kind: 'range', column: 'value', min: 0 }] });
const lenient = defineFeatureGroup({ ...readingsInput('lenient'), validation: 'quarantine', maxRejectRatio: 1 });
const strictAccounts = defineFeatureGroup({
  name: 'accounts',
  version: 1,
  entityKeys: ['name'],
  eventTime: 'at',
  features: { name: 'string', at: 'timestamp', uid: 'int' },
  source: { kind: 'csv', path: '/dev/null', delimiter: ':' },
});
// Zone-less timestamps read in a declared zone.
const kolkata = defineFeatureGroup({ ...readingsInput('kolkata'), timeZone: 'Asia/Kolkata' });
// The flights transform, reading the 3M Parquet file's zone-less times as New York wall-clock times.
const flightsNewYork = defineFeatureGroup({ ...flights, name: 'flights_ny', timeZone: 'America/New_York', features: Object.fromEntries(flights.columns.map((c) => [c.name, c.type])) });

function readingsInput(name: string) {
  return { name, version: 1, entityKeys: ['sensor'], eventTime: 'at', features: readingsFeatures, source: { kind: 'csv' as const, path: '/dev/null' } };
}

const project = defineProject({ featureGroups: [readings, quarantined, lenient, strictAccounts, kolkata, flights, flightsNewYork] });

describe('security: bad files fail clearly, nothing is lost (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;

  const start = (input: Parameters<typeof featurePipeline>[0]) => temporal.client.workflow.start(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('files'), args: [input] });
  const run = async (input: Parameters<typeof featurePipeline>[0]) => (await start(input)).result();
  /** Runs, expects a non-retryable failure of `type` whose message matches, and the store exactly as before. */
  async function refused(input: Parameters<typeof featurePipeline>[0], type: string, message: RegExp) {
    const before = await storeState(db.knex, db.schema);
    const handle = await start(input);
    const failure = await failureOf(handle.result());
    expect(failure.type).toBe(type);
    expect(failure.message).toMatch(message);
    expect(failure.nonRetryable).toBe(true);
    expect(await maxActivityAttempt(temporal.client, handle.workflowId)).toBe(1);
    expect(await storeState(db.knex, db.schema)).toEqual(before);
    return { failure, workflowId: handle.workflowId };
  }

  beforeAll(async () => {
    db = await createTestDb('sec_files');
    temporal = await createTestTemporal('sec-files');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [root.dir] });
    store = new FeatureStore({ knex: db.knex });
    // Register every group once, so "the store is as before" compares rows, not first registrations.
    for (const def of project.featureGroups.list()) await store.register(def);
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(root.dir, { recursive: true, force: true });
    process.env.TZ = originalTz;
  });

  it('the worker runs in America/New_York (so a local-time reading would show)', () => {
    expect(new Date(2001, 0, 1, 10).getUTCHours()).toBe(15);
  });

  describe('columns are checked before any row is read', () => {
    it('a missing column', async () => {
      const path_ = file('missing.csv', 'sensor,at\ns1,2024-01-01T10:00:00Z\n');
      await refused({ featureGroup: 'readings', source: { kind: 'csv', path: 'missing.csv' } }, FailureType.InvalidInput, new RegExp(
        `^source file ${escape(fs.realpathSync(path_))} does not have the columns readings v1 reads: missing "value"; expected "sensor", "at", "value"; found "sensor", "at"$`,
      ));
    });

    it('a renamed column', async () => {
      file('renamed.csv', 'sensor,at,val\ns1,2024-01-01T10:00:00Z,1\n');
      await refused({ featureGroup: 'readings', source: { kind: 'csv', path: 'renamed.csv' } }, FailureType.InvalidInput, /does not have the columns readings v1 reads: missing "value"; expected "sensor", "at", "value"; found "sensor", "at", "val"$/);
    });

    it('a wrong delimiter that yields one column', async () => {
      file('semicolons.csv', 'sensor;at;value\ns1;2024-01-01T10:00:00Z;1\n');
      await refused(
        { featureGroup: 'readings', source: { kind: 'csv', path: 'semicolons.csv' } },
        FailureType.InvalidInput,
        /missing "sensor", "at", "value"; expected "sensor", "at", "value"; found "sensor;at;value"; one column only: is the delimiter right\? the file is read as ","-separated$/,
      );
    });

    it('an NDJSON file whose first object lacks a column', async () => {
      ndjson('no-value.ndjson', [{ sensor: 's1', at: '2024-01-01T10:00:00Z' }]);
      await refused({ featureGroup: 'readings', source: { kind: 'ndjson', path: 'no-value.ndjson' } }, FailureType.InvalidInput, /no-value\.ndjson does not have the columns readings v1 reads: missing "value"/);
    });

    it('a Parquet file without the columns the flights transform reads', async () => {
      // The flights file read as a `readings` source: its schema is date, delay, distance, origin, destination.
      await refused(
        { featureGroup: 'readings', source: { kind: 'parquet', path: FLIGHTS_3M_PARQUET } },
        FailureType.InvalidInput,
        /does not have the columns readings v1 reads: missing "sensor", "at", "value"; expected "sensor", "at", "value"; found "date", "delay", "distance", "origin", "destination"$/,
      );
    });
  });

  describe('missing, unreadable, truncated and corrupt files fail once, naming the file', () => {
    it('a missing file', async () => {
      await refused({ featureGroup: 'readings', source: { kind: 'csv', path: 'no-such-file.csv' } }, FailureType.InvalidInput, /^cannot read source file "no-such-file\.csv" \(.*no-such-file\.csv\): no such file$/);
    });

    it('a directory', async () => {
      await refused({ featureGroup: 'readings', source: { kind: 'csv', path: 'a-directory' } }, FailureType.InvalidInput, /^source file "a-directory" is a directory$/);
    });

    it('a file that is not NDJSON at all (a system file copied into the root)', async () => {
      file('passwd.ndjson', fs.readFileSync('/etc/passwd', 'utf8'));
      const { workflowId } = await refused(
        { featureGroup: 'readings', source: { kind: 'ndjson', path: 'passwd.ndjson' } },
        FailureType.InvalidInput,
        /^source file \S+passwd\.ndjson is not NDJSON: line 1 is not a JSON object \(one object per line expected\)$/,
      );
      expect(await historyText(temporal.client, workflowId)).not.toContain('root:x:0:0');
    });

    it('a truncated CSV file (the file ends inside a quote) fails once, when it is read; nothing becomes visible', async () => {
      file('cut.csv', 'sensor,at,value\ns1,2024-01-01T10:00:00Z,1\ns2,"2024-01-01T1');
      const group = await store.group('lenient', 1);
      const visible = await store.read(group).count();
      const handle = await start({ featureGroup: 'lenient', source: { kind: 'csv', path: 'cut.csv' } });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe(FailureType.InvalidInput);
      expect(failure.message).toMatch(/^source file \S+cut\.csv is not valid CSV \(truncated or corrupt\?\): Quote Not Closed/);
      expect(await maxActivityAttempt(temporal.client, handle.workflowId)).toBe(1);
      expect(await store.read(group).count()).toBe(visible);
    });

    it('a truncated Parquet file (its footer cut off)', async () => {
      const truncated = path.join(root.dir, 'flights-truncated.parquet');
      const handle = fs.openSync(FLIGHTS_3M_PARQUET, 'r');
      const head = Buffer.alloc(1 << 20);
      fs.readSync(handle, head, 0, head.length, 0);
      fs.closeSync(handle);
      fs.writeFileSync(truncated, head);
      await refused(
        { featureGroup: 'flights', version: 2, source: { kind: 'parquet', path: 'flights-truncated.parquet' } },
        FailureType.InvalidInput,
        new RegExp(`^source file ${escape(fs.realpathSync(truncated))} is not a readable Parquet file \\(truncated or corrupt\\?\\): parquet file invalid \\(footer != PAR1\\)$`),
      );
    });

    it('a corrupt Parquet file (a page that does not decompress) fails its partition once; nothing becomes visible', async () => {
      const corrupt = path.join(root.dir, 'flights-corrupt.parquet');
      const bytes = fs.readFileSync(FLIGHTS_3M_PARQUET);
      const metadata = await parquetMetadataAsync(await asyncBufferFromFile(FLIGHTS_3M_PARQUET));
      const page = Number(metadata.row_groups[0]?.columns[1]?.meta_data?.data_page_offset);
      for (let i = 0; i < 4096; i++) bytes[page + 40 + i] = (i * 131) & 0xff;
      fs.writeFileSync(corrupt, bytes);
      const group = await store.group('flights', 2);
      const visible = await store.read(group).count();
      const handle = await start({ featureGroup: 'flights', version: 2, source: { kind: 'parquet', path: 'flights-corrupt.parquet' }, start: '2001-01-01T00:00:00Z', end: '2001-01-02T00:00:00Z' });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe(FailureType.InvalidInput);
      expect(failure.message).toBe(`source file ${fs.realpathSync(corrupt)} is not a readable Parquet file (truncated or corrupt?): invalid zstd data`);
      expect(await maxActivityAttempt(temporal.client, handle.workflowId)).toBe(1);
      expect(await store.read(group).count()).toBe(visible);
      const [attempt] = (await store.commits(group)).slice(-1);
      expect(attempt).toMatchObject({ status: 'failed', error: expect.stringMatching(/not a readable Parquet file/) });
    });
  });

  describe('timestamps without a zone are read as the definition says, never in the worker’s zone', () => {
    it('CSV and NDJSON: 2001-01-01 10:00 lands at 10:00Z by default, at 04:30Z for Asia/Kolkata', async () => {
      file('zoneless.csv', 'sensor,at,value\ncsv,2001-01-01 10:00,1\n');
      ndjson('zoneless.ndjson', [{ sensor: 'ndjson', at: '2001-01-01T10:00:00', value: 1 }]);
      expect(await run({ featureGroup: 'lenient', source: { kind: 'csv', path: 'zoneless.csv' } })).toMatchObject({ rowsIn: 1, rowsCommitted: 1 });
      expect(await run({ featureGroup: 'lenient', source: { kind: 'ndjson', path: 'zoneless.ndjson' } })).toMatchObject({ rowsIn: 1, rowsCommitted: 1 });
      expect(await run({ featureGroup: 'kolkata', source: { kind: 'csv', path: 'zoneless.csv' } })).toMatchObject({ rowsIn: 1, rowsCommitted: 1 });
      const at = async (group: string) => (await store.read(await store.group(group, 1)).toArray()).map((r) => [r.sensor, (r.at as Date).toISOString()]);
      expect(await at('lenient')).toEqual([
        ['csv', '2001-01-01T10:00:00.000Z'],
        ['ndjson', '2001-01-01T10:00:00.000Z'],
      ]);
      expect(await at('kolkata')).toEqual([['csv', '2001-01-01T04:30:00.000Z']]);
    });

    it('Parquet TIMESTAMP without isAdjustedToUTC: read as UTC by default, shifted for a declared zone', async () => {
      // New York wall-clock Jan 3 is [05:00Z Jan 3, 05:00Z Jan 4).
      const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(FLIGHTS_3M_PARQUET), columns: ['date'], compressors, rowEnd: 300_000 })) as Array<{ date: Date }>;
      const wallJan3 = rows.filter((r) => r.date >= new Date('2001-01-03T00:00:00Z') && r.date < new Date('2001-01-04T00:00:00Z'));
      const result = await run({ featureGroup: 'flights_ny', start: '2001-01-03T05:00:00Z', end: '2001-01-04T05:00:00Z' });
      expect(result.rowsIn).toBe(wallJan3.length);
      const group = await store.group('flights_ny', flightsNewYork.version);
      const [first] = await store.read(group).toArray(1);
      const raw = rows[first?.flight_id as number]?.date as Date;
      expect((first?.event_time as Date).getTime() - raw.getTime()).toBe(5 * 3600_000);
    });
  });

  describe('quarantine: a maximum reject ratio, and no empty "commit"', () => {
    it('30% rejected refuses the commit; the rejects are kept with their reasons; the visible store is unchanged', async () => {
      const lines = Array.from({ length: 10 }, (_, i) => `row_marker_${i},2024-01-01T10:00:00Z,${i < 3 ? -1 - i : i}`);
      file('thirty.csv', `sensor,at,value\n${lines.join('\n')}\n`);
      const group = await store.group('quarantined', 1);
      const visible = await store.read(group).count();
      const handle = await start({ featureGroup: 'quarantined', source: { kind: 'csv', path: 'thirty.csv' } });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe(FailureType.ValidationFailed);
      expect(failure.message).toBe(
        '3 of 10 rows of quarantined v1 were rejected (30%), more than its maximum reject ratio of 5% under the quarantine policy; nothing was committed (commit attempt ' +
          `${(failure.details?.[0] as { commitId: number }).commitId}); the rejected rows are kept with their reasons in feature_rejects. ` +
          'row 0: value: -1 is below the minimum 0 | row 1: value: -2 is below the minimum 0 | row 2: value: -3 is below the minimum 0',
      );
      expect(await store.read(group).count()).toBe(visible);
      const [attempt] = (await store.commits(group)).slice(-1);
      expect(attempt).toMatchObject({ status: 'failed', rowsIn: 10, rowsRejected: 3, validationReport: { refusal: 'reject_ratio', maxRejectRatio: 0.05 } });
      expect((await store.rejects(attempt?.id ?? -1)).map((r) => [r.rowNumber, r.reasons, r.row.sensor])).toEqual([
        [0, ['value: -1 is below the minimum 0'], 'row_marker_0'],
        [1, ['value: -2 is below the minimum 0'], 'row_marker_1'],
        [2, ['value: -3 is below the minimum 0'], 'row_marker_2'],
      ]);
      // Counts and reasons reach Temporal; the rows themselves do not.
      expect(failure.details?.[0]).toMatchObject({ rowsIn: 10, rowsRejected: 3, refusal: 'reject_ratio', reasons: { value: 3 } });
      expect(await historyText(temporal.client, handle.workflowId)).not.toContain('row_marker_');
    });

    it('a run that would commit zero rows from a non-empty source fails saying so', async () => {
      file('all-bad.csv', 'sensor,at,value\ns1,not a time,1\ns2,,2\ns3,2024-01-01T10:00:00Z,x\n');
      const group = await store.group('lenient', 1);
      const visible = await store.read(group).count();
      const failure = await failureOf(run({ featureGroup: 'lenient', source: { kind: 'csv', path: 'all-bad.csv' } }));
      expect(failure.type).toBe(FailureType.ValidationFailed);
      expect(failure.message).toMatch(/^lenient v1 would commit 0 rows: all 3 rows read were rejected; nothing was committed \(commit attempt \d+\)/);
      expect(await store.read(group).count()).toBe(visible);
    });

    it('failure details never carry a raw row: a system-file-like CSV read with ":"', async () => {
      file('accounts.csv', 'name:at:uid\nsecret_user_alpha:2024-01-01:not-a-number\nsecret_user_beta:2024-01-01:1\n');
      const handle = await start({ featureGroup: 'accounts', source: { kind: 'csv', path: 'accounts.csv', delimiter: ':' } });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe(FailureType.ValidationFailed);
      expect(failure.message).toMatch(/^1 of 2 rows of accounts v1 failed validation under the strict policy; .* row 0: uid: expected an integer, got "not-a-number"$/);
      const history = await historyText(temporal.client, handle.workflowId);
      expect(history).not.toContain('secret_user_alpha');
      expect(history).not.toContain('secret_user_beta');
      // The row itself is kept where it belongs.
      const [attempt] = (await store.commits(await store.group('accounts', 1))).slice(-1);
      expect((await store.rejects(attempt?.id ?? -1))[0]?.row).toMatchObject({ name: 'secret_user_alpha' });
    });
  });

  describe('late rows (README): a one-off NDJSON or CSV file of flights', () => {
    it('fti run feature --group flights --version 2 --source-file ./late-rows.ndjson commits the well-formed row (1 in, 1 committed)', async () => {
      const late = ndjson('late-rows.ndjson', [{ flight_id: 9_000_001, date: '2001-01-03T10:05:00', delay: 42, distance: 733, origin: 'ORD', destination: 'LGA' }]);
      const { code, stdout, stderr } = await runFti(
        ['run', 'feature', '--group', 'flights', '--version', '2', '--source-file', late, '--start', '2001-01-03T00:00:00Z', '--end', '2001-01-04T00:00:00Z', '--json'],
        { prefix: temporal.prefix },
      );
      expect(code, stderr).toBe(0);
      const result = JSON.parse(stdout) as FeaturePipelineResult;
      expect(result).toMatchObject({ featureGroup: 'flights', rowsIn: 1, rowsCommitted: 1, rowsRejected: 0 });
      const [row] = await store.online(await store.group('flights', 2), [{ flight_id: 9_000_001 }]);
      expect(row).toMatchObject({ flight_id: 9_000_001, origin: 'ORD', destination: 'LGA', delay: 42, delayed: true, hour: 10, weekday: 3 });
      expect((row?.event_time as Date).toISOString()).toBe('2001-01-03T10:05:00.000Z');
    });

    it('the same row as CSV text commits the same typed values', async () => {
      file('late-rows.csv', 'flight_id,date,delay,distance,origin,destination\n9000002,2001-01-03 11:30,-4,733,ORD,LGA\n');
      const result = await run({ featureGroup: 'flights', version: 2, source: { kind: 'csv', path: 'late-rows.csv' }, start: '2001-01-03T00:00:00Z', end: '2001-01-04T00:00:00Z' });
      expect(result).toMatchObject({ rowsIn: 1, rowsCommitted: 1, rowsRejected: 0 });
      const [row] = await store.online(await store.group('flights', 2), [{ flight_id: 9_000_002 }]);
      expect(row).toMatchObject({ delay: -4, delayed: false, distance: 733, hour: 11 });
      expect((row?.event_time as Date).toISOString()).toBe('2001-01-03T11:30:00.000Z');
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
