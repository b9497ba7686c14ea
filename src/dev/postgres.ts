/**
 * PostgreSQL for a local Temporal cluster (src/dev/cluster.ts): Debian's package (installed with apt when missing and
 * running as root), an unprivileged instance in a directory of the caller's, owned by this process.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ToolUnavailableError } from '../errors';
import { ManagedProcess } from './managed-process';
import { waitForPort } from './net';

/** The newest PostgreSQL installed from Debian packages (`/usr/lib/postgresql/<major>/bin`). */
function findPostgres(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const majors = readdirSync(base)
    .filter((name) => /^\d+$/.test(name) && existsSync(join(base, name, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] === undefined ? undefined : join(base, majors[0], 'bin');
}

export function execFileText(
  command: string,
  args: string[],
  options: { uid?: number; gid?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { ...options, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${error.message}\n${stderr || stdout}`));
      else resolve(stdout);
    });
  });
}

const isRoot = () => process.getuid?.() === 0;

/** PostgreSQL's bin directory; as root, installs Debian's `postgresql` package when it is missing. */
export async function postgresBin(log: (line: string) => void): Promise<string> {
  const found = findPostgres();
  if (found) return found;
  if (!isRoot()) {
    throw new ToolUnavailableError(
      'postgresql',
      'not installed (no /usr/lib/postgresql/<version>/bin/initdb): sudo apt-get install -y postgresql',
    );
  }
  log('postgresql: not installed; apt-get install -y postgresql');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args: string[]) =>
    new Promise<void>((resolve, reject) =>
      execFile('apt-get', args, { env, maxBuffer: 64 * 1024 * 1024 }, (error, _out, stderr) =>
        error ? reject(new Error(`apt-get ${args.join(' ')}: ${stderr || error.message}`)) : resolve(),
      ),
    );
  try {
    await apt(['install', '-y', '-qq', 'postgresql']);
  } catch {
    await apt(['update', '-qq']);
    await apt(['install', '-y', '-qq', 'postgresql']);
  }
  const installed = findPostgres();
  if (!installed) throw new ToolUnavailableError('postgresql', 'apt-get install postgresql left no initdb behind');
  return installed;
}

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` user the Debian package creates. */
export function postgresUser(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (error) {
    throw new ToolUnavailableError('postgresql', 'running as root, and there is no `postgres` user to run it as', {
      cause: error,
    });
  }
}

/**
 * initdb (superuser `temporal`, trust on loopback only), then the server in the foreground as a process of ours
 * (stopped with SIGINT, PostgreSQL's fast shutdown); resolves once it accepts connections.
 */
export async function startPostgres(options: {
  bin: string;
  /** Run as this user (as root: initdb and postgres refuse to run as root). */
  user: { uid: number; gid: number } | undefined;
  dataDir: string;
  socketDir: string;
  port: number;
  logFile: string;
  unref?: boolean;
}): Promise<{ postgres: ManagedProcess; version: string }> {
  const { bin, user, dataDir, socketDir, port } = options;
  await execFileText(
    join(bin, 'initdb'),
    ['-D', dataDir, '-U', 'temporal', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'],
    user ?? {},
  );
  const version = (await execFileText(join(bin, 'postgres'), ['--version']))
    .trim()
    .replace(/^postgres \(PostgreSQL\) /, '');
  const postgres = new ManagedProcess({
    name: 'postgres',
    command: join(bin, 'postgres'),
    // Test data only: no fsync. cluster_name shows in every backend's process title (see .ci/run).
    args: [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-k',
      socketDir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=300',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'cluster_name=temporal-kcl-cluster',
    ],
    logFile: options.logFile,
    ...(user ?? {}),
    stopSignal: 'SIGINT',
    unref: options.unref,
  });
  try {
    await Promise.race([
      waitForPort(port, 60_000),
      postgres.exited.then(() => {
        throw postgres.failure('exited during start-up');
      }),
    ]);
  } catch (error) {
    await postgres.stop();
    throw error;
  }
  return { postgres, version };
}
