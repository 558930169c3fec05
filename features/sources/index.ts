import type { SourceSpec } from '../definitions.ts';
import { csvSource } from './csv.ts';
import { ndjsonSource } from './ndjson.ts';
import { parquetSource } from './parquet.ts';
import { postgresSource } from './postgres.ts';
import type { QueryRows, Source } from './types.ts';

export function openSource(spec: Exclude<SourceSpec, { kind: 'feature_group' }>, deps: { queryRows: QueryRows }): Source {
  switch (spec.kind) {
    case 'parquet':
      return parquetSource(spec.path, spec.timeColumn);
    case 'csv':
      return csvSource(spec.path, spec.delimiter);
    case 'ndjson':
      return ndjsonSource(spec.path);
    case 'postgres':
      return postgresSource(deps.queryRows, spec.query);
  }
}

export * from './types.ts';
