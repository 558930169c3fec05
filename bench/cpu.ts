/**
 * CPU time read from /proc (Linux), for benchmarks that say where a stage's time went
 * beside its wall time: on a shared machine the wall time of one stage moved by half
 * between runs of the same code while its CPU time moved far less.
 */
import fs from 'node:fs';

/** Clock ticks a second in /proc's CPU times (USER_HZ: 100 on Linux, whatever the kernel's HZ). */
const TICKS_PER_SECOND = 100;

/** User and system CPU seconds in a /proc `stat` file (a process's or a thread's); undefined when it cannot be read. */
function statCpuSeconds(path: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  // Fields 14 and 15 (utime, stime), counted after the parenthesised name, which may hold spaces.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** User and system CPU seconds a process has used so far (NaN when it cannot be read). */
export function processCpuSeconds(pid: number | undefined): number {
  return statCpuSeconds(`/proc/${pid}/stat`) ?? Number.NaN;
}

/** CPU used so far by this process, by its main thread, and by each Postgres process on this machine. */
export interface CpuSample {
  process: number;
  mainThread: number;
  postgres: ReadonlyMap<number, number>;
}

export function cpuSample(): CpuSample {
  const postgres = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let name: string;
    try {
      name = fs.readFileSync(`/proc/${entry}/comm`, 'utf8');
    } catch {
      continue;
    }
    const seconds = name.startsWith('postgres') ? statCpuSeconds(`/proc/${entry}/stat`) : undefined;
    if (seconds !== undefined) postgres.set(Number(entry), seconds);
  }
  return { process: processCpuSeconds(process.pid), mainThread: statCpuSeconds(`/proc/self/task/${process.pid}/stat`) ?? Number.NaN, postgres };
}

/** CPU seconds used between two samples. */
export interface CpuUsed {
  /** This process, every thread. */
  process: number;
  /** Its main (JavaScript) thread. */
  mainThread: number;
  /** Postgres' processes. One that ended between the samples is not counted; one that began is, whole. */
  postgres: number;
}

export function cpuUsed(before: CpuSample, after: CpuSample): CpuUsed {
  let postgres = 0;
  for (const [pid, seconds] of after.postgres) postgres += seconds - (before.postgres.get(pid) ?? 0);
  return { process: after.process - before.process, mainThread: after.mainThread - before.mainThread, postgres };
}

/** Two amounts of CPU used, added (`a` absent: `b`). */
export function addCpu(a: CpuUsed | undefined, b: CpuUsed): CpuUsed {
  return a ? { process: a.process + b.process, mainThread: a.mainThread + b.mainThread, postgres: a.postgres + b.postgres } : b;
}
