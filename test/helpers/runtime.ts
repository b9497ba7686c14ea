import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

/**
 * Installs the Temporal runtime once per test process with a quiet logger (warnings and errors only). With
 * `prometheusBindAddress` (e.g. `127.0.0.1:9464`), the runtime also serves the metrics of this process's workers on
 * `/metrics` there; call it before anything else installs the runtime (e.g. before `kclTestContext()`).
 */
export function installQuietRuntime(options: { prometheusBindAddress?: string } = {}): void {
  if (installed) return;
  installed = true;
  Runtime.install({
    // Worker processes handle SIGINT/SIGTERM themselves (a graceful handoff); the SDK's hook would stop their workers first.
    shutdownSignals: [],
    logger: new DefaultLogger('WARN'),
    ...(options.prometheusBindAddress
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: options.prometheusBindAddress } } } }
      : {}),
  });
}
