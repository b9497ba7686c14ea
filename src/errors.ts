/**
 * The one error family of temporal-kcl. Every error the library throws on its own account is a
 * {@link KclError}; subclasses set `name`, carry the context a reader needs, and keep the original
 * error as `cause`.
 *
 * Workflow code never sees these classes: activities translate them into `ApplicationFailure`s whose
 * `type` is the error's `name` (see `FailureType`), which is what retry policies and workflows reason about.
 *
 * This module is pure (no Node, no AWS SDK) so workflows may import it.
 */
export class KclError extends Error {
  override readonly name: string = 'KclError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A user-supplied option, CLI flag or environment variable is invalid. Never retried. */
export class InvalidConfigError extends KclError {
  override readonly name = 'InvalidConfig';
  constructor(
    message: string,
    readonly issues: readonly string[] = [],
  ) {
    super(message);
  }
}

/** A tool the local stack needs (Temporal CLI, Java test server, emulator) could not be found, built or started. */
export class ToolUnavailableError extends KclError {
  override readonly name = 'ToolUnavailable';
  constructor(
    readonly tool: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool}: ${message}`, options);
  }
}
