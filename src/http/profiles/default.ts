/** zapwire's own wire format: `{ error: { code, message } }` errors, no CORS unless origins are given. */
import { installErrorHandler } from '../errors.ts';
import { installCors } from './cors.ts';
import type { EdgeProfile } from './profile.ts';

export function defaultProfile(corsOrigins: readonly string[] = []): EdgeProfile {
  return {
    name: 'default',
    install(app) {
      installCors(app, corsOrigins);
      installErrorHandler(app);
    },
    clientErrorBody: (code, message) => ({ error: { code, message } }),
  };
}
