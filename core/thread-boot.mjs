// Entry of the worker's threads (threads.ts): registers tsx's loader, so a thread runs
// the TypeScript sources whatever the host process was started with, then its module.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
