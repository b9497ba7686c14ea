/**
 * Restarts of the Temporal cluster's services for the suite under test/cluster/: `npm run test:cluster`
 * (scripts/run-cluster-tests.ts) owns the cluster's processes and serves TEMPORAL_KCL_TEST_CLUSTER_CONTROL.
 */
import type { ClusterService } from '../../src/dev/cluster';

/** Kills one service (SIGKILL unless told otherwise) and starts it again; resolves once it serves again. */
export async function restartClusterService(
  service: ClusterService,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<{ downMs: number; upMs: number }> {
  const control = process.env.TEMPORAL_KCL_TEST_CLUSTER_CONTROL;
  if (!control) {
    throw new Error('TEMPORAL_KCL_TEST_CLUSTER_CONTROL is not set: run the cluster suite with npm run test:cluster');
  }
  const response = await fetch(`${control}/restart/${service}?signal=${signal}`, { method: 'POST' });
  const body = await response.text();
  if (!response.ok) throw new Error(`restart of ${service}: HTTP ${response.status}: ${body}`);
  return JSON.parse(body) as { downMs: number; upMs: number };
}
