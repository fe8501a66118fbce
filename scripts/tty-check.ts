/**
 * The manual check of issue 13's progress on a real terminal, at the size of
 * a real image: a cold `nixdocker build --force` of a scaled bench fixture
 * (fresh builder volume, so Nix builds every path; fresh registry, so the
 * push uploads every blob) in a 120×40 tmux pane, its screen captured every
 * 200 ms. Then the same cold build with stderr going to a file.
 *
 *   npm run tty-check -- [--fixture s200|s1500|s50|assembly600|…] [--out DIR] [--only tty|pipe] [--every MS]
 *
 * Needs the services (`source /tmp/nixdocker-services/env`, or
 * `eval "$(bash scripts/services.sh up)"`) and tmux. Fails (exit 1) unless:
 *   - some capture shows each of Nix's, assembly's and push's live line;
 *   - no captured line mixes a status with a log line or Nix's output, and
 *     no status fragment stays on the screen after the build;
 *   - off a terminal, stderr has no escape sequence, every line is JSON, and
 *     progress comes as debug events of the three phases.
 * Captures, the raw pane bytes and the piped output stay in --out (default:
 * a temporary folder, printed at the end).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { scaleProject, SCALE_FIXTURES, type ScaleFixture } from '../bench/lib/fixtures.js';
import { BIN, nixdocker, progress } from '../bench/lib/proc.js';
import { registryEnv, withRegistry } from '../bench/lib/registry.js';
import { removeVolume } from '../test/helpers/services.js';
import { mixedLine, PHASE_PROGRESS, STATUS, stripEscapes, TmuxPane } from '../test/helpers/tmux.js';

const BUILD_TIMEOUT_MS = 30 * 60_000;
type Phase = keyof typeof PHASE_PROGRESS;

const { values } = parseArgs({
  options: { fixture: { type: 'string', default: 's200' }, out: { type: 'string' }, only: { type: 'string' }, every: { type: 'string', default: '200' } },
});
/** How often the pane is captured, in ms. */
const CAPTURE_EVERY_MS = Number(values.every);
const fixture = (SCALE_FIXTURES as Record<string, ScaleFixture>)[values.fixture!];
if (!fixture) throw new Error(`--fixture: one of ${Object.keys(SCALE_FIXTURES).join(', ')}`);
if (!process.env.DOCKER_HOST) throw new Error('DOCKER_HOST is not set: `source /tmp/nixdocker-services/env` (or eval "$(bash scripts/services.sh up)")');

const work = await mkdtemp(path.join(tmpdir(), 'nixdocker-tty-check-'));
const out = values.out ? path.resolve(values.out) : path.join(work, 'out');
await mkdir(out, { recursive: true });
const failures: string[] = [];
const fail = (msg: string) => failures.push(msg);

/** A project of the fixture in a folder of its own, on a volume of its own that `builder create` fills. */
async function coldProject(name: string): Promise<{ dir: string; volume: string }> {
  const volume = `nixdocker-tty-check-${process.pid}-${name}`;
  const dir = await scaleProject(fixture!, { root: path.join(work, name), volume });
  await nixdocker(['-C', dir, 'builder', 'create'], { timeoutMs: 600_000 });
  return { dir, volume };
}

/** The build in a tmux pane, captured every 200 ms: what each phase showed, and every mixed line. */
async function onTerminal(): Promise<void> {
  const { dir, volume } = await coldProject('tty');
  const screens = path.join(out, 'tty');
  await mkdir(screens, { recursive: true });
  try {
    await withRegistry(async (reg) => {
      const t0 = performance.now();
      progress(`tty: cold build of ${fixture!.name} in a 120x40 tmux pane captured every ${CAPTURE_EVERY_MS} ms, registry ${reg.host}`);
      let captures = 0;
      const pane = await TmuxPane.start(`${process.execPath} ${BIN} -C ${dir} build --force`, {
        width: 120,
        height: 40,
        env: { DOCKER_HOST: process.env.DOCKER_HOST!, ...registryEnv(reg) },
        raw: path.join(screens, 'raw'),
        timeoutMs: BUILD_TIMEOUT_MS,
      });
      try {
        const seen: Record<Phase, string | null> = { build: null, assemble: null, push: null };
        const counts: Record<Phase, number> = { build: 0, assemble: 0, push: 0 };
        await pane.watch(CAPTURE_EVERY_MS, async (screen, ms) => {
          const file = `capture-${String(++captures).padStart(4, '0')}.txt`;
          await writeFile(path.join(screens, file), `${(ms / 1000).toFixed(1)} s\n${screen.join('\n')}\n`);
          for (const phase of Object.keys(seen) as Phase[]) {
            if (!screen.some((l) => PHASE_PROGRESS[phase].test(l))) continue;
            counts[phase]++;
            seen[phase] ??= file;
          }
          for (const line of screen) {
            const why = mixedLine(line);
            if (why) fail(`tty ${file}: ${why}: ${JSON.stringify(line)}`);
          }
        });
        const final = await pane.capture({ history: true });
        await writeFile(path.join(screens, 'final.txt'), `${final.join('\n')}\n`);
        progress(`tty: ended after ${((performance.now() - t0) / 1000).toFixed(1)} s; ${captures} distinct captures in ${screens}`);
        if (!final.includes('EXIT=0')) fail(`tty: the build did not exit 0:\n${final.slice(-30).join('\n')}`);
        for (const phase of Object.keys(seen) as Phase[]) {
          if (seen[phase]) progress(`tty: ${phase} progress on ${counts[phase]} capture(s), first in ${seen[phase]}`);
          else fail(`tty: no capture shows the ${phase} phase's live line (${PHASE_PROGRESS[phase]})`);
        }
        for (const line of final) {
          if (STATUS.test(line)) fail(`tty final screen: a status fragment stayed: ${JSON.stringify(line)}`);
          const why = mixedLine(line);
          if (why) fail(`tty final screen: ${why}: ${JSON.stringify(line)}`);
        }
      } finally {
        await pane.kill();
      }
    });
  } finally {
    await removeVolume(volume);
  }
}

