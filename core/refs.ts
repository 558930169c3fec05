/**
 * Version references: the small objects that pass between pipelines (and through
 * Temporal) instead of data. Pure, so the workflow sandbox can load it.
 */
import { z } from 'zod';
import { IDENTIFIER } from './names.ts';

const identifier = z.string().regex(IDENTIFIER, `must match ${IDENTIFIER.source}`);
const positiveInt = z.number().int().positive();

/** One commit of one feature group version: `{ featureGroup: "flights", version: 1, commitId: 42 }`. */
export const FeatureGroupCommitRefSchema = z.object({ featureGroup: identifier, version: positiveInt, commitId: positiveInt });
export type FeatureGroupCommitRef = z.infer<typeof FeatureGroupCommitRefSchema>;

