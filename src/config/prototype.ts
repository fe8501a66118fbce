import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { ConfigInput } from './types.js';

/** The prototype kept its settings here, beside run-builder.sh and run-image.sh. */
export const PROTOTYPE_FILE = 'config.json';

const KEYS = ['userConfig', 'DOCKER_REGISTRY_HOST', 'DOCKER_REGISTRY_CONTAINER'] as const;

export const REGISTRY_CONTAINER_NOTE =
  'DOCKER_REGISTRY_CONTAINER is not needed: nixdocker pushes from the host, so only DOCKER_REGISTRY_HOST (registry.host) matters.';

export interface PrototypeConfig {
  file: string;
  /** The nixdocker settings it amounts to. */
  input: ConfigInput;
  /** "userConfig → userConfig", "DOCKER_REGISTRY_HOST → registry.host", ... */
  converted: string[];
  /** What was left out, and why. */
  notes: string[];
}

/**
 * Reads the prototype's `config.json` in `root`, if there is one that looks
 * like it (an object with one of its keys; any other config.json is not
 * ours). Returns what it means in nixdocker's terms.
 */
export function readPrototypeConfig(root: string): PrototypeConfig | null {
  const file = path.join(root, PROTOTYPE_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null; // someone else's config.json, not valid JSON: not the prototype's
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || !KEYS.some((k) => k in raw)) return null;
  const o = raw as Record<string, unknown>;
  const input: ConfigInput = {};
  const converted: string[] = [];
  const notes: string[] = [];
  const bad = (key: string, want: string) =>
    new UserError(`"${key}" in ${PROTOTYPE_FILE} (the prototype's config) must be ${want}, not ${JSON.stringify(o[key])}.`, `correct it, or run \`nixdocker init\` and edit the .nixdockerrc.json it writes`);

  if (o.userConfig !== undefined) {
    const list = typeof o.userConfig === 'string' ? [o.userConfig] : o.userConfig;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x !== '')) throw bad('userConfig', 'a file path or a list of them');
    input.userConfig = (list as string[]).map((p) => p.replace(/^\.\//, ''));
    converted.push('userConfig → userConfig');
  }
  if (o.DOCKER_REGISTRY_HOST !== undefined) {
    if (typeof o.DOCKER_REGISTRY_HOST !== 'string' || o.DOCKER_REGISTRY_HOST === '') throw bad('DOCKER_REGISTRY_HOST', 'a registry host such as "localhost:5000"');
    input.registry = { host: o.DOCKER_REGISTRY_HOST };
    converted.push('DOCKER_REGISTRY_HOST → registry.host');
  }
  if (o.DOCKER_REGISTRY_CONTAINER !== undefined) notes.push(REGISTRY_CONTAINER_NOTE);
  const unknown = Object.keys(o).filter((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) notes.push(`${unknown.map((k) => `"${k}"`).join(', ')} in ${PROTOTYPE_FILE} mean nothing to nixdocker and were left out.`);
  return { file, input, converted, notes };
}
