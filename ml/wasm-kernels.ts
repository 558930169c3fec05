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
 * The kernels registered here transpose the flagged operands with the backend's own
 * Transpose kernel and hand the untransposed product to the original kernel. Only
 * the forward computation changes: gradients are registered per kernel name and stay
 * tfjs's own.
 */
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import type { Tf } from './backend.ts';

const PRODUCTS = ['BatchMatMul', '_FusedMatMul'] as const;
/** Marks the kernels installed here, so installing twice wraps nothing twice. */
const INSTALLED = Symbol('fti.untransposedProduct');

interface ProductAttrs {
  transposeA?: boolean;
  transposeB?: boolean;
}

/** The backend's per-tensor memory, as kernels see it (tfjs types it as KernelBackend). */
interface DisposingBackend {
  disposeData(dataId: object): void;
}

/** Replaces the WASM backend's BatchMatMul and _FusedMatMul (call once the backend is ready). */
export function installUntransposedProducts(tf: Tf): void {
  const transpose = tf.getKernel('Transpose', 'wasm')?.kernelFunc;
  if (!transpose) throw new Error('the wasm backend has no Transpose kernel');
  for (const name of PRODUCTS) {
    const original = tf.getKernel(name, 'wasm');
    if (!original) throw new Error(`the wasm backend has no ${name} kernel`);
    if ((original.kernelFunc as KernelFunc & { [INSTALLED]?: true })[INSTALLED]) continue;
    const product = original.kernelFunc;
    const kernelFunc: KernelFunc & { [INSTALLED]?: true } = ({ inputs, backend, attrs }) => {
      const { transposeA, transposeB } = (attrs ?? {}) as ProductAttrs;
      if (!transposeA && !transposeB) return product({ inputs, backend, attrs });
      const made: TensorInfo[] = [];
      // The last two axes swapped; batch axes (rank 3 and up) stay where they are.
      const swapped = (x: TensorInfo): TensorInfo => {
        const rank = x.shape.length;
        const perm = [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
        const out = transpose({ inputs: { x }, backend, attrs: { perm } }) as TensorInfo;
        made.push(out);
        return out;
      };
      const operands = { ...inputs } as Record<string, TensorInfo>;
      if (transposeA) operands['a'] = swapped(operands['a'] as TensorInfo);
      if (transposeB) operands['b'] = swapped(operands['b'] as TensorInfo);
      try {
        return product({ inputs: operands, backend, attrs: { ...attrs, transposeA: false, transposeB: false } as NamedAttrMap });
      } finally {
        for (const info of made) (backend as unknown as DisposingBackend).disposeData(info.dataId);
      }
    };
    kernelFunc[INSTALLED] = true;
    // The original's setupFunc already ran when the backend initialised; its kernel
    // function keeps what it set up.
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc } as KernelConfig);
  }
}
