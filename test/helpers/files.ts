/** Source files for a test's own feature groups, in a scratch directory of its own. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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
