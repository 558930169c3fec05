/**
 * The reference model of `auc_gap_to_reference`: scikit-learn's
 * HistGradientBoostingClassifier (bench/reference_gbdt.py) trained and tested on the
 * very rows of a training dataset (its td_<id> table: the view's features, the label,
 * `_split`), exported with COPY … TO STDOUT as CSV.
 *
 * Python comes from BENCH_PYTHON when set; else a virtual environment in the user's
 * cache (~/.cache/fti/bench-venv, outside the repository), created and given
 * scikit-learn (and pandas, for a fast CSV read) through pip's own configuration the
 * first time; else a system python3 that already has scikit-learn. Without Python or
 * the packages, the figure says why instead of failing the bench.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { REPO_ROOT } from '../cli/services/worker-process.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { FeatureStats } from '../ml/stats.ts';
import type { TrainingDataset } from '../registry/training/index.ts';
import { round, type BenchContext } from './harness.ts';

const run = promisify(execFile);

export interface ReferenceResult {
  auc: number;
  rows: number;
  trainRows: number;
  validationRows: number;
  validationAuc: number;
  iterations: number;
  fitSeconds: number;
  [key: string]: unknown;
}

export type ReferenceOutcome = { ok: true; result: ReferenceResult; python: string; exportSeconds: number; totalSeconds: number } | { ok: false; reason: string };

/** Trains and tests the reference GBDT on `dataset`'s own splits. */
export async function referenceGbdt(ctx: BenchContext, dataset: TrainingDataset, view: FeatureViewDefinition): Promise<ReferenceOutcome> {
  const t0 = performance.now();
  const python = await findPython(ctx);
  if (!python.ok) return python;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-bench-gbdt-'));
  try {
    const csv = path.join(dir, 'rows.csv');
    const specFile = path.join(dir, 'spec.json');
    const numeric = view.features.filter((f) => f.encoding.encoding !== 'one_hot');
    const categorical = view.features.filter((f) => f.encoding.encoding === 'one_hot');
    const spec = {
      label: view.label.name,
      numeric: numeric.map((f) => f.name),
      // The project model's own one-hot categories (the train split's most frequent).
      categorical: Object.fromEntries(categorical.map((f) => [f.name, categoriesOf(dataset.statistics[f.name])])),
    };
    fs.writeFileSync(specFile, JSON.stringify(spec));

    const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
    const number = (f: (typeof numeric)[number]) => (f.type === 'bool' ? `(${q(f.name)})::int as ${q(f.name)}` : q(f.name));
    const columns = [...numeric.map(number), ...categorical.map((f) => `(${q(f.name)})::text as ${q(f.name)}`), `(${q(view.label.name)})::int as ${q(view.label.name)}`, '_split'];
    const te = performance.now();
    const client = (await ctx.knex.client.acquireConnection()) as pg.PoolClient;
    try {
      await pipeline(client.query(copyTo(`copy (select ${columns.join(', ')} from ${q(dataset.tableName)}) to stdout with (format csv, header true)`)), fs.createWriteStream(csv));
    } finally {
      await ctx.knex.client.releaseConnection(client);
    }
    const exportSeconds = (performance.now() - te) / 1000;
    ctx.log('reference GBDT: dataset exported', { dataset: dataset.id, seconds: round(exportSeconds, 1), mb: round(fs.statSync(csv).size / 2 ** 20, 0) });

    const { stdout } = await run(python.path, [path.join(REPO_ROOT, 'bench', 'reference_gbdt.py'), '--csv', csv, '--spec', specFile], {
      cwd: REPO_ROOT,
      timeout: 30 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as ReferenceResult;
    return { ok: true, result, python: python.path, exportSeconds, totalSeconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    return { ok: false, reason: `reference GBDT failed: ${firstLines(err)}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A Python with scikit-learn, or why there is none. */
async function findPython(ctx: BenchContext): Promise<{ ok: true; path: string } | { ok: false; reason: string }> {
  const hasSklearn = async (py: string) =>
    run(py, ['-c', 'import sklearn, numpy'], { timeout: 60_000 }).then(
      () => true,
      () => false,
    );
  const given = process.env.BENCH_PYTHON;
  if (given) return (await hasSklearn(given)) ? { ok: true, path: given } : { ok: false, reason: `BENCH_PYTHON=${given} cannot import scikit-learn` };

  const venv = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'fti', 'bench-venv');
  const venvPython = path.join(venv, 'bin', 'python');
  if (fs.existsSync(venvPython) && (await hasSklearn(venvPython))) return { ok: true, path: venvPython };
  if (await hasSklearn('python3')) return { ok: true, path: 'python3' };
  try {
    await run('python3', ['--version'], { timeout: 30_000 });
  } catch (err) {
    return { ok: false, reason: `no python3 here (${firstLines(err)})` };
  }
  try {
    ctx.log(`reference GBDT: installing scikit-learn into ${venv}`);
    if (!fs.existsSync(venvPython)) await run('python3', ['-m', 'venv', venv], { timeout: 5 * 60_000 });
    await run(venvPython, ['-m', 'pip', 'install', '--quiet', 'scikit-learn', 'pandas'], { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    return { ok: false, reason: `could not install scikit-learn into ${venv}: ${firstLines(err)}` };
  }
  return (await hasSklearn(venvPython)) ? { ok: true, path: venvPython } : { ok: false, reason: `scikit-learn installed into ${venv} but cannot be imported` };
}

function categoriesOf(stats: FeatureStats | undefined): string[] {
  return stats && 'categories' in stats ? stats.categories : [];
}

function firstLines(err: unknown): string {
  const e = err as { message?: string; stderr?: string };
  const text = [e.message, e.stderr].filter(Boolean).join('\n') || String(err);
  return text.split('\n').filter(Boolean).slice(-6).join(' | ').slice(0, 1000);
}
