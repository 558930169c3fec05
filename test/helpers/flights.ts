/**
 * A small slice of the flights example in a test schema: flights and the airport
 * rolling delays for [start, end), through the real feature pipeline.
 */
import type { TestTemporal } from './services.ts';
import { uniqueId } from './services.ts';
import { featurePipeline } from '../../workflows/index.ts';

export async function ingestFlights(temporal: TestTemporal, window: { start: string; end: string }): Promise<void> {
  for (const featureGroup of ['flights', 'airport_delays']) {
    await temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId(`ingest-${featureGroup}`), args: [{ featureGroup, ...window }] });
  }
}
