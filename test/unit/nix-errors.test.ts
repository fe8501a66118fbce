import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { networkFailure, nixError } from '../../src/nix/commands.js';
import { proxyEnv } from '../../src/builder/container-runner.js';

const test = suite('Nix errors');
const ROOT = '/nixdocker/1';
const result = (stderr: string) => ({ exitCode: 1, stdout: '', stderrTail: stderr.split('\n') });

test('a download failure (the issue\'s own text) gets the network fix, not "fix the Nix file"', () => {
  const err = nixError('evaluate', result(
    "error: unable to download 'https://github.com/NixOS/nixpkgs/archive/refs/tags/24.11.tar.gz': Couldn't resolve host name (6)\n\n       at /nixdocker/1/project/env/pkgs.nix:3:8:",
  ), ROOT);
  assert.match(err.message, "Nix could not evaluate the environment: the builder could not download https://github.com/NixOS/nixpkgs/archive/refs/tags/24.11.tar.gz");
  assert.match(err.hint!, "cannot reach github.com (Couldn't resolve host name)");
  assert.match(err.hint!, 'HTTP_PROXY/HTTPS_PROXY/NO_PROXY');
  assert.not.match(err.hint!, 'fix env/pkgs.nix');
});

test('substitution failures, TLS and proxies count; a syntax error does not', () => {
  assert.equal(networkFailure("warning: unable to download 'https://cache.nixos.org/nix-cache-info': Couldn't connect to server (7); retrying in 281 ms"), {
    url: 'https://cache.nixos.org/nix-cache-info',
    reason: "Couldn't connect to server",
  });
  assert.ok(networkFailure("error: some substitutes for the outputs of derivation '/nix/store/x-a.drv' failed (usually happens due to networking issues); try '--fallback'"));
  assert.ok(networkFailure("error: unable to download 'https://x.org/a': SSL peer certificate or SSH remote key was not OK (60)"));
  assert.ok(networkFailure("error: unable to download 'http://x.org/a': Couldn't resolve proxy name (5)"));
  assert.is(networkFailure('error: syntax error, unexpected end of file\n       at /nixdocker/1/project/workdir/local.nix:5:1:'), null);
  assert.is(networkFailure("error: undefined variable 'pkgs'"), null);
});

test('proxy variables pass in both spellings; none set, none passed', () => {
  assert.equal(proxyEnv({}), []);
  assert.equal(proxyEnv({ HTTPS_PROXY: 'http://p:3128', no_proxy: 'localhost' }), [
    'https_proxy=http://p:3128', 'HTTPS_PROXY=http://p:3128', 'no_proxy=localhost', 'NO_PROXY=localhost',
  ]);
});

test.run();
