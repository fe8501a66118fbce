import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execa, type ResultPromise } from 'execa';
import { access, constants, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import notify, { notifierCommands } from '../../plugins/notify.js';
import type { BuildFailure } from '../../src/hooks.js';
import { applyPlugin, imageDescription } from '../helpers/plugin.js';

const test = suite('notify plugin (real D-Bus session bus)');

// ---------------------------------------------------------------------------
// Argument building for the platforms that cannot run here.

test('macOS: title and body are run-handler arguments, never part of the AppleScript', () => {
  const n = { title: 'say "hi" \\ & end tell', body: 'x" & (do shell script "rm -rf ~") & "', urgency: 'normal' as const };
  const [osa] = notifierCommands(n, 'darwin');
  assert.is(osa?.file, 'osascript');
  assert.equal(osa?.args.slice(-2), [n.title, n.body]);
  const script = osa!.args.slice(0, -2).filter((_, i) => i % 2 === 1).join('\n');
  assert.not.match(script, 'hi');
  assert.not.match(script, 'shell');
});

test('Windows: the script is constant and the text travels in the environment', () => {
  const n = { title: "a'); Remove-Item C:\\ #", body: 'b', urgency: 'critical' as const };
  const [ps] = notifierCommands(n, 'win32');
  assert.is(ps?.file, 'powershell.exe');
  assert.equal(ps?.env, { NIXDOCKER_NOTIFY_TITLE: n.title, NIXDOCKER_NOTIFY_BODY: n.body });
  const script = Buffer.from(ps!.args.at(-1)!, 'base64').toString('utf16le');
  assert.match(script, '$env:NIXDOCKER_NOTIFY_TITLE');
  assert.not.match(script, 'Remove-Item');
});

test('options are checked when the plugin is created', () => {
  assert.throws(() => notify({ timeoutMs: 'soon' }), /"timeoutMs"/);
  assert.throws(() => notify({ command: 'notify-send' }), /"command"/);
  assert.throws(() => notify({ onReady: 'yes' }), /"onReady"/);
});

test('onReady: false and onFailure: false tap nothing', async () => {
  const { hooks } = await applyPlugin(notify({ onReady: false, onFailure: false }));
  assert.is(hooks.imageReady.taps.length, 0);
  assert.is(hooks.buildFailed.taps.length, 0);
});

// ---------------------------------------------------------------------------
// For real: a private session bus, dbus-monitor watching it, a fake
// notification server on it, and notify-send / gdbus run by the plugin.

/** Binaries the real tests need, and the Debian package of each. */
const NEEDED: [string, string][] = [
  ['dbus-daemon', 'dbus-daemon'],
  ['dbus-monitor', 'dbus-bin'],
  ['notify-send', 'libnotify-bin'],
  ['gdbus', 'libglib2.0-bin'],
];

/**
 * notify-send 0.8 asks the server for GetServerInformation before it sends
 * Notify and gives up with ServiceUnknown when nobody owns the name, so a bus
 * without a server shows no Notify call at all (measured). This server owns
 * org.freedesktop.Notifications and answers; dbus-monitor is the observer.
 */
const FAKE_SERVER = `
import sys
from gi.repository import Gio, GLib
XML = """<node><interface name="org.freedesktop.Notifications">
<method name="Notify"><arg type="s" direction="in"/><arg type="u" direction="in"/><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="as" direction="in"/><arg type="a{sv}" direction="in"/><arg type="i" direction="in"/><arg type="u" direction="out"/></method>
<method name="GetServerInformation"><arg type="s" direction="out"/><arg type="s" direction="out"/><arg type="s" direction="out"/><arg type="s" direction="out"/></method>
<method name="GetCapabilities"><arg type="as" direction="out"/></method>
<method name="CloseNotification"><arg type="u" direction="in"/></method>
</interface></node>"""
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
ids = [0]
def call(conn, sender, path, iface, method, params, inv):
    if method == "Notify":
        ids[0] += 1
        inv.return_value(GLib.Variant("(u)", (ids[0],)))
    elif method == "GetServerInformation":
        inv.return_value(GLib.Variant("(ssss)", ("fake", "nixdocker-test", "1", "1.2")))
    elif method == "GetCapabilities":
        inv.return_value(GLib.Variant("(as)", (["body"],)))
    else:
        inv.return_value(None)
conn.register_object("/org/freedesktop/Notifications", Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0], call, None, None)
reply = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
    GLib.Variant("(su)", ("org.freedesktop.Notifications", 4)), GLib.VariantType("(u)"), Gio.DBusCallFlags.NONE, -1, None)
if reply.unpack()[0] != 1:
    sys.exit("could not own org.freedesktop.Notifications")
print("ready", flush=True)
GLib.MainLoop().run()
`;

async function onPath(bin: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const p = path.join(dir, bin);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

/** A Python with GObject introspection: a pyenv or venv python3 first on PATH often has none. */
async function pythonWithGi(): Promise<string | null> {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = await execa(py, ['-c', 'from gi.repository import Gio, GLib'], { reject: false, timeout: 10_000 });
    if (r.exitCode === 0) return py;
  }
  return null;
}

async function missingParts(): Promise<string | null> {
  if (process.platform === 'darwin' || process.platform === 'win32') return `D-Bus notifications are not used on ${process.platform}`;
  const missing: string[] = [];
  for (const [bin, pkg] of NEEDED) if (!(await onPath(bin))) missing.push(`${bin} (install the Debian package ${pkg})`);
  if (!(await pythonWithGi())) missing.push('python3 with GObject introspection (install the Debian package python3-gi)');
  return missing.length ? `missing ${missing.join(', ')}` : null;
}

/** Collects a process's stdout and resolves once it matches, within a bound. */
class Output {
  text = '';
  private waiters: (() => void)[] = [];
  constructor(readonly proc: ResultPromise, readonly what: string) {
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (chunk: string) => {
      this.text += chunk;
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async waitFor(pattern: RegExp | string, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = typeof pattern === 'string' ? (this.text.includes(pattern) ? pattern : null) : (pattern.exec(this.text)?.[0] ?? null);
      if (m !== null) return m;
      const left = deadline - Date.now();
      if (left <= 0 || this.proc.exitCode !== null) {
        throw new Error(`${this.what}: no ${String(pattern)} within ${ms} ms (exit ${this.proc.exitCode}); output so far:\n${this.text}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/**
 * dbus-monitor prints one message per block: a header line, then the
 * arguments (a string's own newlines are printed as they are, unindented).
 */
function notifyCalls(monitorText: string): string[] {
  return monitorText.split(/^(?=(?:method call|method return|signal|error) time=)/m).filter((b) => /member=Notify\b/.test(b.split('\n')[0] ?? ''));
}

function failure(message: string): BuildFailure {
  return { buildId: 7, identity: null, message, error: new Error(message), phase: 'build', platform: null };
}

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  set(vars);
  try {
    return await fn();
  } finally {
    set(saved);
  }
}

const missing = await missingParts();
if (missing) {
  const message = `${missing}; the notify tests need a private session bus`;
  if (process.env.CI) {
    test('required binaries are installed', () => {
      throw new Error(message);
    });
  } else {
    process.stderr.write(`\n[skip] ${message}\n`);
    test.skip('required binaries are installed', () => {});
  }
} else {
  let dir = '';
  let address = '';
  const procs: ResultPromise[] = [];
  let monitor: Output;
  const savedAddress = process.env.DBUS_SESSION_BUS_ADDRESS;

  const start = (file: string, args: string[]) => {
    const p = execa(file, args, { buffer: false, stdin: 'ignore', stderr: 'pipe', reject: false });
    procs.push(p);
    return p;
  };

  test.before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixdocker-notify-'));
    // A private config: the stock session.conf would activate whatever
    // notification daemon the machine has installed.
    await writeFile(
      path.join(dir, 'bus.conf'),
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=${path.join(dir, 'bus')}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>\n`,
    );
    const bus = new Output(start('dbus-daemon', [`--config-file=${path.join(dir, 'bus.conf')}`, '--nofork', '--print-address=1']), 'dbus-daemon');
    address = (await bus.waitFor(/^unix:\S+/m)).trim();
    monitor = new Output(start('dbus-monitor', ['--address', address, "interface='org.freedesktop.Notifications',member='Notify'"]), 'dbus-monitor');
    // Becoming a monitor makes the bus take the monitor's unique name away: from then on it sees everything.
    await monitor.waitFor('member=NameLost');
    const server = new Output(start((await pythonWithGi())!, ['-c', FAKE_SERVER, address]), 'fake notification server');
    await server.waitFor('ready');
    process.env.DBUS_SESSION_BUS_ADDRESS = address;
  });

  test.after(async () => {
    if (savedAddress === undefined) delete process.env.DBUS_SESSION_BUS_ADDRESS;
    else process.env.DBUS_SESSION_BUS_ADDRESS = savedAddress;
    for (const p of procs) p.kill();
    await Promise.allSettled(procs);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('imageReady: notify-send sends Notify with the short name:tag, build time and changed files', async () => {
    const { hooks, warnings } = await applyPlugin(notify());
    const changed = ['env/default.nix', "workdir/it's \\ odd \"1\".nix", 'workdir/local.nix', 'env/image.nix', 'env/python.nix', 'env/rust.nix', 'env/node.nix'];
    await hooks.imageReady.promise(imageDescription({ changed }));
    await monitor.waitFor('nixdocker: 3f9a1c7be2d0:b81e0d6c4a9f ready');
    const call = notifyCalls(monitor.text).find((b) => b.includes('3f9a1c7be2d0:b81e0d6c4a9f ready'))!;
    assert.match(call, 'string "nixdocker"');
    assert.match(call, 'string "nixdocker: 3f9a1c7be2d0:b81e0d6c4a9f ready"');
    // 12+40+1830+9120+210+1460+2110 ms; the backslash and quotes arrive as written.
    assert.match(call, `string "Built in 14.8 s\nChanged: env/default.nix, workdir/it's \\ odd "1".nix, workdir/local.nix, env/image.nix, env/python.nix and 2 more"`);
    assert.not.match(call, 'rust.nix');
    assert.match(call, /string "urgency"\s+variant\s+byte 1/);
    assert.equal(warnings(), []);
  });

  test('imageReady on a first build says so', async () => {
    const { hooks, warnings } = await applyPlugin(notify());
    await hooks.imageReady.promise(imageDescription({ name: 'aaaabbbbcccc0000', tag: 'ddddeeeeffff1111', changed: [] }));
    await monitor.waitFor('aaaabbbbcccc:ddddeeeeffff ready');
    const call = notifyCalls(monitor.text).find((b) => b.includes('aaaabbbbcccc:ddddeeeeffff ready'))!;
    assert.match(call, 'string "Built in 14.8 s\nfirst build"');
    assert.equal(warnings(), []);
  });

  test('buildFailed: critical urgency and the first three lines of the message', async () => {
    const { hooks, warnings } = await applyPlugin(notify());
    await hooks.buildFailed.promise(failure('--marker-one: builder for /nix/store/x-py.drv failed\n\n  line two\nline three\nline four'));
    await monitor.waitFor('--marker-one');
    const call = notifyCalls(monitor.text).find((b) => b.includes('--marker-one'))!;
    assert.match(call, 'string "nixdocker: build failed"');
    // A leading '-' is text, not an option; blank lines do not count.
    assert.match(call, 'string "--marker-one: builder for /nix/store/x-py.drv failed\n  line two\nline three\n…"');
    assert.not.match(call, 'line four');
    assert.match(call, /string "urgency"\s+variant\s+byte 2/);
    assert.equal(warnings(), []);
  });

  test('without notify-send, gdbus sends the same call with typed arguments', async () => {
    // A PATH with gdbus only: the plugin finds no notify-send and falls back.
    const bin = path.join(dir, 'gdbus-only');
    await mkdir(bin, { recursive: true });
    await symlink((await onPath('gdbus'))!, path.join(bin, 'gdbus')).catch(() => {});
    const { warnings } = await withEnv({ PATH: bin }, async () => {
      const applied = await applyPlugin(notify());
      await applied.hooks.buildFailed.promise(failure("42 'quoted' \"double\" back\\slash [] {}\nsecond line"));
      return applied;
    });
    await monitor.waitFor('back\\slash');
    const call = notifyCalls(monitor.text).find((b) => b.includes('back\\slash'))!;
    assert.match(call, 'destination=org.freedesktop.Notifications');
    assert.match(call, 'string "nixdocker: build failed"');
    assert.match(call, `string "42 'quoted' "double" back\\slash [] {}\nsecond line"`);
    assert.match(call, /string "urgency"\s+variant\s+byte 2/);
    assert.match(call, /int32 5000/);
    assert.equal(warnings(), []);
  });

  test('a bus that is not there: hooks resolve, one warning for all failures', async () => {
    await withEnv({ DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(dir, 'no-such-socket')}` }, async () => {
      const { hooks, warnings, logs } = await applyPlugin(notify());
      await hooks.imageReady.promise(imageDescription());
      await hooks.imageReady.promise(imageDescription({ buildId: 2 }));
      await hooks.buildFailed.promise(failure('boom'));
      assert.is(warnings().length, 1, JSON.stringify(logs));
      assert.match(warnings()[0]!.msg, 'desktop notification not shown');
      assert.match(warnings()[0]!.msg, /connect/i);
      assert.is(logs.filter((l) => l.level === 20 && l.msg.includes('not shown')).length, 2);
    });
  });

  test('no session bus configured: one warning that says so, nothing run', async () => {
    await withEnv({ DBUS_SESSION_BUS_ADDRESS: undefined, XDG_RUNTIME_DIR: undefined }, async () => {
      const { hooks, warnings } = await applyPlugin(notify());
      await hooks.imageReady.promise(imageDescription());
      await hooks.imageReady.promise(imageDescription({ buildId: 2 }));
      assert.is(warnings().length, 1);
      assert.match(warnings()[0]!.msg, 'DBUS_SESSION_BUS_ADDRESS is not set');
    });
  });

  test('a notifier that hangs is killed after timeoutMs and does not hold the build', async () => {
    const { hooks, warnings } = await applyPlugin(notify({ command: [process.execPath, '-e', 'setTimeout(() => {}, 30_000)'], timeoutMs: 300 }));
    const t0 = Date.now();
    await hooks.imageReady.promise(imageDescription());
    const ms = Date.now() - t0;
    assert.ok(ms >= 250 && ms < 3000, `took ${ms} ms`);
    assert.is(warnings().length, 1);
    assert.match(warnings()[0]!.msg, 'timed out');
  });

  test('command: title and body are the last two arguments, urgency in the environment', async () => {
    const out = path.join(dir, 'custom.txt');
    const { hooks, warnings } = await applyPlugin(
      notify({ command: ['sh', '-c', 'printf "%s|%s|%s" "$NIXDOCKER_NOTIFY_URGENCY" "$1" "$2" > "$0"', out] }),
    );
    await hooks.buildFailed.promise(failure('$(touch pwned) `x`'));
    assert.is(await readFile(out, 'utf8'), 'critical|nixdocker: build failed|$(touch pwned) `x`');
    assert.equal(warnings(), []);
  });
}

test.run();
