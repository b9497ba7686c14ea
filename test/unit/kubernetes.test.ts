/**
 * Structural checks of the Kubernetes example (deploy/kubernetes/worker.yaml), as docker-compose.test.ts does for the
 * compose file: the pod's termination grace outlasts the worker's shutdown grace, the probes reach the worker's health
 * endpoints on the port it serves them, and the worker is configured only through variables temporal-kcl reads. The
 * last test feeds the checks a broken copy to show that they find problems.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_HEALTH_PORT, LIVENESS_PATH, READINESS_PATH } from '../../src/cli/health-server';
import { AWS_STANDARD_VARIABLES, ENVIRONMENT_VARIABLES, TEMPORAL_CLIENT_VARIABLES } from '../../src/config/environment';
import { DEFAULT_SHUTDOWN_GRACE_TIME_MS } from '../../src/worker';

const file = resolve(__dirname, '..', '..', 'deploy', 'kubernetes', 'worker.yaml');

interface Probe {
  httpGet?: { path?: string; port?: string | number };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  env?: { name: string }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: { template?: { spec?: { terminationGracePeriodSeconds?: number; containers?: Container[] } } };
}

function load(): Manifest[] {
  const documents = parseAllDocuments(readFileSync(file, 'utf8'));
  assert.ok(Array.isArray(documents));
  for (const document of documents) assert.deepEqual(document.errors, [], 'valid YAML');
  return documents.map((document) => document.toJS() as Manifest);
}

const KNOWN = new Set<string>([
  ...Object.keys(ENVIRONMENT_VARIABLES),
  ...TEMPORAL_CLIENT_VARIABLES,
  ...AWS_STANDARD_VARIABLES,
]);

/** Everything wrong with the worker Deployment of these manifests (empty when nothing is). */
function problems(manifests: Manifest[]): string[] {
  const found: string[] = [];
  const deployment = manifests.find((m) => m.kind === 'Deployment');
  const pod = deployment?.spec?.template?.spec;
  const container = pod?.containers?.find((c) => c.command?.[0] === 'temporal-kcl' && c.command[1] === 'worker');
  if (!pod || !container) return ['no Deployment running `temporal-kcl worker`'];
  const grace = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
  if (grace < DEFAULT_SHUTDOWN_GRACE_TIME_MS + 10_000) {
    found.push(
      `terminationGracePeriodSeconds ${grace / 1000} s does not outlast the worker's ${DEFAULT_SHUTDOWN_GRACE_TIME_MS / 1000} s shutdown grace (+10 s)`,
    );
  }
  if (!container.command?.includes('--processor')) found.push('the worker has no --processor');
  if (!container.image || !/:[^:/]+$/.test(container.image) || container.image.endsWith(':latest')) {
    found.push(`image ${container.image ?? '(none)'} is not pinned`);
  }
  const configMaps = new Set((container.envFrom ?? []).flatMap((e) => (e.configMapRef ? [e.configMapRef.name] : [])));
  const env: Record<string, string> = {};
  for (const manifest of manifests) {
    if (manifest.kind === 'ConfigMap' && configMaps.has(manifest.metadata.name)) Object.assign(env, manifest.data);
  }
  for (const entry of container.env ?? []) env[entry.name] ??= '(from a secret)';
  for (const name of Object.keys(env)) if (!KNOWN.has(name)) found.push(`unknown variable ${name}`);
  const healthPort = Number(env.TEMPORAL_KCL_HEALTH_PORT ?? NaN);
  if (Number.isNaN(healthPort))
    found.push('TEMPORAL_KCL_HEALTH_PORT is not set: the worker serves no health endpoints');
  const portOf = (probe: Probe | undefined) => {
    const port = probe?.httpGet?.port;
    return typeof port === 'number' ? port : container.ports?.find((p) => p.name === port)?.containerPort;
  };
  for (const [kind, probe, path] of [
    ['livenessProbe', container.livenessProbe, LIVENESS_PATH],
    ['readinessProbe', container.readinessProbe, READINESS_PATH],
  ] as const) {
    if (!probe?.httpGet) found.push(`no ${kind}`);
    else {
      if (probe.httpGet.path !== path) found.push(`${kind} asks ${probe.httpGet.path}, not ${path}`);
      if (portOf(probe) !== healthPort)
        found.push(`${kind} port ${String(probe.httpGet.port)} is not the health port ${healthPort}`);
    }
  }
  return found;
}

describe('deploy/kubernetes/worker.yaml', () => {
  test('a worker Deployment with a termination grace longer than the shutdown grace and probes on its health endpoints', () => {
    const manifests = load();
    assert.deepEqual(problems(manifests), []);
    assert.equal(
      manifests.find((m) => m.kind === 'ConfigMap')?.data?.TEMPORAL_KCL_HEALTH_PORT,
      String(DEFAULT_HEALTH_PORT),
      'the port the image uses',
    );
  });

  test('the checks find a short grace, wrong probe paths and ports, and unknown variables', () => {
    const manifests = structuredClone(load());
    const deployment = manifests.find((m) => m.kind === 'Deployment');
    const pod = deployment?.spec?.template?.spec;
    const container = pod?.containers?.[0];
    assert.ok(pod && container?.livenessProbe?.httpGet && container.readinessProbe?.httpGet);
    pod.terminationGracePeriodSeconds = 25;
    container.livenessProbe.httpGet.path = '/health';
    container.readinessProbe.httpGet.port = 9464;
    container.env = [...(container.env ?? []), { name: 'TEMPORAL_HOST' }];

    assert.deepEqual(problems(manifests), [
      `terminationGracePeriodSeconds 25 s does not outlast the worker's ${DEFAULT_SHUTDOWN_GRACE_TIME_MS / 1000} s shutdown grace (+10 s)`,
      'unknown variable TEMPORAL_HOST',
      'livenessProbe asks /health, not /healthz',
      'readinessProbe port 9464 is not the health port 9465',
    ]);
  });
});
