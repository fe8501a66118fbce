import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../helpers/project.js';

const test = suite('README');

test('the figures table is the one of bench/results/latest.json', async () => {
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const latest = JSON.parse(await readFile(path.join(REPO_ROOT, 'bench/results/latest.json'), 'utf8'));
  assert.ok(readme.includes(`(${latest.date})`), 'README names the date of the latest results; run node --import tsx bench/readme-table.ts');
  for (const r of latest.results) assert.ok(readme.includes(`| ${r.name} |`), `README row for ${r.name}`);
});

test('the first screen gives the two commands for a fresh machine', async () => {
  const firstScreen = (await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8')).split('\n').slice(0, 20).join('\n');
  assert.match(firstScreen, 'bash scripts/demo.sh');
  assert.match(firstScreen, 'npm ci && npm test');
  const ci = await readFile(path.join(REPO_ROOT, '.ci/run'), 'utf8');
  assert.match(ci, /npm ci[^\n]*\nnpm test/);
});

test.run();