/** The same cold build with stderr (and stdout) going to files: JSON lines, progress at debug level, nothing drawn. */
async function offTerminal(): Promise<void> {
  const { dir, volume } = await coldProject('pipe');
  const stderr = path.join(out, 'pipe.stderr');
  const stdout = path.join(out, 'pipe.stdout');
  try {
    await withRegistry(async (reg) => {
      const t0 = performance.now();
      progress(`pipe: cold build of ${fixture!.name}, stderr to ${stderr}`);
      const r = await execa(process.execPath, [BIN, '-C', dir, 'build', '--force', '--log-level', 'debug'], {
        env: registryEnv(reg),
        stdin: 'ignore',
        stdout: { file: stdout },
        stderr: { file: stderr },
        reject: false,
        timeout: BUILD_TIMEOUT_MS,
      });
      progress(`pipe: ended after ${((performance.now() - t0) / 1000).toFixed(1)} s with exit code ${r.exitCode}`);
      const err = await readFile(stderr, 'utf8');
      if (r.exitCode !== 0) fail(`pipe: the build exited ${r.exitCode}:\n${err.slice(-3000)}`);
      for (const [name, text] of [['stderr', err], ['stdout', await readFile(stdout, 'utf8')]]) {
        if (text!.includes('\x1b')) fail(`pipe: ${name} holds an escape sequence`);
        if (/\r(?!\n)/.test(text!)) fail(`pipe: ${name} holds a carriage return (a redrawn line)`);
      }
      const events: { level: number; progress?: { phase: string; blobsDone?: number; blobsTotal?: number } }[] = [];
      for (const line of err.split('\n').filter(Boolean)) {
        try {
          events.push(JSON.parse(line));
        } catch {
          fail(`pipe: a stderr line is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
        }
      }
      const prog = events.filter((e) => e.progress);
      if (!prog.every((e) => e.level === 20)) fail('pipe: a progress event is not at debug level (20)');
      for (const phase of ['build', 'assemble', 'push']) {
        const of = prog.filter((e) => e.progress!.phase === phase);
        if (of.length === 0) fail(`pipe: no ${phase} progress event`);
        else progress(`pipe: ${of.length} ${phase} progress event(s); last ${JSON.stringify(of.at(-1)!.progress)}`);
      }
      const lastPush = prog.filter((e) => e.progress!.phase === 'push').at(-1)?.progress;
      if (lastPush && lastPush.blobsDone !== lastPush.blobsTotal) fail('pipe: the last push event is not the finished one');
    });
  } finally {
    await removeVolume(volume);
  }
}

try {
  if (values.only !== 'pipe') await onTerminal();
  if (values.only !== 'tty') await offTerminal();
} finally {
  // The projects (and their .nixdocker caches of the image's size) go; the captures stay.
  await rm(path.join(work, 'tty'), { recursive: true, force: true });
  await rm(path.join(work, 'pipe'), { recursive: true, force: true });
  if (values.out) await rm(work, { recursive: true, force: true });
}
if (failures.length > 0) {
  process.stderr.write(`\ntty-check FAILED (${failures.length}):\n${failures.slice(0, 40).map((f) => `  - ${f}`).join('\n')}\noutput in ${out}\n`);
  process.exit(1);
}
process.stderr.write(`\ntty-check passed: ${fixture.name}; output in ${out}\n`);
