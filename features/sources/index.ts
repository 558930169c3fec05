import type { FileSourceSpec, SourceSpec } from '../definitions.ts';
import { csvSource } from './csv.ts';
import { ndjsonSource } from './ndjson.ts';
import { parquetSource } from './parquet.ts';
import { postgresSource } from './postgres.ts';
import type { QueryRows, Source, SourceOptions } from './types.ts';

export function openSource(spec: Exclude<SourceSpec, { kind: 'feature_group' }>, deps: { queryRows: QueryRows } & SourceOptions): Source {
  const options: SourceOptions = { timeZone: deps.timeZone, checkColumns: deps.checkColumns };
  switch (spec.kind) {
    case 'parquet':
      return parquetSource(spec.path, spec.timeColumn, options);
    case 'csv':
      return csvSource(spec.path, spec.delimiter, options);
    case 'ndjson':
      return ndjsonSource(spec.path, options);
    case 'postgres':
      return postgresSource(deps.queryRows, spec.query);
  }
}

export function isFileSource(spec: SourceSpec): spec is FileSourceSpec {
  return spec.kind === 'parquet' || spec.kind === 'csv' || spec.kind === 'ndjson';
}

export { resolveSourceFile, short, type DataRootPolicy } from './files.ts';
export * from './types.ts';
