/**
 * Provisions the tools the local stack and the tests need, idempotently, into the cache outside the repository
 * (~/.cache/temporal-kcl by default), printing what it chose for each: the Temporal CLI (dev server), the Java test
 * server and `temporal-kcl-cluster` (a real Temporal cluster, `npm run cluster`). `npm run provision`.
 */
import { resolveTemporalCli, resolveTemporalCluster, resolveTestServer } from '../src/dev/tools';

export async function provisionTools(
  log: (line: string) => void = (line) => console.log(`[provision] ${line}`),
  /** Also the cluster binary (`npm run provision`); `npm test` does not need it. @default true */
  { cluster = true }: { cluster?: boolean } = {},
) {
  const temporalCli = await resolveTemporalCli({ log });
  const testServer = await resolveTestServer({ log });
  if (!cluster) return { temporalCli, testServer, temporalCluster: undefined };
  // After the CLI: its build filled the Go build cache with the same packages, so this build takes seconds.
  // Not fatal here (npm test does not need it): `npm run cluster` and `npm run test:cluster` resolve it again and fail
  // with the reason.
  const temporalCluster = await resolveTemporalCluster({ log }).catch((error: unknown) => {
    log(`temporal cluster: not available: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  });
  return { temporalCli, testServer, temporalCluster };
}

if (require.main === module) {
  provisionTools().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
