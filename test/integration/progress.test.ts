import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BIN, cleanupProjects, runCli, tmpProject } from '../helpers/project.js';
import { offlineProject, removeVolume, requireParts } from '../helpers/services.js';
import { mixedLine, PHASE_PROGRESS, STATUS, stripEscapes, TmuxPane } from '../helpers/tmux.js';

// Progress on a real terminal (a tmux pane), and JSON progress events off one.
const test = suite('progress (tmux pty, real nix, podman, registry)');
const VOLUME = `nixdocker-test-progress-${process.pid}`;
const env = () => ({ DOCKER_HOST: process.env.DOCKER_HOST });

/** A user package that builds for a moment, printing lines, with 20 MB that do not compress: every phase lasts long enough to draw. */
const SLOW = (nonce: string) => `{ pkgs, ... }: [ pkgs.greet (derivation {
  name = "slow-${nonce}"; system = builtins.currentSystem; builder = "/bin/busybox";
  args = [ "sh" "-c" "for i in 1 2 3; do echo step $i; /bin/busybox sleep 0.3; done; /bin/busybox mkdir -p $out; /bin/busybox head -c 20000000 /dev/urandom > $out/blob" ];
}) ]
`;

if (await requireParts(test, ['engine', 'builder-image', 'registry', 'nix', 'tmux'])) {
  test.before(async () => {
    const dir = await offlineProject({ volume: VOLUME });
    const r = await runCli(['-C', dir, 'builder', 'create'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
  });
  test.after(async () => {
    await removeVolume(VOLUME);
    await cleanupProjects();
  });

  test('on a terminal: live lines for Nix, assembly and push; no screen line mixes a status with a log line', async () => {
    const nonce = `${process.pid}-${Date.now()}`;
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': SLOW(nonce) } });
    const scratch = await tmpProject({});
    const raw = path.join(scratch, 'raw');
    // Every byte the pane received, escape sequences included, to see what was drawn.
    const pane = await TmuxPane.start(`${process.execPath} ${BIN} -C ${dir} build`, { width: 100, height: 30, env: { DOCKER_HOST: process.env.DOCKER_HOST! }, raw });
    try {
      // The screen while it runs, every 100 ms: no line mixes a status with a log line at any moment.
      const mixed: string[] = [];
      await pane.watch(100, (live) => {
        for (const line of live) if (mixedLine(line)) mixed.push(line);
      });
      assert.equal(mixed, [], 'no captured screen line mixes a status with a log line');
      const screen = await pane.capture({ history: true });
      assert.ok(screen.includes('EXIT=0'), screen.join('\n'));
      const bytes = await readFile(raw, 'utf8');
      const drawn = stripEscapes(bytes);
      for (const [phase, live] of Object.entries(PHASE_PROGRESS)) assert.match(drawn, live, `the ${phase} status line was drawn`);
      // A line printed above the status comes in the same synchronized update as the status drawn again
      // below it: the terminal never shows the status erased and not yet back.
      const frames = bytes.split('\x1b[?2026h').map((f) => stripEscapes(f.split('\x1b[?2026l')[0]!).replaceAll('\r', ''));
      for (const step of ['step 1', 'step 2', 'step 3']) {
        const frame = frames.find((f) => f.includes(`${step}\n`));
        assert.ok(frame, `"${step}" is printed inside a synchronized update`);
        assert.match(frame!.slice(frame!.indexOf(step)), /\n(?:Nix: |build…)/, `the status is drawn again in the update that prints "${step}"`);
      }
      // The status drawn under Nix's "building" line already names that derivation.
      const building = frames.find((f) => new RegExp(`building '/nix/store/[a-z0-9]{32}-slow-${nonce}\\.drv'`).test(f));
      assert.ok(building, 'the building line is printed inside a synchronized update');
      assert.match(building!, new RegExp(`\\nNix: \\d+/\\d+ derivation\\(s\\) built; now slow-${nonce}\\n`), building!);
      // The screen and its scrollback, as the user reads it afterwards.
      const pushed = screen.filter((l) => /INFO: pushed /.test(l));
      assert.is(pushed.length, 1, screen.join('\n'));
      assert.match(pushed[0]!, /^\[\d\d:\d\d:\d\d\] INFO: pushed /, 'the log line starts its own line');
      assert.ok(screen.includes('step 3'), 'Nix\'s output lines print above the status');
      for (const line of screen) {
        assert.not.match(line, STATUS, `a status fragment stayed on screen: ${JSON.stringify(line)}`);
        assert.is(mixedLine(line), null, `a log line shares its screen line with something else: ${JSON.stringify(line)}`);
      }
      // The summary is one block, with no second dump of the push report's fields.
      assert.not.match(screen.join('\n'), /^\s+(?:uploaded|skipped|mounted|bytes): \d+$/m);
      const summary = screen.indexOf(screen.find((l) => /^127\.0\.0\.1:\d+\/nixdocker\/[0-9a-f]{32}:[0-9a-f]{32}$/.test(l))!);
      assert.ok(summary > 0, 'the reference heads the summary');
      const block = screen.slice(summary + 1, screen.indexOf('EXIT=0'));
      assert.ok(block.length >= 3 && block.every((l) => l.startsWith('  ')), `one indented block under the reference:\n${block.join('\n')}`);
      assert.match(block[0]!, /^ {2}Nix built \d+ derivation\(s\)/);
      assert.ok(block.some((l) => /^ {2}pushed.*; digest sha256:/.test(l)), block.join('\n'));
    } finally {
      await pane.kill();
    }
  });

  test('on a terminal with --json-logs: nothing drawn; JSON lines with progress as debug events', async () => {
    // The offline packages are in the store from the build above: Nix has nothing to do, assembly and push still report.
    const dir = await offlineProject({ volume: VOLUME });
    const scratch = await tmpProject({});
    const raw = path.join(scratch, 'raw');
    const pane = await TmuxPane.start(`${process.execPath} ${BIN} -C ${dir} --json-logs --log-level debug build --force > ${path.join(scratch, 'stdout')}`, {
      width: 100,
      height: 30,
      env: { DOCKER_HOST: process.env.DOCKER_HOST! },
      raw,
    });
    try {
      await pane.done();
      const bytes = (await readFile(raw, 'utf8')).replaceAll('\r', '');
      assert.ok(bytes.endsWith('EXIT=0\n'), bytes.slice(-2000));
      assert.not.ok(bytes.includes('\x1b'), 'no escape sequence reached the terminal');
      const lines = bytes.slice(0, -'EXIT=0\n'.length).trim().split('\n');
      const events = lines.map((l) => JSON.parse(l) as { level: number; progress?: { phase: string } });
      const progress = events.filter((e) => e.progress);
      assert.ok(progress.length > 0 && progress.every((e) => e.level === 20), 'progress events, at debug level');
      for (const phase of ['assemble', 'push']) assert.ok(progress.some((e) => e.progress!.phase === phase), `a ${phase} event`);
    } finally {
      await pane.kill();
    }
  });

  test('off a terminal: no bars, no escape codes; progress goes out as JSON debug events', async () => {
    const dir = await offlineProject({ volume: VOLUME, files: { 'workdir/local.nix': SLOW(`${process.pid}-json-${Date.now()}`) } });
    const r = await runCli(['-C', dir, 'build', '--log-level', 'debug'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
    assert.not.match(r.stderr, '\x1b[', 'no escape sequence');
    const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string; progress?: Record<string, unknown> & { phase: string } });
    const progress = events.filter((e) => e.progress);
    assert.ok(progress.every((e) => e.level === 20), 'progress is debug-level');
    for (const phase of ['build', 'assemble', 'push']) assert.ok(progress.some((e) => e.progress!.phase === phase), `a ${phase} event`);
    const lastPush = progress.filter((e) => e.progress!.phase === 'push').at(-1)!.progress!;
    assert.is(lastPush.blobsDone, lastPush.blobsTotal, 'the last push event is the finished one');
  });
}

test.run();
