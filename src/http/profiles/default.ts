/**
 * zapwire's own wire format: `{ error: { code, message } }` errors, no CORS unless origins are given, and
 * the instance routes in zapwire's shape (src/http/routes/instance.ts, advanced settings, /send).
 */
import type { InstanceService } from '../../runtime/service.ts';
import type { SqlExecutor } from '../../store/sql.ts';
import type { InstanceHealth } from '../../health/types.ts';
import { installErrorHandler } from '../errors.ts';
import { instanceRoutes } from '../routes/instance.ts';
import { advancedSettingsRoutes } from '../routes/instance-settings.ts';
import { sendRoutes } from '../routes/send.ts';
import { installCors } from './cors.ts';
import type { EdgeProfile } from './profile.ts';

/** What the default profile's routes act through; without it the profile registers no routes. */
export interface DefaultRoutesOptions {
  readonly service: InstanceService;
  readonly db: SqlExecutor;
  /** Instance health, summarised in status and listings (src/health); absent: not shown. */
  readonly health?: (instanceId: string, state: string) => InstanceHealth;
}

export function defaultProfile(
  corsOrigins: readonly string[] = [],
  routes?: DefaultRoutesOptions,
): EdgeProfile {
  return {
    name: 'default',
    install(app) {
      installCors(app, corsOrigins);
      installErrorHandler(app);
    },
    async routes(app) {
      if (!routes) return;
      await app.register(instanceRoutes, routes);
      await app.register(advancedSettingsRoutes, routes);
      await app.register(sendRoutes, routes);
    },
    clientErrorBody: (code, message) => ({ error: { code, message } }),
  };
}
