/**
 * Every request body takes known keys only: an object schema that lists its properties and does not say
 * otherwise gets `additionalProperties: false`, nested objects included, so an unknown key is a 400 naming
 * it instead of being stored (extra keys used to ride along into the log with every settings change).
 * Applied to every route as it is registered, so a new route cannot forget it.
 */
import type { FastifyInstance } from 'fastify';

type Schema = Record<string, unknown>;

function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (!schema || typeof schema !== 'object') return schema;
  const copy: Schema = {};
  for (const [key, value] of Object.entries(schema as Schema)) {
    if (key === 'properties' && value && typeof value === 'object') {
      copy[key] = Object.fromEntries(Object.entries(value as Schema).map(([k, v]) => [k, closed(v)]));
    } else if (key === 'items' || key === 'anyOf' || key === 'oneOf' || key === 'allOf') {
      copy[key] = closed(value);
    } else copy[key] = value;
  }
  if (copy['properties'] && copy['additionalProperties'] === undefined) copy['additionalProperties'] = false;
  return copy;
}

export function installKnownKeysOnly(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (route.schema?.body) route.schema = { ...route.schema, body: closed(route.schema.body) };
  });
}
