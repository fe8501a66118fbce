import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Scheduler, type BuildJob } from '../../src/daemon/scheduler.js';

const test = suite('scheduler: debounce, coalesce, cancel');

/** A scheduler over string identities whose builds wait until released or aborted. */
function harness(opts: { cancelSuperseded?: boolean; debounceMs?: number } = {}) {
  let current = 'v0';
  const jobs: { job: BuildJob<string>; release: (err?: Error) => void; outcome?: string }[] = [];
  const ends: { buildId: number; identity: string; outcome: string }[] = [];
  const s = new Scheduler<string>({
    debounceMs: opts.debounceMs ?? 30,
    cancelSuperseded: opts.cancelSuperseded ?? true,
    identify: async () => current,
    same: (a, b) => a === b,
    build: (job) =>
      new Promise<void>((resolve, reject) => {
        const entry = { job, release: (err?: Error) => (err ? reject(err) : resolve()) };
        jobs.push(entry);
        job.signal.addEventListener('abort', () => reject(job.signal.reason), { once: true });
      }),
    onError: () => {},
  });
  s.on('buildEnd', (e) => ends.push({ buildId: e.buildId, identity: e.identity, outcome: e.outcome }));
  const until = async (cond: () => boolean, ms = 2000) => {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > ms) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { s, jobs, ends, until, set: (v: string) => (current = v) };
}

test('a burst of changes gives one build with every changed path', async () => {
  const h = harness();
  h.set('v1');
  for (const p of ['a', 'b', 'a', 'c', 'b']) h.s.notify([p]);
  await h.until(() => h.jobs.length === 1);
  assert.equal(h.jobs[0]!.job.changed, ['a', 'b', 'c']);
  assert.is(h.jobs[0]!.job.identity, 'v1');
  h.jobs[0]!.release();
  await h.until(() => h.s.state === 'idle');
  await new Promise((r) => setTimeout(r, 80));
  assert.is(h.jobs.length, 1);
});

test('changes that end on the identity already built build nothing', async () => {
  const h = harness();
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  h.jobs[0]!.release();
  await h.until(() => h.ends.length === 1);
  h.s.notify(['a']); // touched, same content
  await new Promise((r) => setTimeout(r, 100));
  assert.is(h.jobs.length, 1);
  assert.is(h.s.state, 'idle');
});

test('newer inputs during a build cancel it; exactly one build of the newest follows', async () => {
  const h = harness();
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  h.set('v2');
  h.s.notify(['a']);
  h.set('v3');
  h.s.notify(['a']);
  await h.until(() => h.jobs.length === 2);
  assert.ok(h.jobs[0]!.job.signal.aborted);
  assert.is(h.jobs[1]!.job.identity, 'v3');
  h.jobs[1]!.release();
  await h.until(() => h.ends.length === 2);
  assert.equal(h.ends.map((e) => e.outcome), ['cancelled', 'ok']);
  assert.ok(h.ends[1]!.buildId > h.ends[0]!.buildId);
  await new Promise((r) => setTimeout(r, 80));
  assert.is(h.jobs.length, 2);
});

test('without cancelSuperseded the build finishes, then one follow-up runs', async () => {
  const h = harness({ cancelSuperseded: false });
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  h.set('v2');
  h.s.notify(['a']);
  h.set('v3');
  h.s.notify(['b']);
  await new Promise((r) => setTimeout(r, 100));
  assert.not.ok(h.jobs[0]!.job.signal.aborted);
  h.jobs[0]!.release();
  await h.until(() => h.jobs.length === 2);
  assert.is(h.jobs[1]!.job.identity, 'v3');
  assert.equal(h.jobs[1]!.job.changed, ['a', 'b']);
});

test('a change back to the identity being built keeps that build and adds none', async () => {
  const h = harness();
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  h.set('v2');
  h.s.notify(['a']);
  h.set('v1');
  h.s.notify(['a']);
  await new Promise((r) => setTimeout(r, 100));
  assert.not.ok(h.jobs[0]!.job.signal.aborted);
  h.jobs[0]!.release();
  await h.until(() => h.ends.length === 1);
  await new Promise((r) => setTimeout(r, 80));
  assert.is(h.jobs.length, 1);
});

test('a failed build is reported and the next change builds again', async () => {
  const h = harness();
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  h.jobs[0]!.release(new Error('syntax error'));
  await h.until(() => h.ends.length === 1);
  assert.is(h.ends[0]!.outcome, 'failed');
  h.set('v2');
  h.s.notify(['a']);
  await h.until(() => h.jobs.length === 2);
  assert.is(h.jobs[1]!.job.identity, 'v2');
});

