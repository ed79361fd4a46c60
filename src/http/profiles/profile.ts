/**
 * A wire profile: how the HTTP edge speaks (response shapes, request leniency, errors, CORS), chosen
 * once from API_COMPAT. The runtime behind it is the same in every profile; the routes whose wire shape
 * differs are the profile's own (`routes`), registered instead of the default ones.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';

export type ApiCompat = 'default' | 'evolution-go';

export interface EdgeProfile {
  readonly name: ApiCompat;
  /** Runs on the root instance before any route is registered: hooks, parsers, the error handler. */
  install(app: FastifyInstance): Promise<void> | void;
  /**
   * The routes whose wire shape is this profile's (the instance lifecycle, its settings, sending),
   * registered after the OpenAPI plugin (so they are documented) and beside the routes every profile shares.
   */
  readonly routes: FastifyPluginAsync;
  /**
   * The body of an error answered outside Fastify's request cycle (Node's parser refused the request, or
   * it did not arrive in time): the shape every other error of the profile has.
   */
  clientErrorBody(code: string, message: string): unknown;
}
