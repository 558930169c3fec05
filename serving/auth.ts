/**
 * Optional bearer-token auth for the prediction server (RFC 6750).
 *
 * With one or more tokens configured (FTI_SERVING_TOKEN, comma-separated so a new
 * token can be added before the old one is retired), every request needs
 * `Authorization: Bearer <token>`, except GET /healthz and, when metrics are public,
 * GET /metrics. Anything else gets a 401 with `WWW-Authenticate: Bearer` and the
 * server's JSON error body, before its body is read.
 *
 * Comparison: the presented token and every configured one are reduced to SHA-256
 * digests (equal length whatever the token's length) and compared with
 * crypto.timingSafeEqual against every configured token, without stopping at a match,
 * so neither the time taken nor the answer says how much of a token was right, how
 * long the right one is, or which of the configured tokens matched.
 */
import crypto from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from './http-errors.ts';

/** The characters of an RFC 6750 bearer token (b64token), and a floor on its length: short tokens are guessable. */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
export const MIN_TOKEN_LENGTH = 16;

const REALM = 'fti-serve';

/**
 * The tokens of `FTI_SERVING_TOKEN` (or --token): one, or several separated by commas
 * (blanks around them ignored). Throws a message naming what is wrong, never the token.
 */
export function parseServingTokens(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  const parts = (typeof value === 'string' ? value.split(',') : value.flatMap((v) => v.split(','))).map((t) => t.trim()).filter((t) => t.length > 0);
  if (parts.length === 0) throw new Error('the serving token list is set but holds no token');
  parts.forEach((token, i) => {
    const which = parts.length > 1 ? `serving token #${i + 1}` : 'the serving token';
    if (token.length < MIN_TOKEN_LENGTH) throw new Error(`${which} is ${token.length} characters long; use at least ${MIN_TOKEN_LENGTH} (e.g. \`openssl rand -hex 32\`)`);
    if (!TOKEN.test(token)) throw new Error(`${which} has characters a bearer token cannot carry; use letters, digits and - . _ ~ + / (e.g. \`openssl rand -hex 32\`)`);
  });
  return parts;
}

export interface AuthOptions {
  tokens: readonly string[];
  /** Routes (fastify route URLs) answered without a token. */
  publicRoutes: readonly string[];
}

/** An onRequest hook enforcing the tokens; undefined when no token is configured (the server is open). */
export function bearerAuth(options: AuthOptions): ((request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>) | undefined {
  if (options.tokens.length === 0) return undefined;
  const digests = options.tokens.map(digest);
  const open = new Set(options.publicRoutes);
  const matches = (token: string): boolean => {
    const presented = digest(token);
    let ok = false;
    // Every comparison runs: no early exit tells which token matched or how many are set.
    for (const d of digests) ok = crypto.timingSafeEqual(presented, d) || ok;
    return ok;
  };
  return async (request, reply) => {
    // routeOptions.url is the matched route pattern (undefined for an unknown route, which needs a token too).
    const route = request.routeOptions.url;
    if (route !== undefined && open.has(route) && (request.method === 'GET' || request.method === 'HEAD')) return undefined;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer +([^ ]+) *$/i.exec(header) : null;
    if (!header) return deny(reply, new HttpError(401, 'unauthorized', 'this server needs a token: send Authorization: Bearer <token>'), `Bearer realm="${REALM}"`);
    if (!match) {
      return deny(reply, new HttpError(401, 'invalid_request', 'the Authorization header must be "Bearer <token>"'), `Bearer realm="${REALM}", error="invalid_request"`);
    }
    if (!matches(match[1] as string)) return deny(reply, new HttpError(401, 'invalid_token', 'the bearer token is not valid'), `Bearer realm="${REALM}", error="invalid_token"`);
    return undefined;
  };
}

/** Answers the 401; returning the reply from an async hook stops the request there. */
function deny(reply: FastifyReply, error: HttpError, challenge: string): FastifyReply {
  return reply.code(401).header('www-authenticate', challenge).send(error.body());
}

function digest(token: string): Buffer {
  return crypto.createHash('sha256').update(token, 'utf8').digest();
}
