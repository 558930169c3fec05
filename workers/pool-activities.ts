/**
 * Which activities each worker pool serves. Tests build the same maps with a knex
 * bound to their own schema.
 */
import type { Knex } from 'knex';
import { createFeatureActivities } from '../activities/feature.ts';
import { createInferenceActivities } from '../activities/inference.ts';
import { createSystemCheckActivities, createWorkerInfoActivities } from '../activities/system.ts';
import { createGpuTrainingActivities, createTrainingActivities } from '../activities/training.ts';
import type { Pool } from '../core/task-queues.ts';
import type { FtiProject } from '../features/project.ts';
import type { LoadedBackend } from '../ml/backend.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';

export interface PoolDeps {
  knex: Knex;
  /** The TensorFlow.js backend this process loaded (null: none, e.g. in some tests). */
  backend: LoadedBackend | null;
  /** Its name, recorded by what the pool produces. */
  tfjsBackend: string | null;
  /** The deployment's definitions (FTI_DEFINITIONS). */
  project: FtiProject;
}

export function cpuActivities(deps: PoolDeps) {
  return {
    ...createWorkerInfoActivities({ pool: 'cpu', tfjsBackend: deps.tfjsBackend }),
    ...createSystemCheckActivities({ knex: deps.knex }),
    ...createFeatureActivities({ store: new FeatureStore(deps.knex), catalog: deps.project.featureGroups }),
    ...createInferenceActivities({ knex: deps.knex, backend: deps.backend }),
    ...createTrainingActivities({ knex: deps.knex, views: deps.project.featureViews, backend: deps.backend }),
  };
}

export function gpuActivities(deps: PoolDeps) {
  return {
    ...createWorkerInfoActivities({ pool: 'gpu', tfjsBackend: deps.tfjsBackend }),
    ...createGpuTrainingActivities({ knex: deps.knex, backend: deps.backend }),
  };
}

export function poolActivities(pool: Pool, deps: PoolDeps): Record<string, (...args: never[]) => Promise<unknown>> {
  return pool === 'cpu' ? cpuActivities(deps) : gpuActivities(deps);
}
