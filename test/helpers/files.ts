/** Source files for a test's own feature groups, in a scratch directory of its own. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';

export function scratchFiles(label: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `fti-${label}-`));
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  return {
    dir,
    file,
    /** One JSON object per line. */
    ndjson: (name: string, rows: object[]): string => file(name, rows.map((r) => JSON.stringify(r)).join('\n')),
  };
}

/**
 * A Parquet file of `rowGroups` x `rowsPerGroup` sensor readings: reading i is sensor
 * i % `sensors`, one minute apart per sensor from 2024-01-01 (so (sensor, at) is unique),
 * value i. Columns sensor (STRING), at (TIMESTAMP), value (DOUBLE).
 */
export function writeReadingsParquet(file: string, { rowGroups, rowsPerGroup, sensors }: { rowGroups: number; rowsPerGroup: number; sensors: number }): void {
  const rows = rowGroups * rowsPerGroup;
  parquetWriteFile({
    filename: file,
    rowGroupSize: rowsPerGroup,
    columnData: [
      { name: 'sensor', data: Array.from({ length: rows }, (_, i) => `s${i % sensors}`), type: 'STRING' },
      { name: 'at', data: Array.from({ length: rows }, (_, i) => new Date(Date.UTC(2024, 0, 1) + Math.floor(i / sensors) * 60_000)), type: 'TIMESTAMP' },
      { name: 'value', data: Array.from({ length: rows }, (_, i) => i), type: 'DOUBLE' },
    ],
  });
}
