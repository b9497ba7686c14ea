import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidConfigError } from '../errors';
import type { RecordProcessorFactory } from '../record-processor';

let typeScriptLoaderRegistered = false;

/** Lets `import()` load TypeScript processor modules (ES module or CommonJS) through tsx. */
async function registerTypeScriptLoader(): Promise<void> {
  if (typeScriptLoaderRegistered) return;
  typeScriptLoaderRegistered = true;
  try {
    const esm = await import('tsx/esm/api');
    esm.register();
    const cjs = await import('tsx/cjs/api');
    cjs.register();
  } catch (error) {
    typeScriptLoaderRegistered = false;
    throw new InvalidConfigError(
      `TypeScript processor modules load through tsx, an optional dependency of temporal-kcl that is not installed ` +
        `(${error instanceof Error ? error.message : String(error)}): npm install tsx, or compile the processor to JavaScript`,
    );
  }
}

function describeExport(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).join(', ')}]`;
  return `a ${typeof value}`;
}

/**
 * Loads a processor module (ES module or CommonJS, JavaScript or TypeScript) and returns its default export: a
 * processor factory. Anything else is a clear InvalidConfigError.
 */
export async function loadProcessorFactory(modulePath: string): Promise<RecordProcessorFactory> {
  const absolute = resolve(modulePath);
  if (!existsSync(absolute)) {
    throw new InvalidConfigError(`processor module ${modulePath} not found (looked for ${absolute})`);
  }
  if (/\.[cm]?tsx?$/.test(absolute)) await registerTypeScriptLoader();
  let loaded: unknown;
  try {
    loaded = await import(pathToFileURL(absolute).href);
  } catch (error) {
    throw new InvalidConfigError(
      `processor module ${modulePath} failed to load: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  let factory = (loaded as { default?: unknown }).default;
  // A CommonJS module compiled from `export default` arrives as { default: { default: fn } }.
  if (factory && typeof factory === 'object' && typeof (factory as { default?: unknown }).default === 'function') {
    factory = (factory as { default: unknown }).default;
  }
  if (typeof factory !== 'function') {
    throw new InvalidConfigError(
      `processor module ${modulePath} must default-export a processor factory: a function called with ` +
        `{ applicationName, streamName, shardId } that returns a RecordProcessor (or a promise of one); its default export is ${describeExport(factory)}`,
    );
  }
  return factory as RecordProcessorFactory;
}

/** Parses `--processor` values: `path` (registered as 'default') or `name=path`. */
export function parseProcessorSpecs(values: string[]): { name: string; path: string }[] {
  const specs = values.map((value) => {
    const match = /^([A-Za-z0-9_.-]+)=(.+)$/.exec(value);
    return match?.[1] && match[2] ? { name: match[1], path: match[2] } : { name: 'default', path: value };
  });
  const names = new Set<string>();
  for (const spec of specs) {
    if (names.has(spec.name))
      throw new InvalidConfigError(`two --processor modules are both named '${spec.name}'; use name=path`);
    names.add(spec.name);
  }
  return specs;
}
