/**
 * Structural checks of docker-compose.yml, the Dockerfile it builds and .dockerignore. No Docker engine runs here, so
 * these read the files: every service the README relies on is defined and wired in an order compose can start, the
 * worker is configured only through the variables temporal-kcl reads, the setup job registers exactly the search
 * attributes the workflows set, and the image puts the `temporal-kcl` command on PATH.
 *
 * Each check is a function that returns the problems it finds; the last suite feeds them broken copies to show that
 * they do find them.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, posix, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import {
  AWS_STANDARD_VARIABLES,
  ENVIRONMENT_VARIABLES,
  readEnvironment,
  TEMPORAL_CLIENT_VARIABLES,
} from '../../src/config/environment';
import { DEFAULT_HEALTH_PORT, READINESS_PATH } from '../../src/cli/health-server';
import { searchAttributeCliPairs } from '../../src/search-attributes';

const root = resolve(__dirname, '../..');
const readRepoFile = (path: string) => readFileSync(resolve(root, path), 'utf8');

// --- docker-compose.yml -------------------------------------------------------------------------------------------

const stringOrList = z.union([z.string(), z.array(z.string())]);
const serviceSchema = z.looseObject({
  image: z.string().optional(),
  build: z
    .union([z.string(), z.looseObject({ context: z.string().optional(), dockerfile: z.string().optional() })])
    .optional(),
  entrypoint: stringOrList.optional(),
  command: stringOrList.optional(),
  environment: z
    .union([z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])), z.array(z.string())])
    .optional(),
  ports: z
    .array(
      z.union([
        z.string(),
        z.number(),
        z.looseObject({ target: z.number(), published: z.union([z.string(), z.number()]).optional() }),
      ]),
    )
    .optional(),
  expose: z.array(z.union([z.string(), z.number()])).optional(),
  depends_on: z
    .union([z.array(z.string()), z.record(z.string(), z.looseObject({ condition: z.string().optional() }))])
    .optional(),
  healthcheck: z.looseObject({ test: stringOrList.optional(), disable: z.boolean().optional() }).optional(),
  restart: z.string().optional(),
});
const composeSchema = z.looseObject({ services: z.record(z.string(), serviceSchema) });

type ComposeService = z.infer<typeof serviceSchema>;
type ComposeFile = z.infer<typeof composeSchema>;

/** The services the README, the tools and the worker rely on. */
const REQUIRED_SERVICES = [
  'postgresql',
  'temporal-admin-tools',
  'temporal',
  'temporal-setup',
  'temporal-ui',
  'localstack',
  'worker',
];
/** Host ports users and tools reach: Temporal frontend, Temporal UI, LocalStack. */
const REQUIRED_HOST_PORTS = [7233, 8080, 4566];
/** What the worker cannot run without. */
const REQUIRED_WORKER_VARIABLES = ['TEMPORAL_ADDRESS', 'KINESIS_ENDPOINT', 'DYNAMODB_ENDPOINT', 'AWS_REGION'];

function loadCompose(): ComposeFile {
  const document = parseDocument(readRepoFile('docker-compose.yml'));
  assert.deepEqual(
    document.errors.map((error) => error.message),
    [],
    'docker-compose.yml is valid YAML',
  );
  return composeSchema.parse(document.toJS());
}

function asList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : typeof value === 'string' ? [value] : value;
}

/** `depends_on` in either syntax, as target -> condition (the short syntax means `service_started`). */
function dependenciesOf(service: ComposeService): Map<string, string> {
  const dependsOn = service.depends_on ?? [];
  if (Array.isArray(dependsOn)) return new Map(dependsOn.map((name) => [name, 'service_started']));
  return new Map(Object.entries(dependsOn).map(([name, spec]) => [name, spec.condition ?? 'service_started']));
}

function missingDependencies(compose: ComposeFile): string[] {
  return Object.entries(compose.services).flatMap(([name, service]) =>
    [...dependenciesOf(service).keys()].filter((target) => !(target in compose.services)).map((t) => `${name} -> ${t}`),
  );
}

