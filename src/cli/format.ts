export { formatBytes } from '../util/bytes.js';

/** 1234 → "1.23 s", 87 → "87 ms". */
export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}
