/**
 * GET /models/{name}/{version}/report: a model version's report page, as stored with
 * the version (registry/models/reports.ts). `version` is a number, an alias or
 * `latest`. The server only reads: a version without a stored report (registered
 * before reports were made) answers 404 report_not_found, naming the command that
 * makes one.
 */
import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';

export const REPORT_ROUTE = '/models/:model/:version/report';

export function registerReportRoute(app: FastifyInstance, registry: ModelRegistry): void {
  app.get<{ Params: { model: string; version: string } }>(REPORT_ROUTE, async (request, reply) => {
    const { model, version: ref } = request.params;
    // NotFound (no such model or version) and InvalidInput (a malformed name) answer 404 / 400 through the error handler.
    const version = await registry.resolveModelVersion(model, ref);
    const report = await registry.getReport(model, version.version);
    if (!report) {
      throw new HttpError(404, 'report_not_found', `${model} v${version.version} has no stored report (it was registered before reports were made); make one with \`fti models report ${model}@${version.version}\``, {
        model,
        version: version.version,
      });
    }
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(report.html);
  });
}