/** A dependency cycle as the path that closes it (`a -> b -> a`), or undefined when the graph is acyclic. */
function findDependencyCycle(compose: ComposeFile): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): string[] | undefined => {
    if (state.get(name) === 'done') return undefined;
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name];
    state.set(name, 'visiting');
    const service = compose.services[name];
    for (const target of service ? dependenciesOf(service).keys() : []) {
      const cycle = visit(target, [...path, name]);
      if (cycle) return cycle;
    }
    state.set(name, 'done');
    return undefined;
  };
  for (const name of Object.keys(compose.services)) {
    const cycle = visit(name, []);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Dependencies whose condition the target cannot meet: `service_healthy` needs a health check. */
function unmeetableConditions(compose: ComposeFile): string[] {
  return Object.entries(compose.services).flatMap(([name, service]) =>
    [...dependenciesOf(service)].flatMap(([target, condition]) => {
      const healthcheck = compose.services[target]?.healthcheck;
      const healthy = healthcheck !== undefined && healthcheck.disable !== true && healthcheck.test !== undefined;
      return condition === 'service_healthy' && !healthy ? [`${name} waits for ${target} to be healthy`] : [];
    }),
  );
}

interface PortMapping {
  published: number | undefined;
  target: number;
}

function expandRange(range: string): number[] {
  const [, first = '', last = first] = /^(\d+)(?:-(\d+))?$/.exec(range) ?? [];
  if (first === '') throw new Error(`not a port or port range: ${range}`);
  return Array.from({ length: Number(last) - Number(first) + 1 }, (_, i) => Number(first) + i);
}

/** Published ports in compose's short (`[ip:][host:]container[/proto]`) and long syntax. */
function portMappings(service: ComposeService): PortMapping[] {
  return (service.ports ?? []).flatMap((port): PortMapping[] => {
    if (typeof port === 'number') return [{ published: undefined, target: port }];
    if (typeof port === 'object') {
      return [{ published: port.published === undefined ? undefined : Number(port.published), target: port.target }];
    }
    const parts = port.replace(/\/(tcp|udp)$/, '').split(':');
    const targets = expandRange(parts.at(-1) ?? '');
    const published = parts.length >= 2 ? expandRange(parts.at(-2) ?? '') : [];
    return targets.map((target, i) => ({ published: published[i], target }));
  });
}

function duplicatePublishedPorts(compose: ComposeFile): number[] {
  const seen = new Set<number>();
  const duplicates = new Set<number>();
  for (const service of Object.values(compose.services)) {
    for (const { published } of portMappings(service)) {
      if (published === undefined) continue;
      if (seen.has(published)) duplicates.add(published);
      seen.add(published);
    }
  }
  return [...duplicates];
}

/** A tag other than `latest`, or a digest; `registry:5000/name` alone has no tag. */
function imageIsPinned(image: string): boolean {
  if (image.includes('@sha256:')) return true;
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  const colon = lastSegment.indexOf(':');
  return colon > 0 && colon < lastSegment.length - 1 && lastSegment.slice(colon + 1) !== 'latest';
}

function unpinnedImages(compose: ComposeFile): string[] {
  return Object.entries(compose.services)
    .filter(([, service]) => service.image !== undefined && !imageIsPinned(service.image))
    .map(([name, service]) => `${name}: ${service.image}`);
}

function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value && typeof value === 'object') return Object.values(value).flatMap(stringsIn);
  return [];
}

/** Values in which compose would substitute a host variable: a `$` not written as `$$`. */
function hostInterpolations(compose: ComposeFile): string[] {
  return stringsIn(compose).filter((value) => value.replaceAll('$$', '').includes('$'));
}

/** What the container sees: compose turns `$$` into `$`. */
const unescape = (value: string) => value.replaceAll('$$', '$');

function environmentOf(service: ComposeService): Record<string, string | undefined> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(
      environment.map((entry) => {
        const equals = entry.indexOf('=');
        return equals < 0 ? [entry, undefined] : [entry.slice(0, equals), entry.slice(equals + 1)];
      }),
    );
  }
  return Object.fromEntries(
    Object.entries(environment).map(([name, value]) => [name, value === null ? undefined : String(value)]),
  );
}

const KNOWN_VARIABLES = new Set<string>([
  ...Object.keys(ENVIRONMENT_VARIABLES),
  ...TEMPORAL_CLIENT_VARIABLES,
  ...AWS_STANDARD_VARIABLES,
]);

function unknownVariables(environment: Record<string, string | undefined>): string[] {
  return Object.keys(environment).filter((name) => !KNOWN_VARIABLES.has(name));
}

