/**
 * A model version's signature: its ordered input features (with dtypes and the
 * encoding fitted on the training split: normalization statistics, categories) and
 * its output. Training writes it; the registry stores it; batch and online
 * inference validate and encode inputs with it, through one implementation.
 */
import { z } from 'zod';
import { IDENTIFIER } from '../core/names.ts';

const identifier = z.string().regex(IDENTIFIER);

export const FeatureDtypeSchema = z.enum(['float', 'int', 'bool', 'string']);
export type FeatureDtype = z.infer<typeof FeatureDtypeSchema>;

/** How one input feature becomes model input columns. */
export const FeatureEncodingSchema = z.discriminatedUnion('kind', [
  /** (x - mean) / std; null becomes `fill` (before scaling) and sets the missing column if `missingIndicator`. */
  z.object({
    kind: z.literal('standardize'),
    mean: z.number(),
    std: z.number().positive(),
    fill: z.number(),
    missingIndicator: z.boolean().default(false),
  }),
  /** One column per category; unknown and null values encode as all zeros. */
  z.object({ kind: z.literal('one_hot'), categories: z.array(z.string()).min(1) }),
  /**
   * Piecewise linear encoding over bins [edges[i], edges[i+1]) (Gorishniy et al., "On
   * Embeddings for Numerical Features in Tabular Deep Learning", 2022): one column per
   * bin, 1 for a bin wholly below x, 0 for one wholly above, the fraction of the bin
   * below x for the bin x falls in (the first and last bins extend past the edges).
   * The edges are the training split's quantiles. Null encodes as all zeros and sets
   * the missing column if `missingIndicator`.
   */
  z.object({
    kind: z.literal('bins'),
    edges: z
      .array(z.number())
      .min(2)
      .refine((e) => e.every((x, i) => i === 0 || x > (e[i - 1] as number)), 'edges must increase strictly'),
    missingIndicator: z.boolean().default(false),
  }),
  /** sin/cos of 2π·x/period, for hour of day, weekday and other cycles; null encodes as (0, 0), the circle's centre. */
  z.object({ kind: z.literal('cyclical'), period: z.number().positive() }),
  /**
   * Tree encodings (gradient-boosted trees split on values, so they need no scaling):
   * `number` is the value itself, null as NaN (a tree learns where missing values go);
   * `category` is the index of the value in `categories`, any other value
   * categories.length ("other"), null NaN.
   */
  z.object({ kind: z.literal('number') }),
  z.object({ kind: z.literal('category'), categories: z.array(z.string()).min(1) }),
]);
export type FeatureEncoding = z.infer<typeof FeatureEncodingSchema>;

export const SignatureInputSchema = z.object({
  name: identifier,
  dtype: FeatureDtypeSchema,
  encoding: FeatureEncodingSchema,
});
export type SignatureInput = z.infer<typeof SignatureInputSchema>;

export const ModelSignatureSchema = z.object({
  inputs: z.array(SignatureInputSchema).min(1),
  output: z.object({ name: identifier, kind: z.enum(['binary_classifier', 'regressor']) }),
});
export type ModelSignature = z.infer<typeof ModelSignatureSchema>;
