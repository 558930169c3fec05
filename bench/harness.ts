/**
 * Shared pieces of `npm run bench` (contract: ../shared/BENCH.md): the figure shape,
 * repeated measurement with medians, percentiles, and the services a part needs.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { loadConfig, type FtiConfig } from '../core/config.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createKnex, migrate } from '../registry/db/index.ts';
import { freePort } from '../cli/services/ports.ts';
import { startPostgres, type PostgresHandle } from '../cli/services/postgres.ts';
import { resolveTemporalCli } from '../cli/services/temporal-cli.ts';
import { startTemporalDevServer, type DevServer } from '../cli/services/temporal-server.ts';

export interface Figure {
  name: string;
  value: number;
  unit: string;
  rows?: number;
  /** What the figure is compared with, measured in the same run. */
  baseline?: string;
  baseline_value?: number;
  /** Cost relative to the baseline: time / baseline time (or baseline rate / rate). */
  ratio?: number;
  /** Anything else worth keeping beside the figure (backend, per-stage times…). */
  details?: Record<string, unknown>;
}

export interface BenchContext {
  config: FtiConfig;
  log: Logger;
  /** Postgres with the migrated bench schema (`fti_bench`). */
  databaseUrl: string;
  schema: string;
  knex: Knex;
  /** A Temporal dev server, started on first use. */
  temporal(): Promise<{ address: string }>;
  /** Runs when the bench ends (before the servers stop). */
  onClose(fn: () => Promise<void>): void;
}

export type BenchPart = (ctx: BenchContext) => Promise<Figure[]>;

/** A time figure in seconds (or, `inMs`, milliseconds for short ones): the median of `samples` (seconds) beside the median of its baseline's, with their ratio. */
export function secondsFigure(name: string, samples: number[], baseline: { what: string; samples: number[] }, extra: Pick<Figure, 'rows' | 'details'> & { inMs?: boolean } = {}): Figure {
  const scale = extra.inMs ? 1000 : 1;
  const digits = extra.inMs ? 1 : 2;
  const value = median(samples);
  const baselineValue = median(baseline.samples);
  return {
    name,
    value: round(value * scale, digits),
    unit: extra.inMs ? 'ms' : 's',
    ...(extra.rows === undefined ? {} : { rows: extra.rows }),
    baseline: baseline.what,
    baseline_value: round(baselineValue * scale, digits),
    ratio: timeRatio(value, baselineValue),
    details: { ...extra.details, runs: samples.map((x) => round(x * scale, digits + 1)), baselineRuns: baseline.samples.map((x) => round(x * scale, digits + 1)) },
  };
}

/** Cost ratio of a time against its baseline time. */
export function timeRatio(value: number, baseline: number): number {
  return round(value / baseline, 3);
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of nothing');
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Runs `fn` `warmup` times unmeasured, then `runs` times; returns the samples in ms. */
export async function measure(fn: () => Promise<unknown>, { warmup = 1, runs = 5 } = {}): Promise<{ median: number; samples: number[] }> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return { median: median(samples), samples };
}

/**
 * Brings the bench schema to the state a store settles into after a bulk write, before
 * anything is measured on it: every table vacuumed and analyzed, and a checkpoint.
 * Otherwise autovacuum and the checkpointer catch up with the millions of rows just
 * written while a figure is measured, and not while its baseline is (it runs later):
 * the two would be measured on different machines. pgbench vacuums before it
 * measures for the same reason.
 */
export async function settleStore(ctx: Pick<BenchContext, 'knex' | 'schema' | 'log'>, after: string): Promise<void> {
  const t0 = performance.now();
  const tables = (await ctx.knex.raw<{ rows: Array<{ name: string }> }>("select format('%I.%I', schemaname, tablename) as name from pg_tables where schemaname = ?", [ctx.schema])).rows.map((r) => r.name);
  // One statement: VACUUM cannot run in a transaction, and knex.raw sends it on its own.
  if (tables.length) await ctx.knex.raw(`vacuum (analyze) ${tables.join(', ')}`);
  await ctx.knex.raw('checkpoint');
  ctx.log(`store settled after ${after}`, { tables: tables.length, seconds: round((performance.now() - t0) / 1000, 1) });
}

export function machineInfo(tfjsBackend: string | undefined): Record<string, unknown> {
  let gitSha: string | undefined;
  try {
    gitSha = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    gitSha = undefined;
  }
  return {
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    tfjsBackend,
    gitSha,
  };
}

/** Starts what the bench needs; `close()` stops what it started. */
export async function createBenchContext(): Promise<BenchContext & { close(): Promise<void> }> {
  const config = loadConfig();
  const log = createLogger('bench', (l) => console.error(l));
  const schema = 'fti_bench';
  // A fresh embedded cluster per bench run (deleted afterwards), unless DATABASE_URL is set.
  const postgres: PostgresHandle = await startPostgres(config, {
    port: config.databaseUrl ? undefined : await freePort(),
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'fti-bench-pg-')),
    ephemeral: true,
    // The bench measures speed, not privileges: it works as the cluster's superuser.
    provision: false,
    log: (l) => log(l),
  });
  const benchUrl = postgres.adminUrl ?? postgres.urls.owner;
  const knex = createKnex({ url: benchUrl, schema, poolMax: 12, applicationName: 'fti-bench' });
  await knex.raw('drop schema if exists ?? cascade', [schema]);
  await migrate(knex, schema);
  let temporal: Promise<DevServer> | undefined;
  const closers: Array<() => Promise<void>> = [];
  return {
    config,
    log,
    databaseUrl: benchUrl,
    schema,
    knex,
    temporal: async () => {
      temporal ??= (async () => {
        const cliPath = await resolveTemporalCli(config, { allowBuild: true, log: (l) => log(l) });
        return startTemporalDevServer({ cliPath, port: await freePort(), headless: true, log: (l) => log(l) });
      })();
      return { address: (await temporal).address };
    },
    onClose: (fn) => closers.push(fn),
    close: async () => {
      for (const fn of closers.reverse()) await fn().catch((err: unknown) => log(`close failed: ${String(err)}`));
      if (temporal) await (await temporal).stop();
      await knex.destroy();
      await postgres.stop();
    },
  };
}
