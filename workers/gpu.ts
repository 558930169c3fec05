import { runPoolWorker } from './worker.ts';

runPoolWorker('gpu').catch((err) => {
  console.error(err);
  process.exit(1);
});
