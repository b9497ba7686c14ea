import { InvalidArgumentError } from 'commander';

/** Parses a TCP port flag. */
export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`expected a port between 1 and 65535, got '${value}'`);
  }
  return port;
}

/** Parses a whole-number flag within bounds. */
export function parseInteger(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^-?\d+$/.test(value) || number < min || number > max) {
      throw new InvalidArgumentError(`expected a whole number between ${min} and ${max}, got '${value}'`);
    }
    return number;
  };
}

/** Parses an ISO-8601 date-time flag (with a time zone), returning it normalized. */
export function parseTimestamp(value: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  const date = new Date(value);
  // Date rolls an impossible day over (2026-02-30 becomes March 2): the calendar date must exist as written.
  const day = match ? new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]))) : undefined;
  if (
    !match ||
    Number.isNaN(date.getTime()) ||
    day?.getUTCMonth() !== Number(match[2]) - 1 ||
    day.getUTCDate() !== Number(match[3])
  ) {
    throw new InvalidArgumentError(
      `expected an ISO-8601 date-time with a time zone such as 2026-01-31T12:00:00Z, got '${value}'`,
    );
  }
  return date.toISOString();
}

const DURATION_UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/**
 * Parses a duration flag such as 500ms, 30s, 5m or 1h into milliseconds. A bare number is refused: whether it meant
 * seconds or milliseconds cannot be told.
 */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!match?.[1] || !match[2]) {
    const hint = /^\d+(\.\d+)?$/.test(value.trim())
      ? ` (a bare number has no unit: write ${value.trim()}ms or ${value.trim()}s)`
      : '';
    throw new InvalidArgumentError(
      `expected a duration with a unit: ms, s, m or h (e.g. 500ms, 2s, 1m, 1h), got '${value}'${hint}`,
    );
  }
  const ms = Number(match[1]) * DURATION_UNITS[match[2] as keyof typeof DURATION_UNITS];
  if (!Number.isInteger(ms)) throw new InvalidArgumentError(`'${value}' is not a whole number of milliseconds`);
  return ms;
}

/** Formats milliseconds the way {@link parseDuration} reads them (the largest unit that divides them). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilInterrupted(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