/** Container ports a service listens on, as far as the compose file says (published targets and `expose`). */
function containerPorts(service: ComposeService): Set<number> {
  return new Set([...portMappings(service).map((port) => port.target), ...(service.expose ?? []).map(Number)]);
}

/** Addresses in the worker's environment must name a compose service and a port that service listens on. */
function unreachableAddresses(compose: ComposeFile, environment: Record<string, string | undefined>): string[] {
  const addresses = {
    TEMPORAL_ADDRESS: environment.TEMPORAL_ADDRESS && `tcp://${environment.TEMPORAL_ADDRESS}`,
    KINESIS_ENDPOINT: environment.KINESIS_ENDPOINT,
    DYNAMODB_ENDPOINT: environment.DYNAMODB_ENDPOINT,
  };
  return Object.entries(addresses).flatMap(([name, address]) => {
    if (!address) return [`${name} is not set`];
    const url = new URL(address);
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const service = compose.services[url.hostname];
    if (!service) return [`${name}: no service named ${url.hostname}`];
    return containerPorts(service).has(port) ? [] : [`${name}: ${url.hostname} does not listen on ${port}`];
  });
}

interface SearchAttributeRegistration {
  namespace: string | undefined;
  address: string | undefined;
  /** `Name=Type`, as searchAttributeCliPairs() writes them. */
  pairs: string[];
  problems: string[];
}

const SHELL_SEPARATORS = new Set([';', '&&', '||', '|', 'do', 'then', 'done', 'fi']);

