/** Sent to plugins at initialize; kept in step with package.json by test/unit/version.test.ts. */
export const HOST_VERSION = '0.1.0';
