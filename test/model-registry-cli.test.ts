import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelArtifact } from '../ml/artifact.ts';
import { ModelRegistry, type AliasChange, type AliasMove, type ModelSummary, type ModelVersion } from '../registry/models/index.ts';
import { REPO_ROOT } from './helpers/processes.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real `fti` entry point, in a process of its own, against the suite's schema. */
function fti(db: TestDb, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'cli', 'main.ts'), 'models', ...args],
      { cwd: REPO_ROOT, env: { ...process.env, DATABASE_URL: db.url, FTI_SCHEMA: db.schema }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function ftiJson<T>(db: TestDb, args: string[]): Promise<T> {
  const result = await fti(db, [...args, '--json']);
  if (result.code !== 0) throw new Error(`fti models ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

// The CLI never loads TensorFlow.js, so a hand-made artifact is enough here.
const artifact: ModelArtifact = {
  modelTopology: { class_name: 'Sequential', config: { name: 'tiny' } },
  weightSpecs: [{ name: 'dense/kernel', shape: [2], dtype: 'float32' }],
  weightData: new Uint8Array(new Float32Array([0.25, -1.5]).buffer),
};

describe('fti models: the command line over the model registry', () => {
  let db: TestDb;

  beforeAll(async () => {
    db = await createTestDb('models_cli');
    const registry = new ModelRegistry({ knex: db.knex });
    for (const auc of [0.61, 0.72, 0.68]) {
      await registry.registerModelVersion({
        name: 'cli_model',
        artifact,
        signature: { inputs: [{ name: 'distance', dtype: 'float', encoding: { kind: 'standardize', mean: 800, std: 400, fill: 800, missingIndicator: false } }], output: { name: 'delayed', kind: 'binary_classifier' } },
        metrics: { auc },
        params: { epochs: 3 },
        lineage: { featureGroupCommits: [{ featureGroup: 'airport_delays', version: 1, commitId: 42 }], tfjsBackend: 'wasm', trainedAt: '2026-11-23T10:00:00.000Z', codeVersion: 'abc1234' },
      });
    }
  });

  afterAll(async () => {
    await db?.close();
  });

  it('promote, promote again, rollback and history move and record the alias (--json)', async () => {
    const first = await ftiJson<AliasChange>(db, ['promote', 'cli_model', '1', '--alias', 'champion', '--reason', 'baseline']);
    expect(first).toMatchObject({ model: 'cli_model', alias: 'champion', kind: 'set', fromVersion: null, toVersion: 1, changed: true });
    const second = await ftiJson<AliasChange>(db, ['promote', 'cli_model', '2', '--alias', 'champion', '--actor', 'ci']);
    expect(second).toMatchObject({ kind: 'set', fromVersion: 1, toVersion: 2, changed: true });
    const back = await ftiJson<AliasChange>(db, ['rollback', 'cli_model', '--alias', 'champion']);
    expect(back).toMatchObject({ kind: 'rollback', fromVersion: 2, toVersion: 1, changed: true });

    const history = await ftiJson<AliasMove[]>(db, ['history', 'cli_model', '--alias', 'champion']);
    expect(history.map((h) => [h.kind, h.fromVersion, h.toVersion, h.actor, h.reason])).toEqual([
      ['set', null, 1, os.userInfo().username, 'baseline'],
      ['set', 1, 2, 'ci', null],
      ['rollback', 2, 1, os.userInfo().username, null],
    ]);

    const shown = await ftiJson<ModelVersion>(db, ['show', 'cli_model@champion']);
    expect(shown).toMatchObject({ model: 'cli_model', version: 1, aliases: ['champion'], metrics: { auc: 0.61 }, lineage: { codeVersion: 'abc1234', tfjsBackend: 'wasm' } });
  });

  it('show takes NAME (latest) and NAME@VERSION; list shows models, and the versions of one model', async () => {
    expect((await ftiJson<ModelVersion>(db, ['show', 'cli_model'])).version).toBe(3);
    expect((await ftiJson<ModelVersion>(db, ['show', 'cli_model@2'])).metrics).toEqual({ auc: 0.72 });
    const models = await ftiJson<ModelSummary[]>(db, ['list']);
    expect(models).toEqual([expect.objectContaining({ name: 'cli_model', latestVersion: 3, versionCount: 3 })]);
    const versions = await ftiJson<ModelVersion[]>(db, ['list', 'cli_model']);
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3]);
  });

  it('prints human-readable tables by default', async () => {
    const history = await fti(db, ['history', 'cli_model', '--alias', 'champion']);
    expect(history.code).toBe(0);
    const lines = history.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^AT\s+KIND\s+FROM\s+TO\s+ACTOR\s+REASON$/);
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/).slice(1, 4))).toEqual([
      ['set', '-', '1'],
      ['set', '1', '2'],
      ['rollback', '2', '1'],
    ]);
    const show = await fti(db, ['show', 'cli_model@2']);
    expect(show.stdout).toMatch(/^model\s+cli_model version 2$/m);
    expect(show.stdout).toMatch(/^inputs\s+distance \(float\): standardize mean=800 std=400/m);
    expect(show.stdout).toMatch(/^commits read\s+airport_delays v1 commit 42$/m);
  });

  it('fails with a clear message and a non-zero exit code on an unknown version or when there is nothing to roll back', async () => {
    const missing = await fti(db, ['show', 'cli_model@9']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("fti: model 'cli_model' has no version 9 (versions: 1, 2, 3)");
    const exhausted = await fti(db, ['rollback', 'cli_model', '--alias', 'champion']);
    expect(exhausted.code).toBe(1);
    expect(exhausted.stderr).toContain('fti: nothing to roll back: cli_model@champion was created pointing at version 1');
  });
});