/** Every `temporal operator search-attribute create` in a shell script or exec-form command. */
function searchAttributeRegistrations(script: string): SearchAttributeRegistration[] {
  // `for name in A B; do ... --name "$name" ...` registers A and B.
  const loops = new Map(
    [...script.matchAll(/\bfor\s+(\w+)\s+in\s+([^;\n]+?)\s*(?:;|\n)\s*do\b/g)].map(
      (match) => [match[1] ?? '', (match[2] ?? '').trim().split(/\s+/)] as const,
    ),
  );
  const lines = script.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  return lines.flatMap((line) => {
    const tokens = line
      .replace(/([;|&]+)/g, ' $1 ')
      .trim()
      .split(/\s+/)
      .map((token) => token.replace(/^(['"])(.*)\1$/, '$2'));
    const start = tokens.findIndex(
      (token, i) =>
        token === 'temporal' &&
        tokens[i + 1] === 'operator' &&
        tokens[i + 2] === 'search-attribute' &&
        tokens[i + 3] === 'create',
    );
    if (start < 0) return [];
    const registration: SearchAttributeRegistration = {
      namespace: undefined,
      address: undefined,
      pairs: [],
      problems: [],
    };
    const names: string[] = [];
    const types: string[] = [];
    let repeat = 1;
    for (let i = start + 4; i < tokens.length && !SHELL_SEPARATORS.has(tokens[i] ?? ''); i++) {
      const token = tokens[i] ?? '';
      const [flag, inline] = token.startsWith('--') && token.includes('=') ? token.split(/=(.*)/s) : [token, undefined];
      const value = () => inline ?? tokens[++i] ?? '';
      if (flag === '--name') {
        const name = value();
        const looped = loops.get(/^\$\{?(\w+)\}?$/.exec(name)?.[1] ?? '');
        if (looped) repeat = looped.length;
        names.push(...(looped ?? [name]));
      } else if (flag === '--type') types.push(value());
      else if (flag === '--namespace' || flag === '-n') registration.namespace = value();
      else if (flag === '--address') registration.address = value();
      else registration.problems.push(`unexpected argument ${token}`);
    }
    if (repeat > 1 && types.length === 1) types.push(...Array<string>(repeat - 1).fill(types[0] ?? ''));
    if (names.length !== types.length) registration.problems.push(`${names.length} names but ${types.length} types`);
    registration.pairs = names.map((name, i) => `${name}=${types[i] ?? '?'}`);
    return [registration];
  });
}

/** The text a service runs: entrypoint and command, with compose's `$$` escapes resolved. */
const commandText = (service: ComposeService) =>
  unescape([...asList(service.entrypoint), ...asList(service.command)].join(' '));

// --- Dockerfile ---------------------------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Stages and their instructions; comments dropped, continuation lines joined. */
function parseDockerfile(text: string): Stage[] {
  const logicalLines = text
    .split(/\r?\n/)
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\r?\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const stages: Stage[] = [];
  for (const line of logicalLines) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') {
      const [image = '', as, name] = args.replace(/--platform=\S+\s*/, '').split(/\s+/);
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile instruction before FROM: ${line}`);
    stage.instructions.push({ keyword: keyword.toUpperCase(), args });
  }
  return stages;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  destination: string;
  /** Sources land inside the destination (several sources, or a destination written as a directory). */
  intoDirectory: boolean;
  /** The stage's WORKDIR at this instruction. */
  workdir: string;
}

function copiesOf(stage: Stage): Copy[] {
  let workdir = '/';
  const copies: Copy[] = [];
  for (const { keyword, args } of stage.instructions) {
    if (keyword === 'WORKDIR') workdir = posix.resolve(workdir, args);
    if (keyword !== 'COPY' && keyword !== 'ADD') continue;
    const words = args.startsWith('[') ? z.array(z.string()).parse(JSON.parse(args)) : args.split(/\s+/);
    const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((word) => !word.startsWith('--'));
    const destination = paths.at(-1) ?? '';
    const sources = paths.slice(0, -1);
    copies.push({
      from,
      sources,
      destination: posix.resolve(workdir, destination),
      intoDirectory: sources.length > 1 || /(^|\/)\.?$/.test(destination),
      workdir,
    });
  }
  return copies;
}

function workdirOf(stage: Stage): string {
  return stage.instructions
    .filter((instruction) => instruction.keyword === 'WORKDIR')
    .reduce((dir, instruction) => posix.resolve(dir, instruction.args), '/');
}

/** `.dockerignore` patterns as regular expressions over context-relative paths (and everything under them). */
function dockerignoreMatchers(text: string): RegExp[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('!'))
    .map((pattern) => {
      const source = pattern
        .replace(/^\/+|\/+$/g, '')
        .split('/')
        .map((segment) =>
          segment === '**'
            ? '.*'
            : segment
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]'),
        )
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return new RegExp(`^${source}(?:/.*)?$`);
    });
}

/**
 * COPY sources that would not be there: a context path the repository lacks or .dockerignore drops, or a path of an
 * earlier stage that the stage neither copied in nor produced (npm ci -> node_modules, npm run build -> outDir).
 */
function missingCopySources(stages: Stage[], context: string, options: { ignore: RegExp[]; outDir: string }): string[] {
  const problems: string[] = [];
  const produced = new Map<string, string[]>();
  for (const stage of stages) {
    const paths: string[] = [];
    for (const copy of copiesOf(stage)) {
      if (copy.from === undefined) {
        for (const source of copy.sources) {
          const relative = posix.normalize(source).replace(/\/$/, '');
          if (!existsSync(resolve(context, relative))) problems.push(`COPY ${source}: not in the build context`);
          else if (options.ignore.some((pattern) => pattern.test(relative))) {
            problems.push(`COPY ${source}: excluded by .dockerignore`);
          }
        }
      } else {
        const available = produced.get(copy.from);
        if (!available) {
          problems.push(`COPY --from=${copy.from}: no earlier stage of that name`);
          continue;
        }
        for (const source of copy.sources) {
          const path = posix.resolve('/', source);
          const covered = available.some((made) => path === made || path.startsWith(`${made}/`));
          if (!covered) problems.push(`COPY --from=${copy.from} ${source}: that stage neither copies nor builds it`);
        }
      }
      for (const source of copy.sources) {
        paths.push(copy.intoDirectory ? posix.join(copy.destination, posix.basename(source)) : copy.destination);
      }
    }
    const workdir = workdirOf(stage);
    const runs = stage.instructions.filter((instruction) => instruction.keyword === 'RUN').map((i) => i.args);
    if (runs.some((run) => /\bnpm (ci|install)\b/.test(run))) paths.push(posix.join(workdir, 'node_modules'));
    if (runs.some((run) => /\bnpm run build\b/.test(run))) paths.push(posix.join(workdir, options.outDir));
    if (stage.name) produced.set(stage.name, paths);
  }
  return problems;
}

const tsconfigBuildSchema = z.object({ compilerOptions: z.object({ rootDir: z.string(), outDir: z.string() }) });
const packageSchema = z.object({ bin: z.record(z.string(), z.string()), engines: z.object({ node: z.string() }) });

function loadImage() {
  const compose = loadCompose();
  const worker = compose.services.worker;
  assert.ok(worker?.build, 'the worker service is built from this repository');
  const build = typeof worker.build === 'string' ? { context: worker.build } : worker.build;
  const context = resolve(root, build.context ?? '.');
  const dockerfilePath = resolve(context, build.dockerfile ?? 'Dockerfile');
  const stages = existsSync(dockerfilePath) ? parseDockerfile(readFileSync(dockerfilePath, 'utf8')) : [];
  const finalStage = stages.at(-1);
  return { compose, worker, context, dockerfilePath, stages, finalStage };
}

// --- the specification --------------------------------------------------------------------------------------------

describe('docker-compose.yml', () => {
  test('parses, and defines the Temporal, UI, LocalStack, setup and worker services', () => {
    const compose = loadCompose();

    const missing = REQUIRED_SERVICES.filter((name) => !(name in compose.services));

    assert.deepEqual(missing, []);
  });

  test('publishes every host port once, including 7233, 8080, 4566 and the worker metrics port', () => {
    const compose = loadCompose();
    const metricsPort = Number(environmentOf(compose.services.worker ?? {}).TEMPORAL_KCL_METRICS_PORT);

    const published = Object.values(compose.services).flatMap((s) => portMappings(s).map((p) => p.published));

    assert.deepEqual(duplicatePublishedPorts(compose), []);
    for (const port of [...REQUIRED_HOST_PORTS, metricsPort]) {
      assert.ok(published.includes(port), `host port ${port} is published`);
    }
    assert.ok(
      portMappings(compose.services.worker ?? {}).some((p) => p.published === metricsPort && p.target === metricsPort),
      'the worker publishes its metrics port as is',
    );
  });

  test('depends only on services it defines, without a cycle, on conditions the targets can meet', () => {
    const compose = loadCompose();

    assert.deepEqual(missingDependencies(compose), []);
    assert.equal(findDependencyCycle(compose), undefined);
    assert.deepEqual(unmeetableConditions(compose), []);
  });

  test('starts the worker once Temporal is healthy, the search attributes exist and LocalStack is healthy', () => {
    const compose = loadCompose();

    const worker = Object.fromEntries(dependenciesOf(compose.services.worker ?? {}));
    const setup = Object.fromEntries(dependenciesOf(compose.services['temporal-setup'] ?? {}));

    assert.deepEqual(worker, {
      temporal: 'service_healthy',
      'temporal-setup': 'service_completed_successfully',
      localstack: 'service_healthy',
    });
    assert.deepEqual(setup, { temporal: 'service_healthy' });
    assert.equal(compose.services['temporal-setup']?.restart, 'no', 'the setup job runs once');
  });

  test('pins every image to a tag other than latest', () => {
    const compose = loadCompose();

    assert.deepEqual(unpinnedImages(compose), []);
    const images = Object.values(compose.services).flatMap((service) => (service.image ? [service.image] : []));
    assert.deepEqual(
      images.filter((image) => image.startsWith('temporalio/auto-setup')),
      [],
      'no deprecated auto-setup image',
    );
    const server = images.find((image) => image.startsWith('temporalio/server:'));
    const adminTools = images.filter((image) => image.startsWith('temporalio/admin-tools:'));
    assert.ok(server, 'the Temporal server image');
    assert.ok(adminTools.length > 0, 'the admin-tools image');
    const version = server.split(':')[1];
    for (const image of adminTools) assert.equal(image.split(':')[1], version, `${image} matches ${server}`);
  });

  test('sets up the SQL schemas with admin-tools before the server starts, and mounts only files it has', () => {
    const compose = loadCompose();
    const adminTools = compose.services['temporal-admin-tools'] ?? {};
    const script = commandText(adminTools);

    for (const step of ['create', 'setup-schema', 'update-schema'])
      assert.match(script, new RegExp(`temporal-sql-tool .*${step}|\\$tool ${step}`));
    assert.match(script, /\btemporal_visibility\b/);
    assert.deepEqual(Object.fromEntries(dependenciesOf(compose.services.temporal ?? {})), {
      'temporal-admin-tools': 'service_completed_successfully',
    });
    const mounts = Object.values(compose.services).flatMap((service) =>
      z
        .array(z.string())
        .catch([])
        .parse((service as { volumes?: unknown }).volumes ?? []),
    );
    const missing = mounts
      .filter((mount) => mount.startsWith('./'))
      .map((mount) => mount.split(':')[0] ?? '')
      .filter((source) => !existsSync(resolve(root, source)));
    assert.deepEqual(missing, []);
    assert.ok(compose.services.worker?.healthcheck?.test, 'the worker has a health check');
  });

  test('takes nothing from the host environment: every $ is escaped as $$', () => {
    assert.deepEqual(hostInterpolations(loadCompose()), []);
  });

  test('configures the worker only through temporal-kcl and AWS SDK variables, with addresses of the stack', () => {
    const compose = loadCompose();
    const environment = environmentOf(compose.services.worker ?? {});

    const parsed = readEnvironment(environment);

    assert.deepEqual(unknownVariables(environment), []);
    assert.deepEqual(
      REQUIRED_WORKER_VARIABLES.filter((name) => !environment[name]),
      [],
      'required worker variables are set',
    );
    assert.deepEqual(unreachableAddresses(compose, environment), []);
    assert.equal(parsed.TEMPORAL_KCL_METRICS_PORT, Number(environment.TEMPORAL_KCL_METRICS_PORT));
  });

  test('registers exactly the search attributes the workflows set, where the worker runs them', () => {
    const compose = loadCompose();
    const worker = readEnvironment(environmentOf(compose.services.worker ?? {}));

    const registrations = Object.entries(compose.services).flatMap(([name, service]) =>
      searchAttributeRegistrations(commandText(service)).map((registration) => ({ name, ...registration })),
    );

    assert.equal(registrations.length, 1, 'one service registers the search attributes');
    const [registration] = registrations;
    assert.equal(registration?.name, 'temporal-setup');
    assert.deepEqual(registration?.problems, []);
    assert.deepEqual([...(registration?.pairs ?? [])].sort(), [...searchAttributeCliPairs()].sort());
    assert.equal(registration?.namespace, worker.TEMPORAL_NAMESPACE);
    assert.equal(registration?.address, worker.TEMPORAL_ADDRESS);
  });
});

describe('the worker image', () => {
  const packageJson = packageSchema.parse(JSON.parse(readRepoFile('package.json')));
  const tsconfigBuild = tsconfigBuildSchema.parse(JSON.parse(readRepoFile('tsconfig.build.json')));
  const binPath = packageJson.bin['temporal-kcl'] ?? '';
  /** The worker's --processor path, compiled from src/ into the image. */
  const processorPath = (command: string[]) => command[command.indexOf('--processor') + 1] ?? '';
  const sourceOf = (compiledPath: string, workdir: string) =>
    posix.join(
      tsconfigBuild.compilerOptions.rootDir,
      posix.relative(posix.join(workdir, tsconfigBuild.compilerOptions.outDir), compiledPath).replace(/\.js$/, '.ts'),
    );

  test("is built from a Dockerfile in the worker's build context", () => {
    const { dockerfilePath, stages } = loadImage();

    assert.ok(existsSync(dockerfilePath), `${dockerfilePath} exists`);
    assert.ok(stages.length >= 2, 'multi-stage: build, then runtime');
  });

  test('builds on pinned Node images that satisfy package.json engines', () => {
    const { stages } = loadImage();
    const requiredMajor = Number(/\d+/.exec(packageJson.engines.node)?.[0]);

    for (const { image } of stages) {
      assert.ok(imageIsPinned(image), `${image} is pinned`);
      const [, name, major] = /^(?:docker\.io\/)?(?:library\/)?(node):(\d+)/.exec(image) ?? [];
      assert.equal(name, 'node', `${image} is a Node image`);
      assert.ok(Number(major) >= requiredMajor, `${image} satisfies node ${packageJson.engines.node}`);
    }
  });

  test("puts package.json's temporal-kcl bin on PATH and runs as the non-root node user", () => {
    const { finalStage } = loadImage();
    assert.ok(finalStage);
    const workdir = workdirOf(finalStage);
    const runs = finalStage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    const users = finalStage.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
    const binInImage = posix.join(workdir, binPath);

    const links = runs.flatMap((run) => [...run.matchAll(/\bln\s+-sf?\s+(\S+)\s+(\S+)/g)].map((m) => [m[1], m[2]]));
    const executables = runs.flatMap((run) => [...run.matchAll(/\bchmod\s+\+x\s+(\S+)/g)].map((m) => m[1]));

    assert.deepEqual(links, [[binInImage, '/usr/local/bin/temporal-kcl']]);
    assert.ok(executables.includes(binInImage), `${binInImage} is made executable`);
    assert.equal(users.at(-1), 'node');
    const binSource = readRepoFile(sourceOf(binInImage, workdir));
    assert.match(binSource, /^#!\/usr\/bin\/env node\n/, 'the bin starts with a node shebang');
  });

  test('runs temporal-kcl by default and leaves the command free for `docker compose run worker temporal-kcl ...`', () => {
    const { finalStage } = loadImage();
    assert.ok(finalStage);

    const entrypoints = finalStage.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
    const cmd = finalStage.instructions.filter((i) => i.keyword === 'CMD').at(-1);

    assert.deepEqual(entrypoints, []);
    assert.equal(z.array(z.string()).parse(JSON.parse(cmd?.args ?? '[]'))[0], 'temporal-kcl');
  });

  test('exposes the port the compose worker serves metrics on', () => {
    const { finalStage, worker } = loadImage();
    assert.ok(finalStage);

    const exposed = finalStage.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));

    assert.ok(exposed.includes(environmentOf(worker).TEMPORAL_KCL_METRICS_PORT ?? ''), `EXPOSE ${exposed.join(' ')}`);
  });

  test('has a HEALTHCHECK on the readiness endpoint of the health port it sets and exposes', () => {
    const { finalStage } = loadImage();
    assert.ok(finalStage);
    const env = Object.fromEntries(
      finalStage.instructions
        .filter((i) => i.keyword === 'ENV')
        .map((i) => /^(\S+?)[= ](.*)$/.exec(i.args)?.slice(1) ?? [])
        .map(([name = '', value = '']) => [name, value]),
    );
    const healthchecks = finalStage.instructions.filter((i) => i.keyword === 'HEALTHCHECK');
    const exposed = finalStage.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));

    assert.equal(env.TEMPORAL_KCL_HEALTH_PORT, String(DEFAULT_HEALTH_PORT));
    assert.ok(exposed.includes(String(DEFAULT_HEALTH_PORT)), `EXPOSE ${exposed.join(' ')}`);
    assert.equal(healthchecks.length, 1);
    assert.match(healthchecks[0]?.args ?? '', new RegExp(`TEMPORAL_KCL_HEALTH_PORT.*${READINESS_PATH}`));
  });

  test('copies only files the repository has, or outputs of its build stage', () => {
    const { stages, context } = loadImage();
    const ignore = dockerignoreMatchers(readRepoFile('.dockerignore'));

    const problems = missingCopySources(stages, context, { ignore, outDir: tsconfigBuild.compilerOptions.outDir });

    assert.deepEqual(problems, []);
    const copiedSources = stages.flatMap(copiesOf).flatMap((copy) => copy.sources);
    assert.ok(copiedSources.includes('src'), 'the build stage copies the sources');
  });

  test('.dockerignore keeps host installs, builds, history and artifacts out of the context', () => {
    const ignore = dockerignoreMatchers(readRepoFile('.dockerignore'));

    const kept = ['node_modules', 'dist', '.git', 'test-artifacts', 'bench/results', 'worker.log'].filter(
      (path) => !ignore.some((pattern) => pattern.test(path)),
    );

    assert.deepEqual(kept, []);
  });

  test('runs the worker with an example processor the image compiles from src/', () => {
    const { worker, finalStage } = loadImage();
    assert.ok(finalStage);
    const command = asList(worker.command);
    const workdir = workdirOf(finalStage);

    const processor = processorPath(command);

    assert.deepEqual(command.slice(0, 3), ['temporal-kcl', 'worker', '--processor']);
    assert.ok(isAbsolute(processor) && processor.endsWith('.js'), `${processor} is an absolute .js path`);
    assert.ok(processor.startsWith(`${posix.join(workdir, tsconfigBuild.compilerOptions.outDir)}/`), 'inside dist/');
  });

  const processorSource = (() => {
    const { worker, finalStage } = loadImage();
    return finalStage ? sourceOf(processorPath(asList(worker.command)), workdirOf(finalStage)) : '';
  })();
  test(
    `the worker's processor module has a source, ${processorSource}`,
    { skip: !existsSync(resolve(root, processorSource)) && `${processorSource} is not written yet` },
    () => {
      assert.ok(processorSource.endsWith('.ts') && existsSync(resolve(root, processorSource)));
    },
  );
});

describe('the checkers reject broken stacks', () => {
  test('a dependency cycle', () => {
    const compose = structuredClone(loadCompose());
    compose.services.temporal = {
      ...compose.services.temporal,
      depends_on: { worker: { condition: 'service_started' } },
    };

    const cycle = findDependencyCycle(compose);

    assert.ok(cycle?.includes('worker') && cycle.includes('temporal'), `found ${cycle?.join(' -> ')}`);
  });

  test('a dependency on a service that does not exist, or on a health check that does not exist', () => {
    const compose = structuredClone(loadCompose());
    compose.services['temporal-ui'] = { ...compose.services['temporal-ui'], depends_on: ['temporl'] };
    compose.services.worker = {
      ...compose.services.worker,
      depends_on: { 'temporal-ui': { condition: 'service_healthy' } },
    };

    assert.deepEqual(missingDependencies(compose), ['temporal-ui -> temporl']);
    assert.deepEqual(unmeetableConditions(compose), ['worker waits for temporal-ui to be healthy']);
  });

  test('a host port published twice', () => {
    const compose = structuredClone(loadCompose());
    compose.services.localstack = { ...compose.services.localstack, ports: ['127.0.0.1:8080:4566/tcp'] };

    assert.deepEqual(duplicatePublishedPorts(compose), [8080]);
  });

  test('images without a tag, or on latest', () => {
    assert.deepEqual(
      ['postgres', 'postgres:latest', 'localhost:5000/postgres', 'postgres:16', 'localhost:5000/postgres:16'].map(
        imageIsPinned,
      ),
      [false, false, false, true, true],
    );
    assert.equal(imageIsPinned(`postgres@sha256:${'0'.repeat(64)}`), true);
  });

  test('a variable temporal-kcl does not read, and an address no service answers', () => {
    const compose = loadCompose();
    const environment: Record<string, string | undefined> = {
      ...environmentOf(compose.services.worker ?? {}),
      TEMPORAL_HOST: 'temporal',
      KINESIS_ENDPOINT: 'http://localstack:4567',
      DYNAMODB_ENDPOINT: 'http://dynamodb:8000',
    };

    assert.deepEqual(unknownVariables(environment), ['TEMPORAL_HOST']);
    assert.deepEqual(unreachableAddresses(compose, environment), [
      'KINESIS_ENDPOINT: localstack does not listen on 4567',
      'DYNAMODB_ENDPOINT: no service named dynamodb',
    ]);
  });

  test('a search-attribute registration that differs from the workflows', () => {
    const [registration] = searchAttributeRegistrations(
      "until temporal operator search-attribute create -n other --name=KclApplication --type=Keyword \\\n  --name 'KclShard' --type Text --name KclState; do sleep 1; done",
    );

    assert.equal(registration?.namespace, 'other');
    assert.deepEqual(registration?.pairs, ['KclApplication=Keyword', 'KclShard=Text', 'KclState=?']);
    assert.deepEqual(registration?.problems, ['3 names but 2 types']);
    assert.notDeepEqual([...(registration?.pairs ?? [])].sort(), [...searchAttributeCliPairs()].sort());
  });

  test('a $ that compose would substitute from the host', () => {
    const compose = structuredClone(loadCompose());
    compose.services['temporal-setup'] = { ...compose.services['temporal-setup'], command: ['echo $attempt'] };

    assert.deepEqual(hostInterpolations(compose), ['echo $attempt']);
  });

  test('COPY of a missing or ignored file, or of something the build stage never made', () => {
    const stages = parseDockerfile(
      [
        'FROM node:20-bookworm-slim AS build',
        'WORKDIR /app',
        'COPY package.json missing.json ./',
        'COPY node_modules ./node_modules',
        'FROM node:20-bookworm-slim',
        'COPY --from=build /app/package.json /app/dist ./',
        'COPY --from=builder /app/x ./',
      ].join('\n'),
    );

    const problems = missingCopySources(stages, root, { ignore: dockerignoreMatchers('node_modules'), outDir: 'dist' });

    assert.deepEqual(problems, [
      'COPY missing.json: not in the build context',
      'COPY node_modules: excluded by .dockerignore',
      'COPY --from=build /app/dist: that stage neither copies nor builds it',
      'COPY --from=builder: no earlier stage of that name',
    ]);
  });
});