test('stop cancels the running build and waits for it', async () => {
  const h = harness();
  h.set('v1');
  h.s.kick();
  await h.until(() => h.jobs.length === 1);
  await h.s.stop();
  assert.ok(h.jobs[0]!.job.signal.aborted);
  assert.equal(h.ends.map((e) => e.outcome), ['cancelled']);
  h.set('v2');
  h.s.notify(['a']);
  await new Promise((r) => setTimeout(r, 80));
  assert.is(h.jobs.length, 1);
  assert.is(h.s.state, 'stopping');
});

/**
 * A scheduler whose identify() calls wait until the test answers them, in any
 * order, and whose builds wait until released (an abort alone does not end
 * them, as a real build takes a moment to wind down). Every step waits on the
 * scheduler's own events, never on time.
 */
function racing() {
  const asked: { answer: (id: string) => void }[] = [];
  const jobs: { job: BuildJob<string>; release: (err?: Error) => void }[] = [];
  const s = new Scheduler<string>({
    debounceMs: 60_000, // batches come from kick() here, never from the timer
    cancelSuperseded: true,
    identify: () => new Promise<string>((resolve) => asked.push({ answer: resolve })),
    same: (a, b) => a === b,
    build: (job) =>
      new Promise<void>((resolve, reject) => {
        jobs.push({ job, release: (err?: Error) => (err ? reject(err) : resolve()) });
      }),
    onError: () => {},
  });
  const settled = () => once(s, 'settled').then(([e]) => e as { identity: string | null; action: string });
  const ended = () => once(s, 'buildEnd').then(([e]) => e as { buildId: number; identity: string; outcome: string });
  return { s, asked, jobs, settled, ended };
}

test('race: stop() while the identity is computed starts no build after it', async () => {
  const r = racing();
  r.s.kick();
  assert.is(r.asked.length, 1);
  await r.s.stop();
  const decision = r.settled();
  r.asked[0]!.answer('v1');
  assert.equal(await decision, { identity: 'v1', action: 'stopping' });
  assert.is(r.jobs.length, 0);
  assert.is(r.s.state, 'stopping');
});

test('race: inputs back on the identity of a cancelled build build it again', async () => {
  const r = racing();
  r.s.kick();
  let decision = r.settled();
  r.asked[0]!.answer('v1');
  assert.is((await decision).action, 'start');
  // v2 supersedes v1: v1 is cancelled but still winding down.
  r.s.kick();
  decision = r.settled();
  r.asked[1]!.answer('v2');
  assert.is((await decision).action, 'rerun');
  assert.ok(r.jobs[0]!.job.signal.aborted);
  // Back to v1 before the cancelled build has ended.
  r.s.kick();
  decision = r.settled();
  r.asked[2]!.answer('v1');
  assert.is((await decision).action, 'rerun');
  const end = r.ended();
  decision = r.settled();
  r.jobs[0]!.release(new Error('killed'));
  assert.is((await end).outcome, 'cancelled');
  // The follow-up settle computes the identity again: still v1, so v1 builds.
  r.asked[3]!.answer('v1');
  assert.is((await decision).action, 'start');
  assert.is(r.jobs.length, 2);
  assert.is(r.jobs[1]!.job.identity, 'v1');
  assert.not.ok(r.jobs[1]!.job.signal.aborted);
  const second = r.ended();
  r.jobs[1]!.release();
  assert.is((await second).outcome, 'ok');
});

test('race: overlapping settles that finish out of order act on the newest inputs only', async () => {
  const r = racing();
  r.s.kick(); // older: its identify() is slow
  r.s.kick(); // newer
  assert.is(r.asked.length, 2);
  let decision = r.settled();
  r.asked[1]!.answer('v2');
  assert.equal(await decision, { identity: 'v2', action: 'start' });
  decision = r.settled();
  r.asked[0]!.answer('v1'); // describes older inputs
  assert.equal(await decision, { identity: 'v1', action: 'stale' });
  assert.is(r.jobs.length, 1);
  assert.is(r.jobs[0]!.job.identity, 'v2');
  assert.not.ok(r.jobs[0]!.job.signal.aborted, 'the stale settle cancelled the newest build');
  const end = r.ended();
  r.jobs[0]!.release();
  assert.is((await end).outcome, 'ok');
  assert.is(r.s.state, 'idle');
});

test.run();
