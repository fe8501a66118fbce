import type * as TarStream from 'tar-stream';
import { lazy } from './lazy.js';

/** tar-stream, loaded when a build first reads or writes a tar (see lazy.ts). */
export const tarStream = lazy<typeof TarStream>('tar-stream');
