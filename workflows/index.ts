// The barrel the workers' workflow bundle is built from: every workflow type.
export { systemCheck } from './system-check.ts';
export { featurePipeline } from './feature-pipeline.ts';
export { batchInference } from './batch-inference.ts';
export { trainingPipeline } from './training-pipeline.ts';
export { ftiPipeline } from './fti-pipeline.ts';
export { gc } from './gc.ts';
export { compaction } from './compaction.ts';
export { monitoringPipeline } from './monitoring.ts';
export { skewCheck } from './skew-check.ts';
