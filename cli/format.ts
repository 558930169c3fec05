/** Plain-text output shared by the CLI's human-readable (non --json) modes. */

/** Columns padded to their widest cell, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `key  value` lines with the keys aligned. */
export function keyValues(lines: Array<[string, string]>): string {
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** A UTC time as `2001-01-03 10:00:00.000Z`. */
export function time(d: Date): string {
  return new Date(d).toISOString().replace('T', ' ');
}
