/**
 * Plots of bench figures as SVG, rendered in Node by reports/svg.ts (vega-lite and vega,
 * no browser, no canvas): `npm run bench -- --only scaling --json out.json` also writes
 * `out.scaling.svg`.
 */
import { renderSvg, type TopLevelSpec } from '../reports/svg.ts';
import type { Figure } from './harness.ts';

export { renderSvg };

/** The scaling part's figures: seconds and peak RSS against rows, one line per stage (log scales). */
export function scalingSpec(figures: readonly Figure[]): TopLevelSpec | undefined {
  const points = figures.flatMap((f) => {
    const stage = f.details?.['stage'];
    if (typeof stage !== 'string' || f.rows === undefined || !f.name.startsWith('scaling_')) return [];
    return [{ stage, rows: f.rows, measure: f.unit === 'MB' ? 'peak RSS (MB)' : 'seconds', value: f.value }];
  });
  if (points.length === 0) return undefined;
  const panel = (measure: string, title: string) => ({
    title,
    width: 320,
    height: 240,
    transform: [{ filter: `datum.measure === '${measure}'` }],
    mark: { type: 'line' as const, point: true },
    encoding: {
      x: { field: 'rows', type: 'quantitative' as const, scale: { type: 'log' as const }, title: 'flights (rows)' },
      y: { field: 'value', type: 'quantitative' as const, scale: { type: measure === 'seconds' ? ('log' as const) : ('linear' as const) }, title: measure },
      color: { field: 'stage', type: 'nominal' as const },
    },
  });
  return {
    title: 'fti scaling: generated flights (npm run bench -- --only scaling)',
    data: { values: points },
    hconcat: [panel('seconds', 'time per stage'), panel('peak RSS (MB)', 'peak RSS per stage (GPU worker for training, CPU worker otherwise)')],
  };
}
