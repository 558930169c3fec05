/**
 * Faster matrix products on the WASM backend, for training.
 *
 * tfjs-backend-wasm 4.22 sends a product whose operand is transposed (matMul(a, b,
 * transposeA, transposeB), and its fused form) to a plain loop instead of XNNPACK's
 * SIMD kernel: measured on a 512×68 batch, xᵀ·dy took 3.8 ms against 0.5 ms for an
 * explicit transpose followed by the untransposed product, the same numbers.
 * Backpropagation through a dense layer is made of exactly those two products
 * (xᵀ·dy for the kernel's gradient, dy·wᵀ for the input's), so they were most of an
 * MLP's training step.
 *
 * That loop is also wrong in one case: the fused product with transposeB and a bias
 * adds the bias to the wrong elements (b·cᵀ + bias, relu on 5×4 and 3×4 inputs: the
 * CPU backend and a plain-JavaScript product agree with each other, not with it).
 * Layers do not use that form, but nothing else stops a caller.
 *
 * The kernels registered here transpose the flagged operands and hand the untransposed
 * product to the original kernel. Only the forward computation changes: gradients are
 * registered per kernel name and stay tfjs's own.
 *
 * The transposes are done here in JavaScript (swapLastAxes), not by the backend's
 * Transpose kernel: that one is a plain loop too, 271 µs for a 1024×68 batch against
 * 72 µs here, and a step of the flights MLP transposes three such matrices (the
 * batch and both hidden layers' outputs, for their kernels' gradients). A transpose
 * only moves values, so the bits are the same.
 */
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import type { Tf } from './backend.ts';

const PRODUCTS = ['BatchMatMul', '_FusedMatMul'] as const;
/** Marks the kernels installed here, so installing twice wraps nothing twice. */
const INSTALLED = Symbol('fti.wasmKernel');

interface ProductAttrs {
  transposeA?: boolean;
  transposeB?: boolean;
}

/** The WASM backend as its kernels use it (tfjs types it as KernelBackend). */
interface WasmBackend {
  disposeData(dataId: object): void;
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

/** Registers `wrap(original)` as the WASM backend's kernel `name`, once (a second call wraps nothing). */
function replaceWasmKernel(tf: Tf, name: string, wrap: (original: KernelFunc) => KernelFunc): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) throw new Error(`the wasm backend has no ${name} kernel`);
  if ((original.kernelFunc as KernelFunc & { [INSTALLED]?: true })[INSTALLED]) return;
  const kernelFunc: KernelFunc & { [INSTALLED]?: true } = wrap(original.kernelFunc);
  kernelFunc[INSTALLED] = true;
  // The original's setupFunc already ran when the backend initialised; its kernel
  // function keeps what it set up.
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc } as KernelConfig);
}

/** Replaces the WASM backend's BatchMatMul and _FusedMatMul (call once the backend is ready). */
export function installUntransposedProducts(tf: Tf): void {
  const transpose = tf.getKernel('Transpose', 'wasm')?.kernelFunc;
  if (!transpose) throw new Error('the wasm backend has no Transpose kernel');
  for (const name of PRODUCTS) {
    replaceWasmKernel(tf, name, (product) => ({ inputs, backend, attrs }) => {
      const { transposeA, transposeB } = (attrs ?? {}) as ProductAttrs;
      if (!transposeA && !transposeB) return product({ inputs, backend, attrs });
      const made: TensorInfo[] = [];
      // The last two axes swapped; batch axes (rank 3 and up) stay where they are.
      const swapped = (x: TensorInfo): TensorInfo => {
        const out = x.dtype === 'float32' ? swapLastAxes(backend as unknown as WasmBackend, x) : transposeByKernel(transpose, backend, x);
        made.push(out);
        return out;
      };
      const operands = { ...inputs } as Record<string, TensorInfo>;
      if (transposeA) operands['a'] = swapped(operands['a'] as TensorInfo);
      if (transposeB) operands['b'] = swapped(operands['b'] as TensorInfo);
      try {
        return product({ inputs: operands, backend, attrs: { ...attrs, transposeA: false, transposeB: false } as NamedAttrMap });
      } finally {
        for (const info of made) (backend as unknown as WasmBackend).disposeData(info.dataId);
      }
    });
  }
}

