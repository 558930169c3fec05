import type { Knex } from 'knex';
import type { SourceSpec } from '../definitions.ts';
import { csvSource } from './csv.ts';
import { ndjsonSource } from './ndjson.ts';
import { parquetSource } from './parquet.ts';
import { postgresSource } from './postgres.ts';
import type { Source } from './types.ts';

export function openSource(spec: Exclude<SourceSpec, { kind: 'feature_group' }>, deps: { knex: Knex }): Source {
  switch (spec.kind) {
    case 'parquet':
      return parquetSource(spec.path, spec.timeColumn);
    case 'csv':
      return csvSource(spec.path, spec.delimiter);
    case 'ndjson':
      return ndjsonSource(spec.path);
    case 'postgres':
      return postgresSource(deps.knex, spec.query);
  }
}

export * from './types.ts';
