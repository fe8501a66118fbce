import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { UserError } from '../../src/errors.js';
import { parseEnvOption, parsePublish, portBindings } from '../../src/engine/run-options.js';

const test = suite('run options (-p, -e)');

test('-p reads every form docker run takes', () => {
  assert.equal(parsePublish('8888:8888', '-p'), { hostPort: 8888, containerPort: 8888, protocol: 'tcp' });
  assert.equal(parsePublish('127.0.0.1:8080:80', '-p'), { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePublish('127.0.0.1::80', '-p'), { hostIp: '127.0.0.1', containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePublish('[::1]:8080:80/udp', '-p'), { hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'udp' });
  assert.equal(parsePublish('53/udp', '-p'), { containerPort: 53, protocol: 'udp' });
  assert.equal(portBindings([parsePublish('8080:80', '-p'), parsePublish('127.0.0.1:8081:80', '-p')]), {
    ExposedPorts: { '80/tcp': {} },
    PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }, { HostIp: '127.0.0.1', HostPort: '8081' }] },
  });
});

test('a bad -p names the option, the value and the form', () => {
  for (const bad of ['', 'x', '0', '70000:80', '80:80/sctp', '1:2:3:4', 'host:80:80', '80:']) {
    try {
      parsePublish(bad, '-p/--publish');
      assert.unreachable(bad);
    } catch (err) {
      assert.ok((err as Error).message.startsWith(`-p/--publish "${bad}" is not a port to publish`), (err as Error).message);
      assert.match((err as UserError).hint ?? '', '[IP:][HOST_PORT:]CONTAINER_PORT');
    }
  }
});

test('-e: KEY=VALUE as is, a bare KEY from the environment or nothing', () => {
  assert.is(parseEnvOption('A=1=2', '-e', {}), 'A=1=2');
  assert.is(parseEnvOption('A=', '-e', {}), 'A=');
  assert.is(parseEnvOption('HOME', '-e', { HOME: '/root' }), 'HOME=/root');
  assert.is(parseEnvOption('UNSET', '-e', {}), null);
  assert.throws(() => parseEnvOption('=x', '-e/--env', {}), /-e\/--env "=x" has no variable name/);
});

test.run();
