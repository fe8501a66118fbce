import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import type { Hooks } from '../hooks.js';
import { computeIdentity, repositoryFor, type Identity, type IdentityOptions } from '../identity.js';

/** OCI distribution grammar: a path component of a repository name, and a tag. */
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The identity of the project's inputs as every command and the daemon see
 * it: the hash of the files, then the `identity` waterfall the plugins tap.
 * `build`, `pull`, `run`, `hash`, the daemon's scheduler (and so `status`)
 * all call this one function, so a plugin that changes the tag changes it
 * everywhere at once. Plugins change `name` or `tag`; `repository` and
 * `image` are derived from them here, so the reference always matches, and
 * the inputs (with the bytes read for staging) stay the ones hashed.
 */
export async function identify(config: Config, hooks: Pick<Hooks, 'identity'>, opts: IdentityOptions = {}): Promise<Identity> {
  const computed = await computeIdentity(config, opts);
  const changed = await hooks.identity.promise(computed);
  const { name, tag } = (changed ?? {}) as Partial<Identity>;
  if (typeof name !== 'string' || !NAME.test(name) || typeof tag !== 'string' || !TAG.test(tag)) {
    throw new UserError(
      `A plugin tapping the identity hook returned name ${JSON.stringify(name)} and tag ${JSON.stringify(tag)}, which cannot name an image.`,
      'fix that plugin: a name is lowercase letters, digits and single . _ - between them; a tag is up to 128 letters, digits, _ . - (not starting with . or -)',
    );
  }
  const repository = repositoryFor(config, name);
  const { inputs, contents } = computed;
  return { name, tag, repository, image: `${repository}:${tag}`, inputs, ...(contents && { contents }) };
}
