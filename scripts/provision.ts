/**
 * Provisions the tools the local stack and the tests need, idempotently, into the cache outside the repository
 * (~/.cache/temporal-kcl by default), printing what it chose for each. `npm run provision`.
 */
import { resolveTemporalCli, resolveTestServer } from '../src/dev/tools';

export async function provisionTools(log: (line: string) => void = (line) => console.log(`[provision] ${line}`)) {
  const temporalCli = await resolveTemporalCli({ log });
  const testServer = await resolveTestServer({ log });
  return { temporalCli, testServer };
}

if (require.main === module) {
  provisionTools().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
