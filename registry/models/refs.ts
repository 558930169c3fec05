/**
 * Version references (`3`, `'champion'`, `'latest'`): parsing, the WHERE clause that
 * resolves one inside a query, and the NotFound message when nothing matches.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { assertName, assertVersionNumber, findModelId, modelNotFound } from './locks.ts';
import { LATEST, type ParsedRef, type VersionRef } from './types.ts';

export function parseRef(ref: VersionRef): ParsedRef {
  if (typeof ref === 'number') return { kind: 'version', version: assertVersionNumber(ref) };
  if (typeof ref !== 'string') throw new FtiError(FailureType.InvalidInput, `a version reference is a number, an alias or '${LATEST}', got ${JSON.stringify(ref)}`);
  if (/^[0-9]+$/.test(ref)) return { kind: 'version', version: assertVersionNumber(Number(ref)) };
  if (ref === LATEST) return { kind: 'latest' };
  return { kind: 'alias', alias: assertName(ref, 'alias') };
}

export function formatRef(name: string, ref: ParsedRef): string {
  switch (ref.kind) {
    case 'version':
      return `${name}@${ref.version}`;
    case 'alias':
      return `${name}@${ref.alias}`;
    case 'latest':
      return `${name}@${LATEST}`;
  }
}

/** Narrows a query over `model_versions as v` joined to `models as m` to one model's ref. */
export function whereRef(query: Knex.QueryBuilder, name: string, ref: ParsedRef): Knex.QueryBuilder {
  query.where('m.name', name);
  switch (ref.kind) {
    case 'version':
      return query.where('v.version', ref.version);
    case 'latest':
      return query.orderBy('v.version', 'desc').limit(1);
    case 'alias':
      return query.join('model_aliases as ra', (j) => {
        j.on('ra.model_id', 'v.model_id').andOn('ra.version', 'v.version');
      }).where('ra.alias', ref.alias);
  }
}

/**
 * Why `ref` matched nothing, as a NotFound with a message that says what does exist.
 * Only runs on the failure path, so lookups stay one round trip.
 */
export async function refNotFound(knex: Knex, name: string, ref: ParsedRef): Promise<FtiError> {
  const id = await findModelId(knex, name);
  if (id === undefined) return modelNotFound(name);
  const versions = await knex('model_versions').where({ model_id: id }).orderBy('version').pluck<number[]>('version');
  const details = { model: name, ref: formatRef(name, ref) };
  switch (ref.kind) {
    case 'latest':
      return new FtiError(FailureType.NotFound, `model '${name}' has no versions`, details);
    case 'version':
      return new FtiError(FailureType.NotFound, `model '${name}' has no version ${ref.version} (${describeVersions(versions)})`, details);
    case 'alias': {
      const aliases = await knex('model_aliases').where({ model_id: id }).orderBy('alias').pluck<string[]>('alias');
      const known = aliases.length ? `aliases: ${aliases.join(', ')}` : 'it has no aliases';
      return new FtiError(FailureType.NotFound, `model '${name}' has no alias '${ref.alias}' (${known})`, details);
    }
  }
}

function describeVersions(versions: number[]): string {
  if (versions.length === 0) return 'it has no versions';
  if (versions.length <= 10) return `versions: ${versions.join(', ')}`;
  return `${versions.length} versions, latest ${versions[versions.length - 1]}`;
}
