/**
 * Installs a packed temporal-kcl tarball into an empty directory with `npm install --offline`, from the npm cache only.
 *
 * This repository's lockfile records no `resolved` URLs, so npm would ask the registry for packuments it never cached.
 * The app therefore gets a lockfile of its own, as a user's would be after a first online install: the tarball, and
 * every package of this lockfile that is not a devDependency, at the same versions and integrities, with the
 * registry's tarball URLs. A runtime dependency left in devDependencies is then missing from the install, and the test
 * that runs it fails.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '..', '..');

interface LockEntry {
  name?: string;
  version: string;
  dev?: boolean;
  resolved?: string;
  [key: string]: unknown;
}

/** `npm pack` into `dir` (runs the prepack build); returns the tarball's path. */
export function packTarball(dir: string): string {
  const output = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  const [packed] = JSON.parse(output.slice(output.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  if (!packed) throw new Error(`npm pack printed no result: ${output}`);
  return join(dir, packed.filename);
}

/** The file paths inside a tarball. */
export function tarballFiles(tarball: string): string[] {
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((path) => path.replace(/^package\//, ''));
}

/** Installs the tarball into `appDir` (created) with `npm install --offline`. */
export function installOffline(tarball: string, appDir: string): void {
  mkdirSync(appDir, { recursive: true });
  const pkg = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })) as {
    version: string;
    dependencies: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    bin: Record<string, string>;
    engines?: Record<string, string>;
  };
  const spec = `file:${tarball}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { 'temporal-kcl': spec } },
    'node_modules/temporal-kcl': {
      version: pkg.version,
      resolved: spec,
      integrity,
      dependencies: pkg.dependencies,
      optionalDependencies: pkg.optionalDependencies ?? {},
      bin: pkg.bin,
      engines: pkg.engines ?? {},
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev) continue;
    const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const base = name.split('/').at(-1) ?? name;
    packages[path] = {
      ...entry,
      resolved: entry.resolved ?? `https://registry.npmjs.org/${name}/-/${base}-${entry.version}.tgz`,
    };
  }
  writeFileSync(
    join(appDir, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { 'temporal-kcl': spec } }, null, 2),
  );
  writeFileSync(
    join(appDir, 'package-lock.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2),
  );
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund'], { cwd: appDir, stdio: 'pipe' });
}
