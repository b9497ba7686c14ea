import { ToolUnavailableError } from '../errors';

/** What the local stack needs beyond temporal-kcl's runtime dependencies (they are its devDependencies). */
export const DEV_DEPENDENCIES = ['@temporalio/testing', 'dynalite', 'kinesis-local'] as const;

/**
 * Throws a {@link ToolUnavailableError} naming the missing packages and the command that installs them, when the local
 * stack's development dependencies are absent (temporal-kcl installed as a package rather than cloned).
 */
export function requireDevDependencies(what: string): void {
  const missing = DEV_DEPENDENCIES.filter((name) => {
    try {
      require.resolve(`${name}/package.json`);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  throw new ToolUnavailableError(
    what,
    `needs ${missing.join(', ')} (development dependencies of temporal-kcl, not installed with it): ` +
      `npm install --save-dev ${missing.join(' ')}, or run it from a clone of temporal-kcl (npm ci; npm run ${what === 'demo' ? 'demo' : 'dev'})`,
  );
}
