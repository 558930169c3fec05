/**
 * `fti models …`: inspect the model registry, move aliases, write reports (model-report.ts). Human-readable by
 * default; `--json` prints one JSON document for scripts.
 */
import os from 'node:os';
import { Argument, InvalidArgumentError, type Command } from 'commander';
import type { FeatureEncoding, ModelSignature } from '../../ml/signature.ts';
import { LATEST, ModelRegistry, type AliasChange, type AliasMove, type ModelSummary, type ModelVersion } from '../../registry/models/index.ts';
import { withKnex } from '../db.ts';
import { registerModelReportCommand } from './model-report.ts';
import { keyValues, table, time } from '../format.ts';

interface JsonOption {
  json?: boolean;
}

interface MoveOptions extends JsonOption {
  alias: string;
  actor?: string;
  reason?: string;
}

export function registerModelCommands(program: Command): void {
  const models = program.command('models').description('model registry: versions, lineage, aliases');

  models
    .command('list')
    .description('list models, or the versions of one model')
    .argument('[name]', 'a model: list its versions')
    .option('--json', 'print JSON')
    .action(async (name: string | undefined, opts: JsonOption) => {
      await withRegistry(async (registry) => {
        if (name === undefined) return print(opts, await registry.listModels(), formatModels);
        return print(opts, await registry.listModelVersions(name), formatVersions);
      });
    });

  models
    .command('show')
    .description('show one version: signature, metrics, params, lineage, artifact')
    .argument('<ref>', `NAME, NAME@VERSION or NAME@ALIAS (NAME alone means NAME@${LATEST})`, parseModelRef)
    .option('--json', 'print JSON')
    .action(async (ref: ModelRefArg, opts: JsonOption) => {
      await withRegistry(async (registry) => print(opts, await registry.resolveModelVersion(ref.name, ref.ref), formatVersion));
    });

  models
    .command('promote')
    .description('point an alias at a version (recorded in the alias history, announced to servers)')
    .argument('<name>', 'model')
    .addArgument(new Argument('<version>', 'version number').argParser(parseVersion))
    .requiredOption('--alias <alias>', 'alias to move, e.g. champion')
    .option('--reason <text>', 'why, for the history')
    .option('--actor <who>', 'who, for the history (default: the OS user)')
    .option('--json', 'print JSON')
    .action(async (name: string, version: number, opts: MoveOptions) => {
      await withRegistry(async (registry) =>
        print(opts, await registry.setAlias(name, opts.alias, version, { actor: opts.actor ?? osUser(), reason: opts.reason }), formatChange),
      );
    });

  models
    .command('rollback')
    .description('move an alias back: undoes its latest move that has not been undone')
    .argument('<name>', 'model')
    .requiredOption('--alias <alias>', 'alias to move back')
    .option('--reason <text>', 'why, for the history')
    .option('--actor <who>', 'who, for the history (default: the OS user)')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: MoveOptions) => {
      await withRegistry(async (registry) => print(opts, await registry.rollback(name, opts.alias, { actor: opts.actor ?? osUser(), reason: opts.reason }), formatChange));
    });

  models
    .command('history')
    .description('every move of an alias, oldest first')
    .argument('<name>', 'model')
    .requiredOption('--alias <alias>', 'alias')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: MoveOptions) => {
      await withRegistry(async (registry) => print(opts, await registry.aliasHistory(name, opts.alias), (moves) => formatHistory(name, opts.alias, moves)));
    });

  registerModelReportCommand(models, parseModelRef);
}

function withRegistry<T>(fn: (registry: ModelRegistry) => Promise<T>): Promise<T> {
  return withKnex((knex) => fn(new ModelRegistry({ knex })));
}

function print<T>(opts: JsonOption, value: T, format: (value: T) => string): void {
  console.log(opts.json ? JSON.stringify(value, null, 2) : format(value));
}

export interface ModelRefArg {
  name: string;
  ref: string;
}

/** NAME, NAME@VERSION or NAME@ALIAS. */
export function parseModelRef(value: string): ModelRefArg {
  const parts = value.split('@');
  const [name, ref = LATEST] = parts;
  if (parts.length > 2 || !name || ref === '') throw new InvalidArgumentError('expected NAME, NAME@VERSION or NAME@ALIAS');
  return { name, ref };
}

function parseVersion(value: string): number {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError('a version is a positive integer');
  return Number(value);
}

function osUser(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER;
  }
}

// ---- human-readable output ----

function formatModels(models: ModelSummary[]): string {
  if (models.length === 0) return 'no models registered';
  return table(
    ['MODEL', 'VERSIONS', 'LATEST', 'ALIASES', 'UPDATED'],
    models.map((m) => [m.name, String(m.versionCount), m.latestVersion === null ? '-' : String(m.latestVersion), formatAliasMap(m.aliases), time(m.updatedAt)]),
  );
}

