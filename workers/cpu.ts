import { runPoolWorker } from './worker.ts';

runPoolWorker('cpu').catch((err) => {
  console.error(err);
  process.exit(1);
});
