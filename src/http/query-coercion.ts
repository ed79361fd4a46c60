/**
 * Query strings are text: `?limit=10` arrives as "10". Body validation must not coerce (a JSON `"true"` is
 * not `true` unless a schema says so), and Fastify has one Ajv for both; so the query alone is converted
 * here, before validation, to the types its route schema declares. What does not convert is left as it
 * was, and validation then rejects it with the usual 400.
 */
import type { FastifyInstance } from 'fastify';

interface PropertySchema {
  readonly type?: string | readonly string[];
}

function coerce(value: string, schema: PropertySchema): unknown {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (
    (types.includes('integer') && /^-?\d{1,15}$/.test(value)) ||
    (types.includes('number') && /^-?\d+(\.\d+)?$/.test(value))
  )
    return Number(value);
  if (types.includes('boolean') && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

export function installQueryCoercion(app: FastifyInstance): void {
  app.addHook('preValidation', async (request) => {
    const schema = request.routeOptions.schema?.querystring as
      { readonly properties?: Readonly<Record<string, PropertySchema>> } | undefined;
    const properties = schema?.properties;
    if (!properties || !request.query || typeof request.query !== 'object') return;
    const query = request.query as Record<string, unknown>;
    for (const [name, property] of Object.entries(properties)) {
      const value = query[name];
      if (typeof value === 'string') query[name] = coerce(value, property);
    }
  });
}