function formatVersions(versions: ModelVersion[]): string {
  if (versions.length === 0) return 'no versions';
  return table(
    ['VERSION', 'ALIASES', 'CREATED', 'METRICS', 'BACKEND', 'SHA256'],
    versions.map((v) => [String(v.version), v.aliases.join(',') || '-', time(v.createdAt), formatNumbers(v.metrics) || '-', v.lineage.tfjsBackend, v.artifact.sha256.slice(0, 12)]),
  );
}

function formatVersion(v: ModelVersion): string {
  const l = v.lineage;
  const lines: Array<[string, string]> = [
    ['model', `${v.model} version ${v.version}${v.aliases.length ? ` (aliases: ${v.aliases.join(', ')})` : ''}`],
    ['created', time(v.createdAt)],
  ];
  if (v.description) lines.push(['description', v.description]);
  lines.push(['artifact', `${v.artifact.format}, ${bytes(v.artifact.sizeBytes)}, sha256 ${v.artifact.sha256}`]);
  lines.push(...formatSignature(v.signature));
  lines.push(['metrics', formatNumbers(v.metrics) || '-']);
  lines.push(['params', Object.entries(v.params).map(([k, p]) => `${k}=${JSON.stringify(p)}`).join('  ') || '-']);
  lines.push(['feature view', l.featureView ? `${l.featureView.name} v${l.featureView.version}` : '-']);
  lines.push(['training dataset', l.trainingDatasetId === undefined ? '-' : String(l.trainingDatasetId)]);
  lines.push(['commits read', l.featureGroupCommits.map((c) => `${c.featureGroup} v${c.version} commit ${c.commitId}`).join(', ') || '-']);
  lines.push(['workflow', l.workflowId ? `${l.workflowId}${l.runId ? ` run ${l.runId}` : ''}` : '-']);
  lines.push(['code version', l.codeVersion ?? '-']);
  lines.push(['tfjs backend', l.tfjsBackend]);
  lines.push(['trained', `${l.trainedAt}${l.trainingSeconds === undefined ? '' : ` in ${l.trainingSeconds.toFixed(1)} s`}`]);
  return keyValues(lines);
}

function formatSignature(s: ModelSignature): Array<[string, string]> {
  const rows: Array<[string, string]> = s.inputs.map((input, i) => {
    const encoding = describeEncoding(input.encoding);
    return [i === 0 ? 'inputs' : '', `${input.name} (${input.dtype}): ${encoding}`];
  });
  rows.push(['output', `${s.output.name} (${s.output.kind})`]);
  return rows;
}

function describeEncoding(e: FeatureEncoding): string {
  switch (e.kind) {
    case 'standardize':
      return `standardize mean=${num(e.mean)} std=${num(e.std)} fill=${num(e.fill)}${e.missingIndicator ? ' +missing' : ''}`;
    case 'one_hot':
      return `one_hot ${e.categories.length} categories`;
    case 'bins':
      return `bins ${e.edges.length - 1} from ${num(e.edges[0] ?? 0)} to ${num(e.edges.at(-1) ?? 0)}${e.missingIndicator ? ' +missing' : ''}`;
    case 'cyclical':
      return `cyclical period=${num(e.period)}`;
    case 'number':
      return 'number (missing as NaN)';
    case 'category':
      return `category ${e.categories.length} categories (+other)`;
  }
}

function formatChange(c: AliasChange): string {
  if (!c.changed) return `${c.model}@${c.alias} already points at version ${c.toVersion}; nothing changed`;
  const verb = c.kind === 'rollback' ? 'rolled back' : 'moved';
  return `${c.model}@${c.alias} ${verb}: ${c.fromVersion ?? '(new)'} -> ${c.toVersion}`;
}

function formatHistory(name: string, alias: string, moves: AliasMove[]): string {
  if (moves.length === 0) return `${name}@${alias} has never been set`;
  return table(
    ['AT', 'KIND', 'FROM', 'TO', 'ACTOR', 'REASON'],
    moves.map((m) => [time(m.at), m.kind, m.fromVersion === null ? '-' : String(m.fromVersion), String(m.toVersion), m.actor ?? '-', m.reason ?? '-']),
  );
}



function formatAliasMap(aliases: Record<string, number>): string {
  return Object.entries(aliases).map(([a, v]) => `${a}=${v}`).join(',') || '-';
}

function formatNumbers(values: Record<string, number>): string {
  return Object.entries(values).map(([k, v]) => `${k}=${num(v)}`).join('  ');
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)));
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

