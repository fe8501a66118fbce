/** The registry client's public surface. */
export { RegistryClient } from './client.js';
export { RegistryError } from './errors.js';
export { parseReference, registryScheme, registryOrigin, isLoopbackHost, type ImageReference } from './reference.js';
export { dockerConfigPath, dockerCredentials } from './docker-config.js';
export { resolveCredentials, ENV_USER, ENV_PASSWORD } from './credentials.js';
export * from './types.js';
