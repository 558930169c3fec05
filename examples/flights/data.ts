/** Where the vega-datasets npm package keeps the US flights of 2001. */
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
// The package exports only its JS entry (build/index.js); the data sits beside it.
const root = path.resolve(path.dirname(require.resolve('vega-datasets')), '..');

export const FLIGHTS_3M_PARQUET = path.join(root, 'data', 'flights-3m.parquet');
export const FLIGHTS_20K_JSON = path.join(root, 'data', 'flights-20k.json');
