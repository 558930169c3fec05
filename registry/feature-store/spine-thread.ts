/**
 * A spine thread (spine-helper.ts): reads the rows of the chunks it is asked for from
 * the spine segment files it is given, keeps them as the main thread would
 * (spine-rows.ts), and posts each chunk's spine back, its buffers moved, not copied.
 */
import { parentPort } from 'node:worker_threads';
import { serializeError } from '../../core/threads.ts';
import { KeyIds, newChunkSpine, postedSpine, spineRowKeeper, type ChunkSpine } from './spine-rows.ts';
import { eachSpineFileRow } from './spine-segments.ts';
import type { SpineThreadReply, SpineThreadRequest } from './spine-helper.ts';

const port = parentPort;
if (!port) throw new Error('spine-thread.ts runs as a worker thread (see spine-helper.ts)');

async function read(request: SpineThreadRequest): Promise<void> {
  const { job, files, chunks, layout } = request;
  try {
    const keyIds = layout.keyFields.map(() => new KeyIds());
    const spines = chunks.map(() => newChunkSpine(keyIds.length, true));
    const byIndex = new Map(chunks.map((c, i) => [c, spines[i] as ChunkSpine]));
    const keep = spineRowKeeper(layout, keyIds);
    if (!(await eachSpineFileRow(files, chunks, (row, chunk, kept, i) => keep(byIndex.get(chunk) as ChunkSpine, row, chunk, kept, i)))) {
      port?.postMessage({ type: 'missing', job } satisfies SpineThreadReply);
      return;
    }
    const posted = spines.map(postedSpine);
    const reply: SpineThreadReply = { type: 'done', job, spines: posted.map((p) => p.posted), keyTexts: keyIds.map((k) => [...k.byText.keys()]) };
    port?.postMessage(reply, posted.flatMap((p) => p.transfer));
  } catch (err) {
    port?.postMessage({ type: 'error', job, error: serializeError(err) } satisfies SpineThreadReply);
  }
}

port.on('message', (request: SpineThreadRequest) => void read(request));
