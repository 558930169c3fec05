/**
 * Chooses the TensorFlow.js backend a worker trains and predicts with.
 *
 *   GPU pool: tfjs-node-gpu (CUDA)  -> WebGPU on Dawn (`webgpu` package, over Vulkan)
 *             -> WASM when the only WebGPU adapter is a software one
 *   CPU pool: tfjs-node (libtensorflow) -> WASM -> plain JS
 *
 * A software Vulkan device (Mesa's lavapipe on a machine without a GPU) runs the
 * WebGPU code path correctly but 3-8x slower than WASM (measured: 23k vs 67k samples/s, and 7k vs
 * 53k once WASM's transposed products went to XNNPACK, wasm-kernels.ts), so the GPU pool only uses it
 * when forced (FTI_TFJS_BACKEND=webgpu, as the tests that prove the GPU path do).
 *
 * tfjs-node(-gpu) need libtensorflow downloaded at install time, which fails on a
 * machine without internet; they are optional dependencies, so the loader simply
 * moves on. FTI_TFJS_BACKEND forces one backend and fails loudly if it cannot load.
 * The loaded backend is logged by the worker and recorded on every model version.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import type { Pool } from '../core/task-queues.ts';
import { installColumnSums, installUntransposedProducts } from './wasm-kernels.ts';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export type Tf = typeof tfTypes;

export interface LoadedBackend {
  /** tfjs backend name as `tf.getBackend()` reports it. */
  name: BackendName;
  /** The npm package that provides it. */
  package: string;
  /** What it runs on, as far as the backend can tell (adapter, CUDA, threads). */
  device: string;
  tf: Tf;
  /** Why earlier candidates were skipped, for the worker's start-up log. */
  skipped: string[];
}

export const BACKEND_ORDER: Record<Pool, BackendName[]> = {
  gpu: ['tensorflow', 'webgpu', 'wasm'],
  cpu: ['tensorflow', 'wasm', 'cpu'],
};

let loaded: Promise<LoadedBackend> | undefined;

/**
 * Loads the first backend that works for this pool (once per process: tfjs holds
 * one global engine, so a process has exactly one backend).
 */
export function loadBackend(pool: Pool, forced?: BackendName): Promise<LoadedBackend> {
  loaded ??= pickBackend(forced ? [forced] : BACKEND_ORDER[pool], pool === 'gpu' ? 'tfjs-node-gpu' : 'tfjs-node', { allowSoftwareGpu: forced === 'webgpu' });
  return loaded;
}

async function pickBackend(candidates: BackendName[], nativePackage: 'tfjs-node-gpu' | 'tfjs-node', options: { allowSoftwareGpu: boolean }): Promise<LoadedBackend> {
  const skipped: string[] = [];
  for (const name of candidates) {
    try {
      const backend = await tryBackend(name, nativePackage, options);
      return { ...backend, skipped };
    } catch (err) {
      skipped.push(`${name}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could be loaded (${skipped.join('; ')})`);
}

async function tryBackend(name: BackendName, nativePackage: 'tfjs-node-gpu' | 'tfjs-node', options: { allowSoftwareGpu: boolean }): Promise<Omit<LoadedBackend, 'skipped'>> {
  switch (name) {
    case 'tensorflow': {
      const pkg = `@tensorflow/${nativePackage}`;
      // A variable specifier: the package is optional and usually absent.
      const tf = (await import(/* @vite-ignore */ pkg)) as Tf;
      await tf.ready();
      assertBackend(tf, 'tensorflow');
      return { name, package: pkg, device: nativePackage === 'tfjs-node-gpu' ? 'CUDA (libtensorflow)' : 'CPU (libtensorflow)', tf };
    }
    case 'webgpu': {
      const { create, globals } = await import('webgpu');
      Object.assign(globalThis, globals);
      const gpu = create([]);
      // A discrete GPU before an integrated or software one, where a machine has several.
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Error('no WebGPU adapter (is a Vulkan driver installed? on CPU-only machines: mesa-vulkan-drivers >= 24 for lavapipe)');
      const software = isSoftwareAdapter(adapter);
      if (software && !options.allowSoftwareGpu) {
        throw new Error(`the only WebGPU adapter is a software one (${adapter.info.description || adapter.info.device}); WASM is faster here (FTI_TFJS_BACKEND=webgpu forces it)`);
      }
      // tfjs-backend-webgpu looks for navigator.gpu, which Node 20 does not have.
      Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
      const tf = await import('@tensorflow/tfjs');
      await import('@tensorflow/tfjs-backend-webgpu');
      if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") failed');
      await tf.ready();
      const info = adapter.info;
      const device = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ') || 'unknown adapter';
      return { name, package: '@tensorflow/tfjs-backend-webgpu', device: `WebGPU (Dawn/Vulkan): ${device}`, tf };
    }
    case 'wasm': {
      const tf = await import('@tensorflow/tfjs');
      await import('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
      await tf.ready();
      installUntransposedProducts(tf);
      installColumnSums(tf);
      return { name, package: '@tensorflow/tfjs-backend-wasm', device: 'CPU (WebAssembly)', tf };
    }
    case 'cpu': {
      const tf = await import('@tensorflow/tfjs');
      await tf.setBackend('cpu');
      await tf.ready();
      return { name, package: '@tensorflow/tfjs', device: 'CPU (plain JavaScript)', tf };
    }
  }
}

/** Mesa's lavapipe/llvmpipe, SwiftShader and other CPU-backed adapters. */
function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const info = adapter.info;
  const text = `${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/.test(text) || (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
}

function assertBackend(tf: Tf, expected: BackendName): void {
  const actual = tf.getBackend();
  if (actual !== expected) throw new Error(`expected backend ${expected}, tfjs reports ${actual}`);
}
