/**
 * The pipelines a user can start, one entry each (client/pipelines/*.ts): FtiClient,
 * `fti run`, `fti schedule` and the README read this table. Adding a pipeline is
 * adding an entry (and its input/output types to PipelineIO in pipeline-spec.ts).
 */
import { allSpec } from './pipelines/all.ts';
import { featureSpec } from './pipelines/feature.ts';
import { inferSpec } from './pipelines/infer.ts';
import { trainSpec } from './pipelines/train.ts';
import type { PipelineName, PipelineSpec } from './pipeline-spec.ts';

export type * from './pipeline-spec.ts';

export const PIPELINES: { readonly [P in PipelineName]: PipelineSpec<P> } = {
  feature: featureSpec,
  train: trainSpec,
  infer: inferSpec,
  all: allSpec,
};

export const PIPELINE_NAMES = Object.keys(PIPELINES) as PipelineName[];

export function pipelineSpec<P extends PipelineName>(name: P): PipelineSpec<P> {
  return PIPELINES[name];
}

/** The pipeline whose workflow type this is (for schedules and runs started elsewhere). */
export function pipelineOfWorkflowType(workflowType: string): PipelineName | undefined {
  return PIPELINE_NAMES.find((p) => PIPELINES[p].workflowType === workflowType);
}
