import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { runFti } from './helpers/cli.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-cli-run-'));
const at = (hour: number) => new Date(Date.UTC(2024, 6, 1, hour)).toISOString();

// Temperatures of two sensors, hourly from 00:00 to 05:00.
const readings = Array.from({ length: 6 }, (_, h) => [
  { sensor: 's1', at: at(h), celsius: 20 + h },
  { sensor: 's2', at: at(h), celsius: 10 - h },
]).flat();
const readingsFile = path.join(scratch, 'temperatures.ndjson');
fs.writeFileSync(readingsFile, readings.map((r) => JSON.stringify(r)).join('\n'));

const temperatures = defineFeatureGroup({
  name: 'temperatures',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', celsius: 'float' },
  // The definition points nowhere useful: the CLI passes --source-file.
  source: { kind: 'ndjson', path: '/dev/null' },
});

describe('fti run feature: the command line over FtiClient (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  const fti = (args: string[]) => runFti(['run', ...args], { prefix: temporal.prefix });
  const windowArgs = ['--group', 'temperatures', '--version', '1', '--start', at(1), '--end', at(4), '--source-file', readingsFile];

  beforeAll(async () => {
    db = await createTestDb('cli_run');
    temporal = await createTestTemporal('cli-run');
    // --source-file names a file of the scratch directory: the worker's data root.
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project: defineProject({ featureGroups: [temperatures] }), dataRoots: [scratch] });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('--json: progress on stderr, the workflow result as the one JSON line on stdout', async () => {
    const { code, stdout, stderr } = await fti(['feature', ...windowArgs, '--json']);
    expect(code, stderr).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    const result = JSON.parse(stdout) as FeaturePipelineResult;
    expect(result).toMatchObject({ featureGroup: 'temperatures', version: 1, rowsIn: 6, rowsCommitted: 6, rowsInserted: 6, rowsRejected: 0 });
    expect(stderr).toContain(`started featurePipeline features:temperatures:v1:${at(1)}..${at(4)}:source-`);
    expect(stderr).toContain(`on ${temporal.prefix}fti-cpu`);
    // Not a terminal: plain, timestamped progress lines.
    expect(stderr).toMatch(/^\[ *\d+\.\d s\] \w+/m);

    const commits = await new FeatureStore({ knex: db.knex }).commits(await new FeatureStore({ knex: db.knex }).group('temperatures', 1), { status: 'committed' });
    expect(commits.map((c) => c.id)).toEqual([result.commitId]);
  });

  it('the same window again attaches to the completed run and prints a human-readable summary', async () => {
    const { code, stdout, stderr } = await fti(['feature', ...windowArgs]);
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('attached to the existing run featurePipeline features:temperatures:v1:');
    expect(stdout).toMatch(/^featurePipeline completed in \d+\.\d s: temperatures v1 commit \d+: 6 rows committed \(6 inserted, 0 updated, 0 unchanged\), 0 rejected of 6 read$/m);
  });

  it('a failed run exits non-zero with its root cause (and a JSON failure with --json)', async () => {
    const { code, stdout, stderr } = await fti(['feature', '--group', 'no_such_group', '--json']);
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ status: 'failed', failure: { kind: 'failed', type: 'FtiNotFound' } });
    expect(stderr).toMatch(/^fti: featurePipeline features:no_such_group:latest:run-\S+ failed: FtiNotFound: .*no_such_group/m);
  });

  it('a malformed input is refused before anything starts', async () => {
    const bad = await fti(['feature', '--group', 'temperatures', '--start', 'yesterday', '--end', at(2)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('fti: invalid featurePipeline input: start: must be an ISO-8601 timestamp');
    const missing = await fti(['feature']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("required option '--group <name>' not specified");
  });
});
