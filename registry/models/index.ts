/**
 * registry/models: the model registry. It owns models, their numbered versions with
 * artifacts (weights in Postgres, sha256-checked on load), signatures, metrics,
 * params and lineage, and aliases with their append-only history and NOTIFY on
 * every move. The training pipeline writes versions here; batch inference and the
 * online server read them. It never reads feature data or predictions.
 *
 * Every writing method is one transaction under a per-model lock, retried on
 * serialization failures. Pass a knex transaction as `knex` to make a registry
 * call part of a larger transaction.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Knex } from 'knex';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import { artifactHandler } from '../../ml/artifact.ts';
import { aliasAt, aliasHistory, getAlias, listAliases, rollbackAlias, setAlias, versionHeldAlias } from './aliases.ts';
import { loadArtifact } from './artifacts.ts';
import { assertName, assertVersionNumber } from './locks.ts';
import { parseRef } from './refs.ts';
import { getModelReport, saveModelReport, type ModelReportInput, type StoredModelReport } from './reports.ts';
import type {
  AliasChange,
  AliasMove,
  AliasMoveOptions,
  LoadedArtifact,
  ModelAlias,
  ModelLineage,
  ModelSummary,
  ModelVersion,
  RegisterModelVersionInput,
  RegisterResult,
  VersionRef,
} from './types.ts';
import * as versions from './versions.ts';

export class ModelRegistry {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  /** Creates version N+1 of `name` (and the model, on first use), or returns the version an earlier call with the same idempotency key made. */
  async registerModelVersion(input: RegisterModelVersionInput): Promise<RegisterResult> {
    return versions.registerModelVersion(this.knex, input);
  }

  async getModelVersion(name: string, version: number): Promise<ModelVersion> {
    return versions.resolveModelVersion(this.knex, name, { kind: 'version', version: assertVersionNumber(version) });
  }

  /** `ref`: a version number, an alias, or 'latest'. NotFound says what exists instead. */
  async resolveModelVersion(name: string, ref: VersionRef): Promise<ModelVersion> {
    return versions.resolveModelVersion(this.knex, name, parseRef(ref));
  }

  async listModels(): Promise<ModelSummary[]> {
    return versions.listModels(this.knex);
  }

  async listModelVersions(name: string): Promise<ModelVersion[]> {
    return versions.listModelVersions(this.knex, name);
  }

  /** The artifact, after checking its size and sha256 (IntegrityError on mismatch). */
  async loadArtifact(name: string, ref: VersionRef): Promise<LoadedArtifact> {
    assertName(name, 'model name');
    return loadArtifact(this.knex, name, parseRef(ref));
  }

  /**
   * `tf.loadLayersModel(registry.handler(name, ref))`. An alias is resolved when tfjs
   * loads; to record exactly which version served a prediction, resolve first and
   * pass the number (or use loadArtifact, which says which version it loaded).
   */
  handler(name: string, ref: VersionRef): tf.io.IOHandler {
    assertName(name, 'model name');
    const parsed = parseRef(ref);
    return artifactHandler(() => loadArtifact(this.knex, name, parsed));
  }

  /** Undefined when no version records `metric`; ties go to the newer version. */
  async bestVersion(name: string, metric: string, { mode = 'max' }: { mode?: 'max' | 'min' } = {}): Promise<ModelVersion | undefined> {
    return versions.bestVersion(this.knex, name, metric, mode);
  }

  /** Refused with Conflict while an alias points at the version. */
  async deleteModelVersion(name: string, version: number): Promise<void> {
    return versions.deleteModelVersion(this.knex, name, version);
  }

  /** Which model versions were trained on data from this feature group commit. */
  async versionsUsingCommit(commit: FeatureGroupCommitRef): Promise<ModelVersion[]> {
    return versions.versionsUsingCommit(this.knex, commit);
  }

  /** What data, workflow and code made a version. */
  async lineageOf(name: string, ref: VersionRef): Promise<ModelLineage> {
    return (await this.resolveModelVersion(name, ref)).lineage;
  }

  /**
   * Atomically points `alias` at `version`, records the move and announces it.
   * `{ expectedVersion }` makes it a compare-and-set under the model's lock (null: the
   * alias must not exist yet): Conflict, and no move, if the alias moved in between.
   */
  async setAlias(name: string, alias: string, version: number, options?: AliasMoveOptions): Promise<AliasChange> {
    return setAlias(this.knex, name, alias, version, options);
  }

  async getAlias(name: string, alias: string): Promise<ModelAlias> {
    return getAlias(this.knex, name, alias);
  }

  async listAliases(name: string): Promise<ModelAlias[]> {
    return listAliases(this.knex, name);
  }

  /** Undoes the latest move of `alias` that has not been undone; Conflict when there is none. */
  async rollback(name: string, alias: string, options?: AliasMoveOptions): Promise<AliasChange> {
    return rollbackAlias(this.knex, name, alias, options);
  }

  async aliasHistory(name: string, alias: string): Promise<AliasMove[]> {
    return aliasHistory(this.knex, name, alias);
  }

  /** Whether the version holds or ever held an alias; NotFound when the model or version does not exist. */
  async versionHeldAlias(name: string, version: number): Promise<boolean> {
    return versionHeldAlias(this.knex, name, version);
  }

  /** Stores the version's report (replacing an earlier one); NotFound when the version does not exist. */
  async saveReport(name: string, version: number, report: ModelReportInput): Promise<StoredModelReport> {
    return saveModelReport(this.knex, name, version, report);
  }

  /** The version's stored report; undefined when none was made yet. */
  async getReport(name: string, version: number): Promise<StoredModelReport | undefined> {
    return getModelReport(this.knex, name, version);
  }

  /** Which version the alias pointed at, at `time` (undefined: not set yet then). */
  async aliasAt(name: string, alias: string, time: Date): Promise<number | undefined> {
    return aliasAt(this.knex, name, alias, time);
  }
}

export { ALIAS_LISTENER_APPLICATION_NAME, LISTENER_KEEPALIVE_DEFAULTS, listenForAliasChanges, type AliasSubscription, type ListenerKeepalive, type ListenerState } from './alias-listener.ts';
export { parseRef } from './refs.ts';
export type { ModelReportInput, ModelReportSource, StoredModelReport } from './reports.ts';
export { ALIAS_CHANNEL, LATEST } from './types.ts';
export type * from './types.ts';
