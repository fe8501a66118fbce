import { execa } from 'execa';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { BuildFailure, ImageDescription, Plugin, PluginContext } from '../src/index.js';

/**
 * The built-in notify plugin: a desktop notification when an image is ready
 * and when a build fails.
 *
 * Every notifier runs through execa with an argument array, so no shell ever
 * sees the title or body (both carry user-influenced text: file names, error
 * messages). What each notifier itself interprets in its arguments is escaped
 * where it is built (see notifierCommands).
 *
 * A notification never affects a build: failures are logged (one warning per
 * plugin instance, later ones at debug level) and never thrown, and the
 * notifier process is killed after `timeoutMs`.
 */
export interface NotifyOptions {
  /** Notify when an image is ready. Default true. */
  onReady?: boolean;
  /** Notify when a build fails. Default true. */
  onFailure?: boolean;
  /**
   * Replaces the platform notifier: program and leading arguments. The title
   * and the body are appended as the last two arguments; the urgency
   * (`normal` or `critical`) is in the environment as NIXDOCKER_NOTIFY_URGENCY.
   */
  command?: string[];
  /** Kill the notifier after this many milliseconds. Default 5000. */
  timeoutMs?: number;
}

export interface Notification {
  title: string;
  body: string;
  urgency: 'normal' | 'critical';
}

/** One way to show a notification: a program, its arguments and extra environment. */
export interface NotifierCommand {
  file: string;
  args: string[];
  env?: Record<string, string>;
}

const APP_NAME = 'nixdocker';
const MAX_CHANGED = 5;
const FAILURE_LINES = 3;
/** Grace between SIGTERM and SIGKILL once the timeout hits. */
const KILL_GRACE_MS = 500;

interface Normalized {
  onReady: boolean;
  onFailure: boolean;
  command: string[] | null;
  timeoutMs: number;
}

function normalizeOptions(raw: NotifyOptions | Record<string, unknown>): Normalized {
  const o = raw as Record<string, unknown>;
  const bool = (key: string, dflt: boolean): boolean => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new TypeError(`notify plugin: option "${key}" must be true or false, not ${JSON.stringify(v)}`);
    return v;
  };
  const command = o.command;
  if (command !== undefined && (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string'))) {
    throw new TypeError('notify plugin: option "command" must be a non-empty array of strings (program, then arguments)');
  }
  const timeoutMs = o.timeoutMs ?? 5000;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError(`notify plugin: option "timeoutMs" must be a positive number of milliseconds, not ${JSON.stringify(o.timeoutMs)}`);
  }
  return { onReady: bool('onReady', true), onFailure: bool('onFailure', true), command: (command as string[] | undefined) ?? null, timeoutMs };
}

/** `nixdocker: <name12>:<tag12> ready`, build time and what changed. */
export function readyNotification(image: ImageDescription): Notification {
  const ms = Object.values(image.durations).reduce((sum, d) => sum + d, 0);
  const changed = image.changed;
  let what = 'first build';
  if (changed.length > 0) {
    what = `Changed: ${changed.slice(0, MAX_CHANGED).join(', ')}`;
    if (changed.length > MAX_CHANGED) what += ` and ${changed.length - MAX_CHANGED} more`;
  }
  return {
    title: `nixdocker: ${image.name.slice(0, 12)}:${image.tag.slice(0, 12)} ready`,
    body: `Built in ${(ms / 1000).toFixed(1)} s\n${what}`,
    urgency: 'normal',
  };
}

/** `nixdocker: build failed` with the first lines of the message. */
export function failureNotification(failure: BuildFailure): Notification {
  const lines = failure.message.split(/\r?\n/).filter((l) => l.trim() !== '');
  let body = lines.slice(0, FAILURE_LINES).join('\n');
  if (lines.length > FAILURE_LINES) body += '\n…';
  return { title: 'nixdocker: build failed', body: body || 'no message', urgency: 'critical' };
}

/** GVariant text for a string: gdbus parses its arguments as GVariant, so the text must be a quoted literal. */
function gvariantString(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}

/** Run by PowerShell: reads title and body from the environment, so user text never becomes script. */
const WINDOWS_TOAST = [
  "$ErrorActionPreference = 'Stop'",
  '[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] | Out-Null',
  '$xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)',
  "$texts = $xml.GetElementsByTagName('text')",
  '$texts.Item(0).AppendChild($xml.CreateTextNode($env:NIXDOCKER_NOTIFY_TITLE)) | Out-Null',
  '$texts.Item(1).AppendChild($xml.CreateTextNode($env:NIXDOCKER_NOTIFY_BODY)) | Out-Null',
  '$toast = [Windows.UI.Notifications.ToastNotification]::new($xml)',
  // An unpackaged process needs a registered app id to toast; PowerShell's own is the usual borrow.
  "[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\WindowsPowerShell\\v1.0\\powershell.exe').Show($toast)",
].join('\n');

/**
 * The notifiers to try for a platform, in order; the next one is tried only
 * when the previous program is not installed.
 */
