/** What a worker says about itself in a system check (workflow, activities and store share it). */
export interface WorkerInfo {
  pool: 'cpu' | 'gpu';
  taskQueue: string;
  hostname: string;
  pid: number;
  tfjsBackend: string | null;
}
