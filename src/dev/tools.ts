import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { ToolUnavailableError } from '../errors';
import { getFreePort, waitForPort } from './net';

/** The Temporal CLI version built from Go modules. Tags from v1.6.0 on carry a `replace` directive that `go install` refuses. */
export const TEMPORAL_CLI_VERSION = '1.5.1';
/** The Temporal Server version of tools/temporal-cluster (the same server the CLI v1.5.1 embeds). */
export const TEMPORAL_SERVER_VERSION = '1.29.1';
/** The Java test server (time skipping) resolved from Maven Central; keep in step with tools/temporal-test-server/pom.xml. */
export const TEST_SERVER_VERSION = '1.38.0';

/** Where a tool came from, so each provisioning step can say what it chose. */
export type ToolSource = 'env' | 'path' | 'cache' | 'built' | 'sdk-download';

export interface ResolvedTool {
  /** Absolute path of the executable, or undefined when the Temporal SDK should download it itself. */
  path: string | undefined;
  source: ToolSource;
  detail: string;
}

export interface ProvisionOptions {
  /** Build a missing tool (Go / Maven). @default true */
  build?: boolean;
  /** Receives one line per decision. @default no output */
  log?: (line: string) => void;
}

/** `$TEMPORAL_KCL_CACHE_DIR`, else `$XDG_CACHE_HOME/temporal-kcl`, else `~/.cache/temporal-kcl`. Outside the repository on purpose. */
export function cacheDir(): string {
  const dir =
    process.env.TEMPORAL_KCL_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'temporal-kcl');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The repository root (where package.json is), found from this file whether it runs from src/ or dist/. */
export function packageRoot(): string {
  return resolve(__dirname, '..', '..');
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    log(`$ ${command} ${args.join(' ')}`);
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} exited with ${code}:\n${output}`));
    });
  });
}

/**
 * Builds a tool into `binDir` through a staging directory of its own (`build` writes there), so that a build cut short
 * never leaves a half-written cache entry; `cached` is the binary it must end up at.
 */
async function buildInto(
  binDir: string,
  cached: string,
  tool: string,
  failure: string,
  build: (staging: string) => Promise<void>,
): Promise<ResolvedTool & { path: string }> {
  const staging = `${binDir}.partial-${process.pid}`;
  mkdirSync(staging, { recursive: true });
  const started = Date.now();
  try {
    await build(staging);
    rmSync(binDir, { recursive: true, force: true });
    renameSync(staging, binDir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw new ToolUnavailableError(tool, failure, { cause: error });
  }
  return {
    path: cached,
    source: 'built',
    detail: `built ${cached} in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  };
}

/**
 * Finds the Temporal CLI: `TEMPORAL_CLI_PATH` if set; else `temporal` on PATH; else the cached build; else builds it with
 * `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` into the cache; else (no Go) leaves it to the SDK's own
 * download, which needs internet.
 */
export async function resolveTemporalCli(options: ProvisionOptions = {}): Promise<ResolvedTool> {
  const log = options.log ?? (() => undefined);
  const chosen = (tool: ResolvedTool) => {
    log(`temporal CLI: ${tool.detail}`);
    return tool;
  };
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) {
      throw new ToolUnavailableError('temporal CLI', `TEMPORAL_CLI_PATH=${fromEnv} does not exist`);
    }
    return chosen({ path: fromEnv, source: 'env', detail: `TEMPORAL_CLI_PATH=${fromEnv}` });
  }
  const fromPath = onPath('temporal');
  if (fromPath) return chosen({ path: fromPath, source: 'path', detail: `found on PATH at ${fromPath}` });

  const binDir = join(cacheDir(), `temporal-cli-${TEMPORAL_CLI_VERSION}`);
  const cached = join(binDir, 'temporal');
  if (existsSync(cached)) return chosen({ path: cached, source: 'cache', detail: `cached build ${cached}` });

  const go = onPath('go');
  if (options.build === false || !go) {
    return chosen({
      path: undefined,
      source: 'sdk-download',
      detail: go
        ? 'not built (build disabled); the Temporal SDK will download its own (needs internet)'
        : 'no Go toolchain found; the Temporal SDK will download its own (needs internet)',
    });
  }
  log(`temporal CLI: building v${TEMPORAL_CLI_VERSION} with ${go} into ${binDir} (a few minutes the first time)`);
  return chosen(
    await buildInto(binDir, cached, 'temporal CLI', 'go install failed', (staging) =>
      run(
        go,
        [
          'install',
          '-ldflags',
          `-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION}`,
          `github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}`,
        ],
        { ...process.env, GOBIN: staging, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' },
        log,
      ),
    ),
  );
}

