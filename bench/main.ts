/**
 * npm run bench -- [--only PART[,PART...]] [--json FILE]
 *
 * Each part lives in bench/parts/<part>.ts and returns figures, each beside its
 * baseline measured in the same run. Never part of `npm test`.
 */
import fs from 'node:fs';
import { Command } from 'commander';
import { createBenchContext, machineInfo, type BenchPart, type Figure } from './harness.ts';
import { renderSvg, scalingSpec } from './plot.ts';

export const PARTS = ['features', 'dataset', 'training', 'registry', 'inference', 'online', 'orchestration', 'scaleout', 'scaling', 'hourly'] as const;
type Part = (typeof PARTS)[number];

/** The parts implemented so far; each module's default export is a BenchPart. */
const PART_MODULES: Partial<Record<Part, () => Promise<{ default: BenchPart }>>> = {
  registry: () => import('./parts/registry.ts'),
  inference: () => import('./parts/inference.ts'),
  online: () => import('./parts/online.ts'),
  features: () => import('./parts/features.ts'),
  dataset: () => import('./parts/dataset.ts'),
  training: () => import('./parts/training.ts'),
  orchestration: () => import('./parts/orchestration.ts'),
  scaleout: () => import('./parts/scaleout.ts'),
  scaling: () => import('./parts/scaling.ts'),
  hourly: () => import('./parts/hourly.ts'),
};

async function main(): Promise<void> {
  const program = new Command('bench')
    .option('--only <parts>', `comma-separated parts: ${PARTS.join(',')}`)
    .option('--json <file>', 'write the figures as JSON')
    .parse(process.argv);
  const opts = program.opts<{ only?: string; json?: string }>();
  // scaling (up to 30M rows) and hourly (a year of hourly commits) run for hours: only when asked for by name.
  const wanted = (opts.only ? opts.only.split(',').map((p) => p.trim()) : PARTS.filter((p) => p !== 'scaling' && p !== 'hourly')) as Part[];
  for (const p of wanted) if (!PARTS.includes(p)) throw new Error(`unknown part ${p}; parts: ${PARTS.join(', ')}`);

  const ctx = await createBenchContext();
  const figures: Figure[] = [];
  let tfjsBackend: string | undefined;
  try {
    for (const part of wanted) {
      const load = PART_MODULES[part];
      if (!load) {
        ctx.log(`part ${part}: not implemented yet, skipped`);
        continue;
      }
      const run = (await load()).default;
      ctx.log(`part ${part}: running`);
      const got = await run(ctx);
      for (const f of got) {
        figures.push(f);
        const backend = f.details?.backend;
        if (typeof backend === 'string') tfjsBackend ??= backend;
        const beside = f.baseline_value !== undefined ? `  (baseline ${f.baseline}: ${f.baseline_value} ${f.unit}, ratio ${f.ratio})` : '';
        console.log(`${f.name.padEnd(28)} ${String(f.value).padStart(12)} ${f.unit}${beside}`);
      }
    }
  } finally {
    await ctx.close();
  }
  if (opts.json) {
    fs.writeFileSync(opts.json, `${JSON.stringify({ machine: machineInfo(tfjsBackend), figures }, null, 2)}\n`);
    console.log(`wrote ${opts.json}`);
    const spec = scalingSpec(figures);
    if (spec) {
      const svg = `${opts.json.replace(/\.json$/, '')}.scaling.svg`;
      fs.writeFileSync(svg, await renderSvg(spec));
      console.log(`wrote ${svg}`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
