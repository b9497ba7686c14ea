import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

/** Installs the Temporal runtime once per test process with a quiet logger (warnings and errors only). */
export function installQuietRuntime(): void {
  if (installed) return;
  installed = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}
