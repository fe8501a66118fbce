import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Writable } from 'node:stream';
import { createLogger, silentLogger } from '../../src/log.js';

const test = suite('log: the logger pino makes on first use');

function collect(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('lines at the level are written, lines below it dropped, and children carry their bindings and own level', () => {
  const { stream, lines } = collect();
  const log = createLogger({ level: 'info', json: true, stream });
  log.debug('below the level');
  const child = log.child({ plugin: 'push' });
  child.debug('below the level too');
  child.info({ uploaded: 2 }, 'pushed');
  log.warn('a warning');
  const quiet = log.child({ plugin: 'gc' }, { level: 'error' });
  quiet.warn('below the child level');
  quiet.error('gc failed');
  assert.equal(
    lines().map(({ level, msg, plugin, uploaded }) => ({ level, msg, plugin, uploaded })),
    [
      { level: 30, msg: 'pushed', plugin: 'push', uploaded: 2 },
      { level: 40, msg: 'a warning', plugin: undefined, uploaded: undefined },
      { level: 50, msg: 'gc failed', plugin: 'gc', uploaded: undefined },
    ],
  );
  assert.is(log.level, 'info');
  assert.is(log.isLevelEnabled('debug'), false);
});

test('a level set later applies, before or after the first line', () => {
  const { stream, lines } = collect();
  const log = createLogger({ level: 'warn', json: true, stream });
  log.level = 'debug';
  log.debug('now written');
  assert.equal(lines().map((l) => l.msg), ['now written']);
  assert.is(silentLogger.level, 'silent');
  silentLogger.fatal('never written');
});

test.run();
