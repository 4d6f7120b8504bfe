// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';
import { isJsonValue, JSON_VALUE_MESSAGE, type Json } from './json-value.js';

export { isJsonValue, MAX_JSON_DEPTH, type Json } from './json-value.js';

/**
 * Any JSON value, checked in place. zod's own z.json() is a recursive union that copies as it goes and was
 * most of the cost of every call carrying a plugin state (8× slower measured; more in a fresh process).
 */
export const JsonValue = z.custom<Json>(isJsonValue, { message: JSON_VALUE_MESSAGE });
