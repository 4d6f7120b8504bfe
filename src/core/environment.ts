/**
 * A plugin sees only these host variables, plus the ones its config names: host secrets do not leak
 * into vendor code.
 */
export const ENV_ALLOW_LIST = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR'] as const;

export function pluginEnvironment(
  hostEnv: NodeJS.ProcessEnv,
  passthrough: readonly string[],
  explicit: Readonly<Record<string, string>>,
  internal: Readonly<Record<string, string>>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...ENV_ALLOW_LIST, ...passthrough]) {
    const v = hostEnv[name];
    if (v !== undefined) env[name] = v;
  }
  return { ...env, ...explicit, ...internal };
}
