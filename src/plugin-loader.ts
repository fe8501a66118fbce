import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config, PluginSpec } from './config/types.js';
import { UserError } from './errors.js';
import type { Plugin, PluginModule } from './hooks.js';

/** Plugins that ship with nixdocker, by config name. */
export const BUILTIN_PLUGINS = ['push', 'notify', 'autorun', 'gc'] as const;

export interface LoadedPlugin {
  plugin: Plugin;
  /** The spec as written in the config, for messages. */
  spec: string;
  /** Where the config lists it: `"plugins[1]" (./mine.mjs) in .nixdockerrc.json`. */
  where: string;
  options: Record<string, unknown>;
}

/**
 * Resolves every `plugins` entry: a built-in name, an npm package (resolved
 * from the project directory) or a ./relative path (from the project
 * directory). A plugin that cannot be loaded stops start-up with a message
 * naming the entry: running without a plugin the user asked for would be worse.
 */
export async function loadPlugins(config: Config): Promise<LoadedPlugin[]> {
  const out: LoadedPlugin[] = [];
  for (const [i, entry] of config.plugins.entries()) {
    const [spec, options] = normalize(entry);
    const where = `"plugins[${i}]" (${spec})${config.configFile ? ` in ${path.basename(config.configFile)}` : ''}`;
    let mod: { default?: unknown };
    try {
      mod = (await import(resolveUrl(spec, config.projectDir))) as { default?: unknown };
    } catch (err) {
      throw new UserError(
        `Cannot load the plugin ${where}: ${(err as Error).message.split('\n')[0]}`,
        spec.startsWith('.') || path.isAbsolute(spec)
          ? 'check the path (it is relative to the project directory)'
          : `use a built-in (${BUILTIN_PLUGINS.join(', ')}) or install the package in the project: npm install ${spec}`,
        { cause: err },
      );
    }
    let plugin: Plugin;
    try {
      plugin = await instantiate((mod.default ?? mod) as PluginModule, options);
    } catch (err) {
      throw new UserError(`The plugin ${where} did not start: ${(err as Error).message}`, 'fix its options in the config (docs/plugins.md lists them for the built-ins)', { cause: err });
    }
    if (!plugin || typeof plugin.apply !== 'function' || typeof plugin.name !== 'string') {
      throw new UserError(`The plugin ${where} is not a plugin: its default export must have a name and an apply(hooks, context) method.`, 'see docs/plugins.md');
    }
    out.push({ plugin, spec, where, options });
  }
  return out;
}

function normalize(entry: PluginSpec): [string, Record<string, unknown>] {
  return typeof entry === 'string' ? [entry, {}] : [entry[0], entry[1]];
}

function resolveUrl(spec: string, projectDir: string): string {
  if ((BUILTIN_PLUGINS as readonly string[]).includes(spec)) return new URL(`../plugins/${spec}.js`, import.meta.url).href;
  if (spec.startsWith('.') || path.isAbsolute(spec)) return pathToFileURL(path.resolve(projectDir, spec)).href;
  return pathToFileURL(createRequire(path.join(projectDir, 'package.json')).resolve(spec)).href;
}

async function instantiate(mod: PluginModule, options: Record<string, unknown>): Promise<Plugin> {
  if (typeof mod !== 'function') return mod;
  // A class has a prototype with apply(); anything else callable is a factory.
  const proto = (mod as { prototype?: { apply?: unknown } }).prototype;
  if (proto && typeof proto.apply === 'function') return new (mod as new (o: Record<string, unknown>) => Plugin)(options);
  return (mod as (o: Record<string, unknown>) => Plugin | Promise<Plugin>)(options);
}