/** JVM flags that bring the Java test server's port up well inside the SDK's 5 s start window on 2 cores. */
const FAST_START_JVM_FLAGS = ['-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-Xss512k', '-XX:-UsePerfData'];

function wrapperScript(libDir: string, jvmFlags: string[]): string {
  // `exec` matters: the SDK SIGKILLs the process it started; without exec the JVM would outlive it holding the port.
  return `#!/bin/sh
# Temporal's Java test server (time skipping), provisioned by temporal-kcl. Args: <port>
exec java ${jvmFlags.join(' ')} -cp '${libDir}/*' io.temporal.testserver.TestServer "$@"
`;
}

async function measureStart(wrapper: string): Promise<number> {
  const port = await getFreePort();
  const started = Date.now();
  const child = spawn(wrapper, [String(port)], { stdio: 'ignore' });
  try {
    await waitForPort(port, 30_000);
    return Date.now() - started;
  } finally {
    child.kill('SIGKILL');
  }
}

/**
 * Finds or provisions Temporal's Java test server: `mvn dependency:copy-dependencies` of
 * tools/temporal-test-server/pom.xml into the cache, a class-data-sharing archive, and a wrapper script that `exec`s java.
 * Without Maven or Java it leaves the server to the SDK's own download (needs internet).
 */
export async function resolveTestServer(options: ProvisionOptions = {}): Promise<ResolvedTool> {
  const log = options.log ?? (() => undefined);
  const chosen = (tool: ResolvedTool) => {
    log(`java test server: ${tool.detail}`);
    return tool;
  };
  const fromEnv = process.env.TEMPORAL_TEST_SERVER_PATH;
  if (fromEnv) return chosen({ path: fromEnv, source: 'env', detail: `TEMPORAL_TEST_SERVER_PATH=${fromEnv}` });

  const pom = join(packageRoot(), 'tools', 'temporal-test-server', 'pom.xml');
  // The pom's hash is part of the directory name, so a changed pom provisions afresh.
  const pomHash = existsSync(pom) ? createHash('sha256').update(readFileSync(pom)).digest('hex').slice(0, 8) : 'nopom';
  const dir = join(cacheDir(), `test-server-${TEST_SERVER_VERSION}-${pomHash}`);
  const libDir = join(dir, 'lib');
  const wrapper = join(dir, 'temporal-test-server');
  const archive = join(dir, 'classes.jsa');
  if (existsSync(wrapper) && existsSync(archive)) {
    return chosen({ path: wrapper, source: 'cache', detail: `cached ${wrapper}` });
  }
  const java = onPath('java');
  const mvn = onPath('mvn');
  if (options.build === false || !java || !mvn || !existsSync(pom)) {
    const missing = !java ? 'java' : !mvn ? 'mvn' : !existsSync(pom) ? pom : 'build disabled';
    return chosen({
      path: undefined,
      source: 'sdk-download',
      detail: `not provisioned (${missing} missing); the Temporal SDK will download its own (needs internet)`,
    });
  }
  const started = Date.now();
  if (!existsSync(libDir) || readdirSync(libDir).length === 0) {
    log(
      `java test server: resolving io.temporal:temporal-test-server:${TEST_SERVER_VERSION} with Maven into ${libDir}`,
    );
    try {
      await run(
        mvn,
        [
          '-B',
          '-q',
          '-f',
          pom,
          `-Dtemporal.test-server.version=${TEST_SERVER_VERSION}`,
          'dependency:copy-dependencies',
          `-DoutputDirectory=${libDir}`,
          '-DincludeScope=runtime',
        ],
        process.env,
        log,
      );
    } catch (error) {
      rmSync(libDir, { recursive: true, force: true });
      throw new ToolUnavailableError('java test server', 'mvn dependency:copy-dependencies failed', { cause: error });
    }
  }
  // Dump a dynamic class-data-sharing archive once (the JVM writes it on a normal exit), then start from it.
  const dumpWrapper = join(dir, 'dump-archive.sh');
  writeFileSync(dumpWrapper, wrapperScript(libDir, [...FAST_START_JVM_FLAGS, `-XX:ArchiveClassesAtExit=${archive}`]));
  chmodSync(dumpWrapper, 0o755);
  const port = await getFreePort();
  const dumper = spawn(dumpWrapper, [String(port)], { stdio: 'ignore' });
  const exited = new Promise<void>((done) => dumper.on('exit', () => done()));
  await waitForPort(port, 60_000);
  await new Promise((done) => setTimeout(done, 1_500)); // let the server finish loading its classes
  dumper.kill('SIGTERM');
  await exited;
  rmSync(dumpWrapper);

  const flags = existsSync(archive)
    ? [...FAST_START_JVM_FLAGS, `-XX:SharedArchiveFile=${archive}`, '-Xshare:auto']
    : FAST_START_JVM_FLAGS;
  writeFileSync(wrapper, wrapperScript(libDir, flags));
  chmodSync(wrapper, 0o755);
  const startMs = await measureStart(wrapper);
  if (startMs > 4_000) {
    log(`java test server: WARNING its port took ${startMs} ms to open; the SDK allows 5000 ms`);
  }
  return chosen({
    path: wrapper,
    source: 'built',
    detail: `provisioned ${wrapper} in ${((Date.now() - started) / 1000).toFixed(0)} s; port open ${startMs} ms after start (SDK allows 5000 ms)`,
  });
}

