import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { uploadError } from '../../src/nix/binary-cache.js';

// Nix 2.8's own output of `nix copy -v --to URL`, as the builder printed it against nginx.
const test = suite('binary cache upload errors');
const ROOT = '/nixdocker/1';
const URL = 'http://127.0.0.1:5080/readonly/y';

test('a PUT refused with 405 names builder.cache.url, the status and the WebDAV fix', () => {
  const err = uploadError(URL, [
    `copying path '/nix/store/rqsliwrx0bwx679rmjkk9mj388839nmp-dav-probe' (120 bytes, compressed -3.3% in 6 ms) to binary cache`,
    `uploading '${URL}/nar/09kx.nar.xz'...`,
    `error: while uploading to HTTP binary cache at '${URL}': error: unable to upload '${URL}/nar/09kx.nar.xz': HTTP error 405 ('Not Allowed')`,
    '',
    '              response body:',
    '              <html>',
  ], ROOT);
  assert.is(err.message, `The binary cache ${URL} (builder.cache.url) refused the upload: HTTP 405 Not Allowed on PUT ${URL}/nar/09kx.nar.xz.`);
  assert.match(err.hint!, 'dav_methods PUT');
  assert.match(err.hint!, '`nixdocker cache push` tries again');
  assert.not.match(err.message, '<html>');
});

test('a cache without nix-cache-info whose PUT of one is refused: Nix only says "does not appear to be a binary cache"', () => {
  const err = uploadError('http://127.0.0.1:5080/readonly/x', [
    "downloading 'http://127.0.0.1:5080/readonly/x/nix-cache-info'...",
    "uploading 'http://127.0.0.1:5080/readonly/x/nix-cache-info'...",
    "error: 'http://127.0.0.1:5080/readonly/x' does not appear to be a binary cache",
  ], ROOT);
  assert.match(err.message, 'The binary cache http://127.0.0.1:5080/readonly/x (builder.cache.url) refused the upload: it has no nix-cache-info, and the PUT of one failed');
  assert.match(err.hint!, 'WebDAV');
});

test('403 says nixdocker sends no credentials; 413 says the size limit', () => {
  const line = (code: string, reason: string) => [`error: while uploading to HTTP binary cache at '${URL}': error: unable to upload '${URL}/x.narinfo': HTTP error ${code} ('${reason}')`];
  assert.match(uploadError(URL, line('403', 'Forbidden'), ROOT).hint!, 'nixdocker passes no cache credentials');
  assert.match(uploadError(URL, line('413', 'Request Entity Too Large'), ROOT).hint!, 'client_max_body_size 0');
});

test('a server that is down: the builder could not reach it (curl\'s words), with where 127.0.0.1 is', () => {
  const err = uploadError('http://127.0.0.1:5999/z', [
    "warning: error: unable to download 'http://127.0.0.1:5999/z/nix-cache-info': Couldn't connect to server (7); retrying in 276 ms",
    "error: unable to download 'http://127.0.0.1:5999/z/nix-cache-info': Couldn't connect to server (7)",
  ], ROOT);
  assert.is(err.message, "The builder could not reach the binary cache http://127.0.0.1:5999/z (builder.cache.url): Couldn't connect to server.");
  assert.match(err.hint!, "host's loopback");
});

test('anything else quotes Nix from its error line on', () => {
  const err = uploadError('file:///cache', ['noise', "error: opening file '/cache/nix-cache-info': Permission denied"], ROOT);
  assert.match(err.message, "Nix could not upload to the binary cache file:///cache:\n    error: opening file '/cache/nix-cache-info': Permission denied");
});

test.run();
