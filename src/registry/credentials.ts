/** Where registry credentials come from, in order: explicit, environment, docker config. */
import { dockerCredentials } from './docker-config.js';
import type { Credentials, RegistryClientOptions } from './types.js';

export const ENV_USER = 'NIXDOCKER_REGISTRY_USER';
export const ENV_PASSWORD = 'NIXDOCKER_REGISTRY_PASSWORD';

export async function resolveCredentials(
  host: string,
  explicit: RegistryClientOptions['credentials'],
  env: NodeJS.ProcessEnv,
): Promise<Credentials | null> {
  if (explicit) return { ...explicit, source: explicit.source ?? 'the credentials option' };
  const user = env[ENV_USER];
  if (user) {
    return { username: user, password: env[ENV_PASSWORD] ?? '', source: `env ${ENV_USER}/${ENV_PASSWORD}` };
  }
  return dockerCredentials(host, env);
}