/** The Go main module that builds `temporal-kcl-cluster` (server, SQL schema tool and Web UI in one binary). */
export function clusterModuleDir(): string {
  return join(packageRoot(), 'tools', 'temporal-cluster');
}

/** A hash of the cluster module's sources (go.mod, go.sum, *.go): part of the cache directory's name. */
function clusterModuleHash(dir: string): string {
  const hash = createHash('sha256');
  for (const file of readdirSync(dir)
    .filter((name) => name === 'go.mod' || name === 'go.sum' || name.endsWith('.go'))
    .sort()) {
    hash.update(file).update(readFileSync(join(dir, file)));
  }
  return hash.digest('hex').slice(0, 8);
}

/**
 * Finds or builds `temporal-kcl-cluster`, the binary a real Temporal cluster runs from (`server`, `sql-tool` and
 * `ui-server` subcommands; see tools/temporal-cluster): `TEMPORAL_CLUSTER_PATH` if set; else the cached build for the
 * module's current sources; else `go build` of tools/temporal-cluster into the cache. Its versions are the Temporal CLI
 * v1.5.1's, so after the CLI's build the Go build cache holds almost every package (~12 s instead of ~3 min). There is
 * no download fallback: without Go this throws.
 */
export async function resolveTemporalCluster(options: ProvisionOptions = {}): Promise<ResolvedTool & { path: string }> {
  const log = options.log ?? (() => undefined);
  const chosen = (tool: ResolvedTool & { path: string }) => {
    log(`temporal cluster: ${tool.detail}`);
    return tool;
  };
  const fromEnv = process.env.TEMPORAL_CLUSTER_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) {
      throw new ToolUnavailableError('temporal cluster', `TEMPORAL_CLUSTER_PATH=${fromEnv} does not exist`);
    }
    return chosen({ path: fromEnv, source: 'env', detail: `TEMPORAL_CLUSTER_PATH=${fromEnv}` });
  }
  const moduleDir = clusterModuleDir();
  if (!existsSync(join(moduleDir, 'go.mod'))) {
    throw new ToolUnavailableError(
      'temporal cluster',
      `${moduleDir}/go.mod is missing: run it from a clone of temporal-kcl`,
    );
  }
  const binDir = join(cacheDir(), `temporal-cluster-${TEMPORAL_SERVER_VERSION}-${clusterModuleHash(moduleDir)}`);
  const cached = join(binDir, 'temporal-kcl-cluster');
  if (existsSync(cached)) return chosen({ path: cached, source: 'cache', detail: `cached build ${cached}` });

  const go = onPath('go');
  if (options.build === false || !go) {
    throw new ToolUnavailableError(
      'temporal cluster',
      go
        ? `${cached} is not built (build disabled): run npm run provision`
        : `no Go toolchain on PATH to build ${moduleDir} (install Go >= 1.25, then npm run provision)`,
    );
  }
  log(`temporal cluster: building server v${TEMPORAL_SERVER_VERSION} from ${moduleDir} into ${binDir}`);
  return chosen(
    await buildInto(binDir, cached, 'temporal cluster', 'go build failed', (staging) =>
      // CGO_ENABLED=0 as for the CLI: the same build configuration, so the CLI's compiled packages are reused.
      run(
        go,
        ['-C', moduleDir, 'build', '-buildvcs=false', '-o', join(staging, 'temporal-kcl-cluster'), '.'],
        { ...process.env, CGO_ENABLED: '0' },
        log,
      ),
    ),
  );
}
