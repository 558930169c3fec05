/**
 * Which activities each worker pool serves, and the composition root that builds the
 * stores they are handed. Tests build the same maps with a knex bound to their own
 * schema.
 */
import type { Knex } from 'knex';
import { createCompactionActivities } from '../activities/compaction.ts';
import { createFeatureActivities } from '../activities/feature.ts';
import type { FeatureReaders } from '../activities/feature-reader.ts';
import { createGcActivities } from '../activities/gc.ts';
import { createInferenceActivities } from '../activities/inference.ts';
import { createModelReportActivities } from '../activities/model-report.ts';
import { createMonitoringActivities } from '../activities/monitoring.ts';
import { createSkewActivities } from '../activities/skew.ts';
import { createSystemCheckActivities, createWorkerInfoActivities } from '../activities/system.ts';
import { createGpuTrainingActivities, createTrainingActivities } from '../activities/training.ts';
import { loadConfig, type Retention } from '../core/config.ts';
import type { Pool } from '../core/task-queues.ts';
import type { FtiProject } from '../features/project.ts';
import type { LoadedBackend } from '../ml/backend.ts';
import { SystemCheckStore } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { MonitoringStore } from '../registry/monitoring/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import { TrainingStore } from '../registry/training/index.ts';

export interface PoolDeps {
  knex: Knex;
  /** The TensorFlow.js backend this process loaded (null: none, e.g. in some tests). */
  backend: LoadedBackend | null;
  /** Its name, recorded by what the pool produces. */
  tfjsBackend: string | null;
  /** The deployment's definitions (FTI_DEFINITIONS). */
  project: FtiProject;
  /** Directories a workflow input's source file must resolve into (FTI_DATA_ROOTS); default: none, only the definitions' own files. */
  dataRoots?: string[];
  /** How old a leftover must be before the gc workflow reaps it; default: FTI_GC_RETENTION. */
  gcRetention?: Retention;
  /** Memory (MB) a training run may keep its splits in between epochs; default: FTI_EPOCH_CACHE_MB. */
  epochCacheMb?: number;
  /** Threads batch inference reads its features on (the caller closes them); none: the activities' own thread. */
  featureReaders?: FeatureReaders;
}

export function cpuActivities(deps: PoolDeps) {
  const { knex, backend } = deps;
  const features = new FeatureStore({ knex });
  const training = new TrainingStore({ knex });
  const registry = new ModelRegistry({ knex });
  return {
    ...createWorkerInfoActivities({ pool: 'cpu', tfjsBackend: deps.tfjsBackend }),
    ...createSystemCheckActivities({ checks: new SystemCheckStore({ knex }) }),
    ...createFeatureActivities({ store: features, catalog: deps.project.featureGroups, dataRoots: deps.dataRoots ?? [] }),
    ...createInferenceActivities({ features, predictions: new PredictionStore({ knex }), registry, backend, featureReaders: deps.featureReaders }),
    ...createTrainingActivities({ features, training, registry, views: deps.project.featureViews, backend }),
    ...createGcActivities({ features, training, defaultRetention: deps.gcRetention ?? loadConfig().gcRetention }),
    ...createCompactionActivities({ features }),
    ...createMonitoringActivities({ features, training, registry, monitoring: new MonitoringStore({ knex }), views: deps.project.featureViews }),
    ...createModelReportActivities({ features, training, registry, backend }),
    ...createSkewActivities({ features, registry, monitoring: new MonitoringStore({ knex }) }),
  };
}

export function gpuActivities(deps: PoolDeps) {
  const { knex, backend } = deps;
  return {
    ...createWorkerInfoActivities({ pool: 'gpu', tfjsBackend: deps.tfjsBackend }),
    ...createGpuTrainingActivities({ features: new FeatureStore({ knex }), training: new TrainingStore({ knex }), backend, epochCacheBytes: (deps.epochCacheMb ?? loadConfig().epochCacheMb) * 2 ** 20 }),
  };
}

export function poolActivities(pool: Pool, deps: PoolDeps): Record<string, (...args: never[]) => Promise<unknown>> {
  return pool === 'cpu' ? cpuActivities(deps) : gpuActivities(deps);
}