/** A tensor of another dtype with its last two axes swapped, by the backend's own Transpose kernel. */
function transposeByKernel(transpose: KernelFunc, backend: Parameters<KernelFunc>[0]['backend'], x: TensorInfo): TensorInfo {
  const rank = x.shape.length;
  const perm = [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
  return transpose({ inputs: { x }, backend, attrs: { perm } }) as TensorInfo;
}

/** A float32 tensor with its last two axes swapped, as a new tensor of the backend's. */
function swapLastAxes(heap: WasmBackend, x: TensorInfo): TensorInfo {
  const shape = x.shape;
  const rows = shape[shape.length - 2] as number;
  const columns = shape[shape.length - 1] as number;
  // The output first: allocating it may grow the heap, which detaches earlier views of it.
  const out = heap.makeOutput([...shape.slice(0, -2), columns, rows], 'float32');
  const values = heap.typedArrayFromHeap(x);
  const swapped = heap.typedArrayFromHeap(out);
  const size = rows * columns;
  for (let at = 0; at < values.length; at += size) transposeMatrix(values, at, rows, columns, swapped);
  return out;
}

/**
 * The row-major `rows`×`columns` matrix at `values[start]` transposed into `out` at the
 * same offset. Four columns at a time: each row's four values are read together and
 * written to four output rows in order, which runs about twice as fast as one column a
 * pass (and almost four times the backend's loop).
 */
function transposeMatrix(values: Float32Array, start: number, rows: number, columns: number, out: Float32Array): void {
  let c = 0;
  for (; c + 4 <= columns; c += 4) {
    const o0 = start + c * rows;
    const o1 = o0 + rows;
    const o2 = o1 + rows;
    const o3 = o2 + rows;
    for (let r = 0, at = start + c; r < rows; r++, at += columns) {
      out[o0 + r] = values[at] as number;
      out[o1 + r] = values[at + 1] as number;
      out[o2 + r] = values[at + 2] as number;
      out[o3 + r] = values[at + 3] as number;
    }
  }
  for (; c < columns; c++) {
    const o = start + c * rows;
    for (let r = 0, at = start + c; r < rows; r++, at += columns) out[o + r] = values[at] as number;
  }
}

/**
 * A faster Sum on the WASM backend for one case: a float32 matrix summed over its rows
 * (axis 0), which is how tfjs computes a dense layer's bias gradient from a batch.
 *
 * tfjs-backend-wasm 4.22 transposes the matrix so that the summed axis is innermost,
 * then sums each row: measured on 1024×64 (a 64-unit layer's gradient, batch 1024),
 * 0.37 ms, about 6 % of the flights MLP's training step. Here each column is summed
 * straight from the rows as they lie, in the same order (row 0 first) and in float32 at
 * every step, as the backend's loop does: the same bits (the tests compare them), in
 * about a quarter of the time. Every other Sum goes to the original kernel.
 */
export function installColumnSums(tf: Tf): void {
  replaceWasmKernel(tf, 'Sum', (sum) => ({ inputs, backend, attrs }) => {
    const x = inputs['x'] as TensorInfo;
    const { axis, keepDims } = (attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
    const overRows = x.dtype === 'float32' && x.shape.length === 2 && axis !== undefined && tf.util.parseAxisParam(axis, x.shape).join() === '0';
    if (!overRows) return sum({ inputs, backend, attrs });
    const [rows, columns] = x.shape as [number, number];
    const heap = backend as unknown as WasmBackend;
    // The output first: allocating it may grow the heap, which detaches earlier views of it.
    const out = heap.makeOutput(keepDims ? [1, columns] : [columns], 'float32');
    sumColumns(heap.typedArrayFromHeap(x), rows, columns, heap.typedArrayFromHeap(out));
    return out;
  });
}

/**
 * Each column of a row-major `rows`×`columns` matrix summed from row 0 down, rounded to
 * float32 at every step (Math.fround), into `sums`. Four columns at a time: four
 * independent chains of additions keep the core busy where one would wait.
 */
function sumColumns(values: Float32Array, rows: number, columns: number, sums: Float32Array): void {
  const end = rows * columns;
  let c = 0;
  for (; c + 4 <= columns; c += 4) {
    let t0 = 0;
    let t1 = 0;
    let t2 = 0;
    let t3 = 0;
    for (let at = c; at < end; at += columns) {
      t0 = Math.fround(t0 + (values[at] as number));
      t1 = Math.fround(t1 + (values[at + 1] as number));
      t2 = Math.fround(t2 + (values[at + 2] as number));
      t3 = Math.fround(t3 + (values[at + 3] as number));
    }
    sums[c] = t0;
    sums[c + 1] = t1;
    sums[c + 2] = t2;
    sums[c + 3] = t3;
  }
  for (; c < columns; c++) {
    let total = 0;
    for (let at = c; at < end; at += columns) total = Math.fround(total + (values[at] as number));
    sums[c] = total;
  }
}
