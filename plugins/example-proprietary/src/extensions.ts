import { errors, type ExtensionHandler } from 'hvplug/plugin-sdk';
import type { JsonObject } from './json.js';
import { validate } from './json-schema.js';

const ECHO_PARAMS = {
  type: 'object',
  additionalProperties: false,
  required: ['message'],
  properties: { message: { type: 'string', maxLength: 4096 } },
} satisfies JsonObject;

/**
 * Vendor methods travel untyped (`x-<vendor>/<name>`): the SDK hands over raw params, so each one
 * checks them against the schema it declares.
 */
export const extensions: Record<string, ExtensionHandler> = {
  'x-example/echo': {
    summary: 'Answers the message it is sent, with the plugin process id: a liveness probe through the vendor channel.',
    params: ECHO_PARAMS,
    result: {
      type: 'object',
      required: ['message', 'pid', 'uptimeMs'],
      properties: { message: { type: 'string' }, pid: { type: 'integer' }, uptimeMs: { type: 'number' } },
    },
    handler: (raw) => {
      const issues = validate(ECHO_PARAMS, raw ?? {});
      if (issues.length) throw errors.invalidParams('x-example/echo', issues);
      const { message } = raw as { message: string };
      return { message, pid: process.pid, uptimeMs: Math.round(process.uptime() * 1000) };
    },
  },
};
