/**
 * Expectations compiled to SQL over a commit's staged rows: one expression per
 * expectation that yields a reason text or null, gathered into a text[] per row.
 */
import type { Expectation } from '../../features/definitions.ts';
import type { FeatureType } from '../../features/schema.ts';
import { id, join, kw, sql, type Sql } from '../db/index.ts';

const ARRAY_TYPE: Record<FeatureType, string> = {
  float: 'double precision[]',
  int: 'bigint[]',
  bool: 'boolean[]',
  string: 'text[]',
  timestamp: 'timestamptz[]',
};

/** `array_remove(array[<reason or null>, ...], null)`, or undefined when nothing is checked per row. */
export function reasonsExpression(expectations: Expectation[], types: Record<string, FeatureType>): Sql | undefined {
  const checks: Sql[] = [];
  for (const e of expectations) {
    switch (e.kind) {
      case 'not_null':
        checks.push(sql`case when ${id(e.column)} is null then ${`${e.column}: must not be null`} end`);
        break;
      case 'range':
        if (e.min !== undefined) {
          checks.push(sql`case when ${id(e.column)} < ${e.min} then ${`${e.column}: `} || ${id(e.column)}::text || ${` is below the minimum ${e.min}`} end`);
        }
        if (e.max !== undefined) {
          checks.push(sql`case when ${id(e.column)} > ${e.max} then ${`${e.column}: `} || ${id(e.column)}::text || ${` is above the maximum ${e.max}`} end`);
        }
        break;
      case 'allowed_values': {
        const type = types[e.column] ?? 'string';
        checks.push(
          sql`case when ${id(e.column)} is not null and not (${id(e.column)} = any(${e.values}::${kw(ARRAY_TYPE[type])})) then ${`${e.column}: `} || ${id(e.column)}::text || ${` is not one of ${JSON.stringify(e.values)}`} end`,
        );
        break;
      }
      case 'unique_key':
        // Checked across rows, not per row (see the commit's duplicate handling).
        break;
    }
  }
  if (checks.length === 0) return undefined;
  return sql`array_remove(array[${join(checks, ', ')}]::text[], null)`;
}
