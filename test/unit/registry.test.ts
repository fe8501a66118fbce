import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseChallenges } from '../../src/registry/auth.js';
import { nextLink } from '../../src/registry/client.js';
import { parseReference, registryScheme } from '../../src/registry/reference.js';
import { backoffDelay, isTransient, parseRetryAfter, retry, TransientStatusError } from '../../src/registry/retry.js';
import { logUrl } from '../../src/registry/transport.js';
import { UserError } from '../../src/errors.js';

const test = suite('registry pieces');

test('scheme: http only for localhost, 127.x.x.x, [::1] or insecure', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000', '[::1]']) assert.is(registryScheme(h), 'http', h);
  for (const h of ['reg.example', 'reg.example:5000', '10.0.0.1:5000', '128.0.0.1', '127.0.0.1.example.com', 'localhost.example', '[::2]:5000', '127.0.0.256'])
    assert.is(registryScheme(h), 'https', h);
  assert.is(registryScheme('reg.example:5000', true), 'http');
});

test('references: host, repository, tag, digest; docker.io defaults', () => {
  assert.equal(parseReference('localhost:5000/team/app:1.0'), { host: 'localhost:5000', repository: 'team/app', tag: '1.0' });
  const d = `sha256:${'a'.repeat(64)}`;
  assert.equal(parseReference(`reg.example/app@${d}`), { host: 'reg.example', repository: 'app', digest: d });
  assert.equal(parseReference('ubuntu'), { host: 'docker.io', repository: 'library/ubuntu' });
  assert.equal(parseReference('[::1]:5000/x:y'), { host: '[::1]:5000', repository: 'x', tag: 'y' });
  assert.throws(() => parseReference('reg.example/Upper:tag'), (e: unknown) => e instanceof UserError);
});

test('WWW-Authenticate: Bearer with quoted commas, Basic, several challenges', () => {
  assert.equal(parseChallenges('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' } },
  ]);
  assert.equal(parseChallenges('Basic realm="basic-realm"'), [{ scheme: 'basic', params: { realm: 'basic-realm' } }]);
  const two = parseChallenges('Basic realm="x", Bearer realm="y", error="insufficient_scope"');
  assert.equal(two.map((c) => c.scheme), ['basic', 'bearer']);
  assert.is(two[1]!.params.error, 'insufficient_scope');
});

test('Link header: the rel="next" target', () => {
  assert.is(nextLink('</v2/a/tags/list?last=b&n=2>; rel="next"'), '/v2/a/tags/list?last=b&n=2');
  assert.is(nextLink('<https://x/p?1>; rel="prev", <https://x/p?3>; rel=next'), 'https://x/p?3');
  assert.is(nextLink(undefined), undefined);
});

test('Retry-After in seconds or as a date; backoff doubles, capped, with jitter', () => {
  assert.is(parseRetryAfter('3'), 3000);
  assert.is(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.is(parseRetryAfter('soon'), undefined);
  const opts = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000, totalMs: 10_000 };
  assert.equal([1, 2, 3, 4, 5].map((a) => backoffDelay(a, opts, () => 1)), [100, 200, 400, 800, 1000]);
  assert.is(backoffDelay(3, opts, () => 0), 200);
});

test('transient: 5xx/429 and dropped connections, not aborts or other errors', () => {
  assert.ok(isTransient(new TransientStatusError('x', 503)));
  for (const code of ['ECONNRESET', 'ECONNREFUSED', 'EPIPE']) assert.ok(isTransient(Object.assign(new Error(code), { code })), code);
  assert.ok(isTransient(new Error('socket hang up')));
  assert.not.ok(isTransient(new DOMException('aborted', 'AbortError')));
  assert.not.ok(isTransient(new UserError('no')));
  assert.not.ok(isTransient(Object.assign(new Error('x'), { code: 'ENOTFOUND' })));
});

test('retry: bounded attempts, honours Retry-After, stops on abort', async () => {
  const opts = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, totalMs: 1000 };
  let calls = 0;
  const err = await retry(async () => {
    calls++;
    throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
  }, opts).catch((e: unknown) => e);
  assert.is(calls, 3);
  assert.is((err as Error).message, 'reset');

  const delays: number[] = [];
  const ok = await retry(
    async (attempt) => {
      if (attempt === 1) throw new TransientStatusError('busy', 429, 20);
      return 'done';
    },
    opts,
    { onRetry: (_e, _a, d) => delays.push(d) },
  );
  assert.is(ok, 'done');
  assert.equal(delays, [20]);

  // A Retry-After past the total budget ends the retries at once.
  calls = 0;
  await retry(async () => {
    calls++;
    throw new TransientStatusError('later', 503, 5_000);
  }, opts).catch(() => undefined);
  assert.is(calls, 1);

  const ac = new AbortController();
  const slow = retry(async () => {
    throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED' });
  }, { ...opts, baseDelayMs: 10_000, maxDelayMs: 10_000, totalMs: 60_000, attempts: 5 }, { signal: ac.signal });
  ac.abort();
  const aborted = await slow.catch((e: unknown) => e);
  assert.is((aborted as Error).name, 'AbortError');
});

test('logged URLs keep digest and scope but not the upload _state', () => {
  const u = new URL('http://r:5000/v2/a/blobs/uploads/123?_state=SECRETSTATE&digest=sha256%3Aab');
  assert.is(logUrl(u), 'http://r:5000/v2/a/blobs/uploads/123?digest=sha256%3Aab');
});

test.run();