export function notifierCommands(n: Notification, platform: NodeJS.Platform = process.platform): NotifierCommand[] {
  if (platform === 'darwin') {
    // The text goes in as arguments of the run handler, never into the script,
    // so no AppleScript quoting is needed (nor possible to get wrong).
    return [
      {
        file: 'osascript',
        args: ['-e', 'on run argv', '-e', 'display notification (item 2 of argv) with title (item 1 of argv)', '-e', 'end run', n.title, n.body],
      },
    ];
  }
  if (platform === 'win32') {
    // Untested: there is no Windows here. The toast API needs no module
    // (BurntToast is not assumed); the script is constant and encoded, the
    // text travels in the environment.
    return [
      {
        file: 'powershell.exe',
        args: ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-EncodedCommand', Buffer.from(WINDOWS_TOAST, 'utf16le').toString('base64')],
        env: { NIXDOCKER_NOTIFY_TITLE: n.title, NIXDOCKER_NOTIFY_BODY: n.body },
      },
    ];
  }
  // Linux and the BSDs: the freedesktop notification service on the session bus.
  return [
    {
      file: 'notify-send',
      // notify-send runs the body (not the summary) through g_strcompress, which
      // eats backslashes; doubling them brings the text through unchanged.
      // `--` keeps a title or body that starts with '-' from being read as an option.
      args: [`--app-name=${APP_NAME}`, ...(n.urgency === 'critical' ? ['--urgency=critical'] : []), '--', n.title, n.body.replace(/\\/g, '\\\\')],
    },
    {
      file: 'gdbus',
      // Typed GVariant literals: untyped, gdbus guesses ('[]' became a string
      // when the server could not be introspected, '42' would be an int).
      args: [
        'call', '--session',
        '--dest', 'org.freedesktop.Notifications',
        '--object-path', '/org/freedesktop/Notifications',
        '--method', 'org.freedesktop.Notifications.Notify',
        gvariantString(APP_NAME), 'uint32 0', "''", gvariantString(n.title), gvariantString(n.body), '@as []',
        n.urgency === 'critical' ? "@a{sv} {'urgency': <byte 2>}" : '@a{sv} {}',
        'int32 5000',
      ],
    },
  ];
}

/**
 * Why there is no session bus to notify on, or null when there is one.
 * libdbus and GDBus fall back to $XDG_RUNTIME_DIR/bus (systemd user sessions)
 * when the variable is unset, so that counts too.
 */
function noSessionBus(env: NodeJS.ProcessEnv): string | null {
  if (env.DBUS_SESSION_BUS_ADDRESS) return null;
  if (env.XDG_RUNTIME_DIR && existsSync(path.join(env.XDG_RUNTIME_DIR, 'bus'))) return null;
  return 'no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)';
}

function isMissingProgram(err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ENOENT';
}

function describe(err: unknown): string {
  const e = err as { timedOut?: boolean; stderr?: unknown; shortMessage?: unknown; message?: unknown };
  if (e.timedOut) return 'timed out';
  const stderr = typeof e.stderr === 'string' ? e.stderr.trim().split('\n')[0] : '';
  return stderr || String(e.shortMessage ?? e.message ?? err);
}

/** Creates the notify plugin; `options` come from the config's plugin entry. */
export default function notify(options: NotifyOptions | Record<string, unknown> = {}): Plugin {
  const opts = normalizeOptions(options);
  return {
    name: 'notify',
    apply(hooks, context) {
      const show = createNotifier(opts, context);
      if (opts.onReady) hooks.imageReady.tapPromise('notify', (image) => show(readyNotification(image)));
      if (opts.onFailure) hooks.buildFailed.tapPromise('notify', (failure) => show(failureNotification(failure)));
    },
  };
}

/** Returns a function that shows a notification and never rejects. */
function createNotifier(opts: Normalized, context: PluginContext): (n: Notification) => Promise<void> {
  let warned = false;
  /** Programs found missing: not looked for again. */
  const missing = new Set<string>();

  const trouble = (problem: string, hint: string) => {
    if (warned) {
      context.log.debug(`desktop notification not shown: ${problem}`);
      return;
    }
    warned = true;
    context.log.warn(`desktop notification not shown: ${problem}; ${hint} (further failures are logged at debug level)`);
  };

  const run = (c: NotifierCommand) =>
    execa(c.file, c.args, {
      env: c.env,
      stdin: 'ignore',
      timeout: opts.timeoutMs,
      forceKillAfterDelay: KILL_GRACE_MS,
    });

  return async (n) => {
    try {
      if (opts.command) {
        const [file, ...args] = opts.command as [string, ...string[]];
        await run({ file, args: [...args, n.title, n.body], env: { NIXDOCKER_NOTIFY_URGENCY: n.urgency } });
        return;
      }
      const freedesktop = process.platform !== 'darwin' && process.platform !== 'win32';
      if (freedesktop) {
        const why = noSessionBus(process.env);
        if (why) return trouble(why, 'notifications need a desktop session, or disable the notify plugin');
      }
      const candidates = notifierCommands(n).filter((c) => !missing.has(c.file));
      for (const c of candidates) {
        try {
          await run(c);
          return;
        } catch (err) {
          if (!isMissingProgram(err)) throw err;
          missing.add(c.file);
        }
      }
      const tried = notifierCommands(n).map((c) => c.file);
      trouble(
        `${tried.join(' and ')} not found`,
        freedesktop ? 'install libnotify-bin (notify-send), or set the plugin option "command"' : 'set the plugin option "command"',
      );
    } catch (err) {
      trouble(describe(err), 'check the notifier, or set the plugin option "command"');
    }
  };
}
