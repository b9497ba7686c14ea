/**
 * Reading the Temporal server's Prometheus metrics (`temporal server start-dev --metrics-port N` serves them at
 * `/metrics`): a parser for the text exposition format, and the `action` counter the server keeps for estimating
 * Temporal Cloud actions, summed by `action_type`.
 *
 * Hand-written rather than a dependency: the benchmark needs only samples (name, labels, value) from one trusted
 * server, which is a line format of a few rules (https://prometheus.io/docs/instrumenting/exposition_formats/).
 */

export interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseValue(text: string): number {
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  const value = Number(text);
  if (text === '' || Number.isNaN(value)) throw new Error(`not a sample value: '${text}'`);
  return value;
}

/** Reads `{a="x",b="y\"z"}` from `line` at `start` (the `{`); returns the labels and the index after the `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  const skipSpaces = () => {
    while (line[i] === ' ') i++;
  };
  for (;;) {
    skipSpaces();
    if (line[i] === '}') return { labels, end: i + 1 };
    const name = NAME.exec(line.slice(i))?.[0];
    if (!name) throw new Error(`bad label name at column ${i + 1}`);
    i += name.length;
    skipSpaces();
    if (line[i] !== '=') throw new Error(`expected '=' after label ${name} at column ${i + 1}`);
    i++;
    skipSpaces();
    if (line[i] !== '"') throw new Error(`expected '"' for the value of label ${name} at column ${i + 1}`);
    i++;
    let value = '';
    for (;;) {
      const char = line[i];
      if (char === undefined) throw new Error(`unterminated value of label ${name}`);
      i++;
      if (char === '"') break;
      if (char === '\\') {
        const escaped = line[i++];
        value += escaped === 'n' ? '\n' : (escaped ?? '');
      } else value += char;
    }
    labels[name] = value;
    skipSpaces();
    if (line[i] === ',') i++;
    else if (line[i] !== '}') throw new Error(`expected ',' or '}' after label ${name} at column ${i + 1}`);
  }
}

/**
 * Parses Prometheus text format into samples (comments, `# HELP` and `# TYPE` lines skipped; a timestamp after the
 * value is ignored). Throws on a malformed line, naming it.
 */
export function parsePrometheusText(text: string): PrometheusSample[] {
  const samples: PrometheusSample[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      const name = NAME.exec(line)?.[0];
      if (!name) throw new Error('no metric name');
      let i = name.length;
      let labels: Record<string, string> = {};
      if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i));
      const [value] = line.slice(i).trim().split(/\s+/);
      samples.push({ name, labels, value: parseValue(value ?? '') });
    } catch (error) {
      throw new Error(`metrics line ${n + 1} ('${line.slice(0, 120)}'): ${(error as Error).message}`);
    }
  }
  return samples;
}

/**
 * Sums the samples of counter `name` whose labels match `where`, grouped by the value of label `by` (samples without
 * it are grouped under '').
 */
export function sumBy(
  samples: readonly PrometheusSample[],
  name: string,
  by: string,
  where: Record<string, string> = {},
): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const sample of samples) {
    if (sample.name !== name) continue;
    if (!Object.entries(where).every(([label, value]) => sample.labels[label] === value)) continue;
    const key = sample.labels[by] ?? '';
    sums[key] = (sums[key] ?? 0) + sample.value;
  }
  return sums;
}

/**
 * The `action` counter of one namespace, by `action_type`, as the server reports it now: summed over every endpoint
 * given (a cluster's services each serve their own metrics; today only the frontend counts actions).
 */
export async function scrapeActions(
  metricsUrls: string | readonly string[],
  namespace: string,
): Promise<Record<string, number>> {
  const sums: Record<string, number> = {};
  for (const metricsUrl of typeof metricsUrls === 'string' ? [metricsUrls] : metricsUrls) {
    const response = await fetch(metricsUrl);
    if (!response.ok) throw new Error(`${metricsUrl}: HTTP ${response.status}`);
    const counts = sumBy(parsePrometheusText(await response.text()), 'action', 'action_type', { namespace });
    for (const [type, value] of Object.entries(counts)) sums[type] = (sums[type] ?? 0) + value;
  }
  return sums;
}

/** `after − before` per key (keys of either; a counter that restarted would show negative and is kept as is). */
export function counterDelta(
  before: Readonly<Record<string, number>>,
  after: Readonly<Record<string, number>>,
): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const value = (after[key] ?? 0) - (before[key] ?? 0);
    if (value !== 0) delta[key] = value;
  }
  return delta;
}
