/**
 * Source files: where a workflow input may point (the data roots), and which failures to
 * read one are final. A missing, unreadable, truncated or corrupt file fails the run at once
 * (a non-retryable FtiInvalidInput naming the file); a transient I/O error (EIO, EMFILE, a
 * stale NFS handle, …) stays a plain Error, which Temporal retries.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FtiError, invalid } from '../../core/errors.ts';

/** Where a workflow input's source file may be: under a data root, or exactly a definition's own file. */
export interface DataRootPolicy {
  /** FTI_DATA_ROOTS: directories (resolved, symlinks followed). */
  roots: string[];
  /** The definitions' own source files, always allowed (only those exact files). */
  files: string[];
}

/** Errors that retrying cannot fix, as a person reads them. */
const FINAL: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the name is too long',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  EINVAL: 'invalid argument',
};

/**
 * Resolves a workflow input's file path on this worker: relative paths against each data
 * root, then every symlink (realpath). Allowed only when the real file lies inside a data
 * root, or is exactly one of the definitions' own files; otherwise a non-retryable
 * FtiInvalidInput naming the path and the roots. Nothing of the file is read. A file outside
 * the roots gets the same answer whether it exists or not.
 */
export async function resolveSourceFile(requested: string, policy: DataRootPolicy): Promise<string> {
  const roots = await realRoots(policy.roots);
  const own = new Set(await Promise.all(policy.files.map((f) => realpath(f).then((r) => r ?? path.resolve(f)))));
  const candidates = path.isAbsolute(requested) ? [path.normalize(requested)] : roots.map((r) => path.resolve(r, requested));
  let missingInside: { candidate: string; code: string } | undefined;
  for (const candidate of candidates) {
    const real = await realpath(candidate, (code) => {
      if (roots.some((r) => inside(candidate, r))) missingInside ??= { candidate, code };
    });
    if (real === undefined) continue;
    if (own.has(real)) return real;
    if (roots.some((r) => inside(real, r))) return assertReadableKind(requested, real);
  }
  if (missingInside) {
    throw invalid(`cannot read source file ${JSON.stringify(requested)} (${missingInside.candidate}): ${FINAL[missingInside.code] ?? missingInside.code}`, {
      path: requested,
      code: missingInside.code,
    });
  }
  const where = roots.length ? roots.join(path.delimiter) : 'none configured';
  throw invalid(
    `source file ${JSON.stringify(requested)} is outside the data roots: a workflow input may name only a file under FTI_DATA_ROOTS (${where}) ` +
      `or one of the definitions' own source files; relative paths are resolved against the data roots, symbolic links are followed`,
    { path: requested, dataRoots: roots },
  );
}

/**
 * The error to raise for a failure while opening or reading `file`: final ones (missing,
 * unreadable, a corrupt or truncated file) as a non-retryable FtiInvalidInput naming the
 * file; transient I/O errors unchanged, so they are retried.
 */
export function sourceFileError(file: string, format: 'CSV' | 'NDJSON' | 'Parquet', err: unknown): unknown {
  if (err instanceof FtiError) return err;
  const code = errnoCode(err);
  if (code !== undefined) {
    const reason = FINAL[code];
    return reason ? invalid(`cannot read source file ${file}: ${reason} (${code})`, { path: file, code }) : err;
  }
  const message = short(err instanceof Error ? err.message : String(err));
  // csv-parse's own errors (CSV_QUOTE_NOT_CLOSED, …): the text is malformed.
  const csvCode = (err as { code?: unknown } | null)?.code;
  if (format === 'CSV' && typeof csvCode === 'string' && csvCode.startsWith('CSV_')) return invalid(`source file ${file} is not valid CSV (truncated or corrupt?): ${message}`, { path: file, code: csvCode });
  // hyparquet throws plain errors (a bad footer, a page that does not decompress, a read past the end).
  if (format === 'Parquet') return invalid(`source file ${file} is not a readable Parquet file (truncated or corrupt?): ${message}`, { path: file });
  return err;
}

/** A file name or message for an error text: at most `max` characters. */
export function short(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function errnoCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; errno?: unknown; syscall?: unknown } | null;
  if (!e || typeof e.code !== 'string') return undefined;
  return typeof e.errno === 'number' || typeof e.syscall === 'string' || /^E[A-Z]+$/.test(e.code) ? e.code : undefined;
}

async function realRoots(roots: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const root of roots) {
    const real = await realpath(root);
    if (real !== undefined) out.push(real);
  }
  return out;
}

/** realpath, or undefined (with `onFinal(code)`) when the path cannot be resolved for a final reason. */
async function realpath(p: string, onFinal: (code: string) => void = () => {}): Promise<string | undefined> {
  try {
    return await fs.promises.realpath(p);
  } catch (err) {
    const code = errnoCode(err);
    if (code && FINAL[code]) {
      onFinal(code);
      return undefined;
    }
    throw err;
  }
}

function inside(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..';
}

/** A regular file or a pipe; a directory or a device is refused. */
async function assertReadableKind(requested: string, real: string): Promise<string> {
  const stat = await fs.promises.stat(real);
  if (stat.isFile() || stat.isFIFO()) return real;
  throw invalid(`source file ${JSON.stringify(requested)} is ${stat.isDirectory() ? 'a directory' : 'not a regular file'}`, { path: requested });
}
