/**
 * Like Promise.all, but waits for every promise to settle before it throws
 * the first rejection: work started side by side (one per platform) has
 * stopped, and released what it held, by the time the caller cleans up.
 */
export async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
