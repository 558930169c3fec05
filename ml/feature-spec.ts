/**
 * How the user wants each feature encoded: the input of fitSignature (encoding.ts)
 * and of the train statistics (stats.ts). Its own module so neither imports the other.
 */
import { z } from 'zod';
import { IDENTIFIER } from '../core/names.ts';
import { FeatureDtypeSchema } from './signature.ts';

const name = z.string().regex(IDENTIFIER);

/** How the user wants one feature encoded; validated as part of a training workflow's input. */
export const FeatureSpecSchema = z.discriminatedUnion('encoding', [
  z.strictObject({
    name,
    dtype: z.enum(['float', 'int', 'bool']),
    encoding: z.literal('standardize'),
    /** Adds a 0/1 column that is 1 where the value was null. */
    missingIndicator: z.boolean().default(false),
  }),
  z.strictObject({
    name,
    dtype: FeatureDtypeSchema,
    encoding: z.literal('one_hot'),
    /** Keep only the most frequent categories; the rest encode like unseen ones. */
    maxCategories: z.number().int().min(1).max(10_000).optional(),
  }),
  z.strictObject({
    name,
    dtype: z.enum(['float', 'int', 'bool']),
    encoding: z.literal('bins'),
    /** Quantile bins fitted on the training split (fewer where values repeat). */
    bins: z.number().int().min(2).max(256).default(16),
    /** Adds a 0/1 column that is 1 where the value was null. */
    missingIndicator: z.boolean().default(false),
  }),
  z.strictObject({
    name,
    dtype: z.enum(['float', 'int']),
    encoding: z.literal('cyclical'),
    /** 24 for hour of day, 7 for weekday. */
    period: z.number().positive(),
  }),
]);
export type FeatureSpec = z.input<typeof FeatureSpecSchema>;
