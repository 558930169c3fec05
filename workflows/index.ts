// The barrel the workers' workflow bundle is built from: every workflow type.
export { systemCheck } from './system-check.ts';
