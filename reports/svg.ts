/**
 * Vega-Lite specs rendered to SVG in Node: vega-lite compiles the spec to Vega, and a
 * headless Vega view (renderer 'none': no browser, no canvas) writes the SVG. Model
 * reports and the bench's plots both draw through here.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export type { TopLevelSpec };

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
