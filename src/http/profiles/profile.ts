/**
 * A wire profile: how the HTTP edge speaks (response shapes, request leniency, errors, CORS), chosen
 * once from API_COMPAT. The routes and the runtime behind them are the same in every profile.
 */
import type { FastifyInstance } from 'fastify';

export type ApiCompat = 'default' | 'evolution-go';

export interface EdgeProfile {
  readonly name: ApiCompat;
  /** Runs on the root instance before any route is registered (so `onRoute` sees every route). */
  install(app: FastifyInstance): Promise<void> | void;
  /**
   * The body of an error answered outside Fastify's request cycle (Node's parser refused the request, or
   * it did not arrive in time): the shape every other error of the profile has.
   */
  clientErrorBody(code: string, message: string): unknown;
}
