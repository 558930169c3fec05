/**
 * Every error the server answers with has one JSON shape:
 *
 *   { "statusCode": 404, "error": "unknown_entity", "message": "…", "details": { … } }
 *
 * `error` is a stable code for programs; `message` says what is wrong in words.
 * Domain errors (FtiError) and fastify's own (schema validation, body limits,
 * content types, malformed JSON) are mapped here, in one place; anything else is a
 * 500 whose details stay in the server log.
 */
import type { FastifyError } from 'fastify';
import { FailureType, FtiError } from '../core/errors.ts';

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
  details?: Record<string, unknown>;
}

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  body(): ErrorBody {
    return { statusCode: this.statusCode, error: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

const FASTIFY_CODES: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_request' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json' },
};

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof FtiError) {
    switch (err.type) {
      case FailureType.NotFound:
        return new HttpError(404, 'not_found', err.message);
      case FailureType.InvalidInput:
        return new HttpError(400, 'invalid_request', err.message);
      case FailureType.Conflict:
        return new HttpError(409, 'conflict', err.message);
      default:
        return new HttpError(500, 'internal_error', err.message);
    }
  }
  const fastifyError = err as Partial<FastifyError> | undefined;
  if (fastifyError?.validation) return new HttpError(400, 'invalid_request', fastifyError.message ?? 'invalid request');
  const known = fastifyError?.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) return new HttpError(known.status, known.code, fastifyError?.message ?? known.code);
  // Body parse errors (malformed JSON) come as SyntaxErrors with a 400 status.
  const status = fastifyError?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return new HttpError(status, err instanceof SyntaxError ? 'invalid_json' : 'bad_request', fastifyError?.message ?? 'bad request');
  return new HttpError(500, 'internal_error', 'internal error; the server log has the details');
}
