/** Maps with at most `limit` calls at once; the first failure aborts the rest and is thrown. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, signal: AbortSignal | undefined, fn: (item: T, signal: AbortSignal) => Promise<R>): Promise<R[]> {
  const ctl = new AbortController();
  const sig = signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal;
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const i = next++;
      try {
        sig.throwIfAborted();
        out[i] = await fn(items[i]!, sig);
      } catch (err) {
        failure ??= { err };
        ctl.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw signal?.aborted ? signal.reason : failure.err;
  return out;
}
